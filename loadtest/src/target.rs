//! Where the load goes: a `ws://host:port/path` URL, resolved once; which local source address
//! each connection binds; how many sockets this process may open.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// A resolved broker endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// The HTTP `Host` header value.
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Parse and resolve `ws://host[:port][/path]`. Without `allow_remote`, only loopback
    /// addresses are accepted.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let with_port = if authority.starts_with('[') {
            if authority.contains("]:") {
                authority.to_string()
            } else {
                format!("{authority}:80")
            }
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {authority} has no address"))?;
        if !allow_remote && !addr.ip().is_loopback() {
            return Err(format!(
                "{url} resolves to {}, not a loopback address; pass --allow-remote to load a \
                 broker on another machine",
                addr.ip()
            ));
        }
        Ok(Target {
            url: url.to_string(),
            addr,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// Connections one source address can make to one destination: the default ephemeral port
/// range (32768-60999) less some slack.
pub const PER_SOURCE: usize = 25_000;

/// Source addresses for `n` connections to `target`: `None` (the kernel's choice) when one
/// address has ports enough or the target is not IPv4 loopback, else `count` addresses from
/// 127.0.0.2 on (`count == 0`: as many as `n` needs).
pub fn source_addrs(target: &SocketAddr, n: usize, count: usize) -> Option<Vec<IpAddr>> {
    let IpAddr::V4(ip) = target.ip() else {
        return None;
    };
    if !ip.is_loopback() {
        return None;
    }
    let count = if count == 0 {
        if n <= PER_SOURCE {
            return None;
        }
        n.div_ceil(PER_SOURCE)
    } else {
        count
    };
    Some(
        (0..count.min(250))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
            .collect(),
    )
}

/// Sockets one process may hold: the open-file limit less a reserve for everything else (the
/// poll instances, stdio, report files, an in-process broker's listeners).
pub fn socket_budget(nofile: u64) -> usize {
    nofile.saturating_sub(100) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:15674/ws", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:15674".parse().unwrap());
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:15674", "/ws")
        );
        let t = Target::parse("ws://localhost:1", false).unwrap();
        assert!(t.addr.ip().is_loopback());
        assert_eq!(t.path, "/");
        assert!(Target::parse("wss://127.0.0.1/ws", false).is_err());
        assert!(Target::parse("ws:///ws", false).is_err());
        let e = Target::parse("ws://192.0.2.1:80/ws", false).unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
    }

    #[test]
    fn sources_spread_past_one_address_worth_of_ports() {
        let lo: SocketAddr = "127.0.0.1:61614".parse().unwrap();
        assert_eq!(source_addrs(&lo, 10_000, 0), None);
        let v = source_addrs(&lo, 60_000, 0).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(v[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(source_addrs(&lo, 10, 2).unwrap().len(), 2);
        assert_eq!(source_addrs(&"[::1]:1".parse().unwrap(), 60_000, 0), None);
        assert_eq!(socket_budget(20_000), 19_900);
        assert_eq!(socket_budget(10), 0);
    }
}
