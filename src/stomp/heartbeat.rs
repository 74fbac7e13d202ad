//! Heart-beat negotiation (STOMP 1.1+ "Heart-beating").

/// `heart-beat: cx,cy` from CONNECT, or `None` if malformed.
pub fn parse_header(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Negotiate. `client` = (cx, cy) from CONNECT: the client can send every cx ms and wants to
/// receive every cy ms; `server` = (sx, sy): the server sends at least every sx ms and wants to
/// receive every sy ms; neither way goes below `min` ms. Returns (server sends every, server
/// expects every), in ms, 0 meaning never.
///
/// The client's ask is honoured, as RabbitMQ and ActiveMQ do: a client behind a proxy that
/// closes connections idle for 5 s asks for `0,1000` and gets a beat every second, not every
/// sx. Sending more often than asked is allowed, so the server also sends every sx at most
/// (a client asking for 60 s still gets sx). What the server expects follows the spec's rule,
/// the longer of the two, because the client sends at that interval too.
pub fn negotiate(client: (u64, u64), server: (u64, u64), min: u64) -> (u64, u64) {
    let (cx, cy) = client;
    let (sx, sy) = server;
    let send = if sx == 0 || cy == 0 {
        0
    } else {
        cy.min(sx).max(min)
    };
    let recv = if cx == 0 || sy == 0 {
        0
    } else {
        cx.max(sy).max(min)
    };
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
        assert_eq!(negotiate((0, 0), (10_000, 10_000), 100), (0, 0));
        // The client's ask is honoured: beats every second, expected every 10 s.
        assert_eq!(
            negotiate((4000, 1000), (10_000, 10_000), 100),
            (1000, 10_000)
        );
        // Down to the floor, not below.
        assert_eq!(negotiate((10, 10), (10_000, 10_000), 100), (100, 10_000));
        // Rarer than the server's interval: the server sends every sx anyway, and expects
        // the client's (longer) interval.
        assert_eq!(
            negotiate((20_000, 30_000), (10_000, 10_000), 100),
            (10_000, 20_000)
        );
        assert_eq!(negotiate((100, 100), (0, 0), 100), (0, 0));
    }
}
