//! Heart-beat negotiation (STOMP 1.1+ "Heart-beating").

/// `heart-beat: cx,cy` from CONNECT, or `None` if malformed.
pub fn parse_header(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Negotiate. `client` = (cx, cy) from CONNECT; `server` = (sx, sy): the server can send every
/// sx ms and wants to receive every sy ms. Returns (server sends every, server expects every),
/// in ms, 0 meaning never.
pub fn negotiate(client: (u64, u64), server: (u64, u64)) -> (u64, u64) {
    let (cx, cy) = client;
    let (sx, sy) = server;
    let send = if sx == 0 || cy == 0 { 0 } else { sx.max(cy) };
    let recv = if cx == 0 || sy == 0 { 0 } else { cx.max(sy) };
    (send, recv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_rules() {
        assert_eq!(parse_header("0,0"), Some((0, 0)));
        assert_eq!(parse_header(" 100 , 200 "), Some((100, 200)));
        assert_eq!(parse_header("x,1"), None);
        assert_eq!(negotiate((0, 0), (10_000, 10_000)), (0, 0));
        assert_eq!(negotiate((4000, 1000), (10_000, 10_000)), (10_000, 10_000));
        assert_eq!(
            negotiate((20_000, 30_000), (10_000, 10_000)),
            (30_000, 20_000)
        );
        assert_eq!(negotiate((100, 100), (0, 0)), (0, 0));
    }
}
