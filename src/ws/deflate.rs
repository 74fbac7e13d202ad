//! permessage-deflate (RFC 7692) negotiation, sans-IO: what a client's
//! `Sec-WebSocket-Extensions` offers, which offer the server takes, and the response header.
//!
//! Groundwork for issue 17: nothing calls this yet (the handshake still declines every
//! extension), so it can be tested and reviewed on its own before compression is wired in.
//!
//! The rules it follows (RFC 7692 §5 and §7.1):
//! - Offers are tried in the client's order; the first acceptable one is taken. An offer with an
//!   unknown or repeated parameter, or a parameter value out of range, is declined (the next
//!   one is tried); a header that does not parse at all fails the handshake.
//! - `server_no_context_takeover` offered: the response carries it. The server may add it even
//!   when not offered (when configured not to keep context).
//! - `server_max_window_bits=N` offered: the server compresses with at most N bits and says
//!   which. Not offered: it may still announce a smaller window. N = 8 is declined: zlib cannot
//!   make an 8-bit-window stream (it silently uses 9).
//! - `client_max_window_bits` offered (with or without a value): the server may tell the
//!   client a window; not offered: the server must not, and inflates with 15 bits.
//! - `client_no_context_takeover`: the server may ask for it whether offered or not.

/// What the server is willing to do (its side of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The largest window the server compresses with (9-15).
    pub server_max_window_bits: u8,
    /// The largest window the server asks clients to compress with (8-15), when they allow it.
    pub client_max_window_bits: u8,
    /// Compress each message on its own (no compressor state kept between messages).
    pub server_no_context_takeover: bool,
    /// Ask clients to compress each message on their own (no inflater state kept).
    pub client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: true,
            client_no_context_takeover: false,
        }
    }
}

/// The parameters both sides use after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The window the server compresses with.
    pub server_max_window_bits: u8,
    /// The window the client may use (the server inflates with at least this, never below 9).
    pub client_max_window_bits: u8,
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// Whether the response names `server_max_window_bits` / `client_max_window_bits`.
    announce_server_bits: bool,
    announce_client_bits: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn response(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.announce_server_bits {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.announce_client_bits {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// The extension header does not parse: the handshake fails (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// One parameter of an offer: its name and value (if any), unquoted.
type Param<'a> = (&'a str, Option<String>);

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(s: &str) -> Result<&str, Malformed> {
    let t = s.trim_matches([' ', '\t']);
    if t.is_empty() || !t.chars().all(is_tchar) {
        return Err(Malformed("an extension name or parameter is not a token"));
    }
    Ok(t)
}

/// A parameter value: a token or a quoted-string (RFC 7230 §3.2.6), unquoted.
fn value(s: &str) -> Result<String, Malformed> {
    let v = s.trim_matches([' ', '\t']);
    match v.strip_prefix('"') {
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or(Malformed("an unterminated quoted parameter value"))?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().ok_or(Malformed("a dangling escape"))?),
                    '"' => return Err(Malformed("a quote inside a quoted value")),
                    c => out.push(c),
                }
            }
            Ok(out)
        }
        None => token(v).map(str::to_string),
    }
}

/// Split on `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(s.get(start..i).unwrap_or_default());
            start = i + c.len_utf8();
        }
    }
    out.push(s.get(start..).unwrap_or_default());
    out
}

/// Every extension offered, in order: (name, parameters).
pub fn parse_offers<'a>(headers: &[&'a str]) -> Result<Vec<(&'a str, Vec<Param<'a>>)>, Malformed> {
    let mut offers = Vec::new();
    for h in headers {
        for ext in split_outside_quotes(h, ',') {
            if ext.trim().is_empty() {
                // `#rule` lists may have empty elements (RFC 7230 §7).
                continue;
            }
            let mut parts = split_outside_quotes(ext, ';').into_iter();
            let name = token(parts.next().unwrap_or_default())?;
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = match p.split_once('=') {
                    Some((k, v)) => (token(k)?, Some(value(v)?)),
                    None => (token(p)?, None),
                };
                params.push((k, v));
            }
            offers.push((name, params));
        }
    }
    Ok(offers)
}

/// Window bits from a parameter value: `8..=15` written as plain digits.
fn bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// The server's answer to one permessage-deflate offer, or `None` to decline it.
fn accept(params: &[Param<'_>], cfg: &DeflateConfig) -> Option<Agreed> {
    let mut seen: Vec<&str> = Vec::new();
    let (mut server_nct, mut client_nct) = (false, false);
    let mut server_bits: Option<u8> = None;
    let mut client_bits: Option<Option<u8>> = None;
    for (k, v) in params {
        if seen.contains(k) {
            return None;
        }
        seen.push(k);
        match (*k, v.as_deref()) {
            ("server_no_context_takeover", None) => server_nct = true,
            ("client_no_context_takeover", None) => client_nct = true,
            ("server_max_window_bits", Some(v)) => server_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => client_bits = Some(None),
            ("client_max_window_bits", Some(v)) => client_bits = Some(Some(bits(v)?)),
            _ => return None,
        }
    }
    let server_cfg = cfg.server_max_window_bits.clamp(9, 15);
    let (server_max_window_bits, announce_server_bits) = match server_bits {
        Some(8) => return None,
        Some(n) => (n.min(server_cfg), true),
        None => (server_cfg, server_cfg < 15),
    };
    let client_cfg = cfg.client_max_window_bits.clamp(8, 15);
    let (client_max_window_bits, announce_client_bits) = match client_bits {
        // Not offered: the client may use 15 bits and must not be told otherwise.
        None => (15, false),
        Some(None) => (client_cfg, client_cfg < 15),
        Some(Some(n)) => (n.min(client_cfg), true),
    };
    Some(Agreed {
        server_max_window_bits,
        client_max_window_bits,
        server_no_context_takeover: server_nct || cfg.server_no_context_takeover,
        client_no_context_takeover: client_nct || cfg.client_no_context_takeover,
        announce_server_bits,
        announce_client_bits,
    })
}

/// The first acceptable permessage-deflate offer in `headers` (every `Sec-WebSocket-Extensions`
/// value of the request), or `None` if there is none.
pub fn negotiate(headers: &[&str], cfg: &DeflateConfig) -> Result<Option<Agreed>, Malformed> {
    Ok(parse_offers(headers)?
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("permessage-deflate"))
        .find_map(|(_, params)| accept(params, cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends, an answer or a refusal, never a panic; an answer's header
        /// offers itself back acceptably (the response is a valid offer for the same server).
        #[test]
        fn any_header_gets_an_answer_or_a_refusal(h in prop_oneof![
            "[ -~]{0,80}",
            prop::collection::vec(
                (
                    prop_oneof![Just("permessage-deflate"), Just("x-foo"), Just("permessage-deflate ")],
                    prop::collection::vec(
                        prop_oneof![
                            Just("server_no_context_takeover".to_string()),
                            Just("client_no_context_takeover".to_string()),
                            Just("client_max_window_bits".to_string()),
                            (7u8..17).prop_map(|b| format!("client_max_window_bits={b}")),
                            (7u8..17).prop_map(|b| format!("server_max_window_bits=\"{b}\"")),
                            "[a-z=;\" ]{0,6}",
                        ],
                        0..4,
                    ),
                ),
                1..3,
            )
            .prop_map(|offers| offers
                .iter()
                .map(|(n, ps)| std::iter::once(n.to_string()).chain(ps.iter().cloned()).collect::<Vec<_>>().join("; "))
                .collect::<Vec<_>>()
                .join(", ")),
        ]) {
            if let Ok(Some(a)) = negotiate(&[&h], &DeflateConfig::default()) {
                let again = negotiate(&[&a.response()], &DeflateConfig::default());
                prop_assert!(matches!(again, Ok(Some(_))), "{} -> {}", h, a.response());
            }
        }
    }

    fn answer(h: &str, cfg: DeflateConfig) -> Option<String> {
        negotiate(&[h], &cfg).expect("parses").map(|a| a.response())
    }

    fn keep_context() -> DeflateConfig {
        DeflateConfig {
            server_no_context_takeover: false,
            ..DeflateConfig::default()
        }
    }

    #[test]
    fn rfc_7692_examples() {
        // §7.1.1.1-style offers and what a server with default windows answers.
        assert_eq!(
            answer("permessage-deflate", keep_context()).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", keep_context()).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            answer(
                "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
                keep_context()
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10")
        );
        assert_eq!(
            answer(
                "permessage-deflate; server_no_context_takeover",
                keep_context()
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        // §5.2: the first acceptable offer wins; an unacceptable one is skipped.
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover",
                keep_context()
            )
            .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
    }

    #[test]
    fn the_servers_own_limits_are_announced_only_where_allowed() {
        let cfg = DeflateConfig {
            server_max_window_bits: 10,
            client_max_window_bits: 11,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
        };
        // The client did not offer client_max_window_bits: the server must not name it.
        assert_eq!(
            answer("permessage-deflate", cfg).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
        );
        let a = negotiate(&["permessage-deflate"], &cfg).unwrap().unwrap();
        assert_eq!(a.client_max_window_bits, 15);
        // Offered without a value: the server picks; with a larger value: the server's bound.
        assert!(answer("permessage-deflate; client_max_window_bits", cfg)
            .unwrap()
            .ends_with("client_max_window_bits=11"));
        assert!(answer("permessage-deflate; client_max_window_bits=15", cfg)
            .unwrap()
            .ends_with("client_max_window_bits=11"));
        assert!(answer("permessage-deflate; client_max_window_bits=9", cfg)
            .unwrap()
            .ends_with("client_max_window_bits=9"));
    }

    #[test]
    fn bad_offers_are_declined_and_bad_headers_refused() {
        let cfg = DeflateConfig::default();
        for declined in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(answer(declined, cfg), None, "{declined}");
        }
        // Quoted values are values (RFC 7692 §7.1 allows a quoted-string).
        assert!(answer(r#"permessage-deflate; client_max_window_bits="10""#, cfg).is_some());
        for malformed in [
            "permessage-deflate; ;",
            "permessage-deflate; a=\"unterminated",
            "permessage deflate",
            "permessage-deflate; =10",
            "perm@ssage",
        ] {
            assert!(negotiate(&[malformed], &cfg).is_err(), "{malformed}");
        }
        // Several header lines are one list; empty list elements are fine.
        let a = negotiate(&["foo, ,", "permessage-deflate"], &cfg).unwrap();
        assert!(a.is_some());
    }
}
