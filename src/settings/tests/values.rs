//! Values with units and syntax: durations, listeners, log filters.

use super::*;

#[test]
fn durations_parse_and_print() {
    for (text, ms, printed) in [
        ("0", 0, "0s"),
        ("0ms", 0, "0s"),
        ("250ms", 250, "250ms"),
        ("1500ms", 1500, "1500ms"),
        ("10s", 10_000, "10s"),
        ("90s", 90_000, "90s"),
        ("120s", 120_000, "2m"),
        ("5m", 300_000, "5m"),
        ("5min", 300_000, "5m"),
        ("1h", 3_600_000, "1h"),
        (" 2s ", 2000, "2s"),
        // humantime's grammar: compound and long units.
        ("1h 30m", 5_400_000, "90m"),
        ("1m30s", 90_000, "90s"),
        ("2days", 172_800_000, "48h"),
        ("10 sec", 10_000, "10s"),
    ] {
        let d: Dur = text.parse().unwrap();
        assert_eq!(d.millis(), ms, "{text}");
        assert_eq!(d.to_string(), printed, "{text}");
        assert_eq!(printed.parse::<Dur>().unwrap(), d);
    }
    for bad in [
        "",
        "10",
        "s",
        "-1s",
        "ten seconds",
        "1us",
        "99999999999999999999h",
    ] {
        assert!(bad.parse::<Dur>().is_err(), "{bad}");
    }
}

#[test]
fn listeners_parse_and_print() {
    assert_eq!("off".parse::<Listener>().unwrap(), Listener::Off);
    assert_eq!("OFF".parse::<Listener>().unwrap(), Listener::Off);
    let l: Listener = "[::1]:61613".parse().unwrap();
    assert_eq!(l.to_string(), "[::1]:61613");
    assert_eq!(l.addr(), Some("[::1]:61613".parse().unwrap()));
    for bad in ["", "61613", "localhost:61613", "127.0.0.1"] {
        assert!(bad.parse::<Listener>().is_err(), "{bad}");
    }
}

#[test]
fn log_filters_are_checked_and_normalized() {
    let f: LogFilter = "WARN, stompbox::server=DEBUG,stompbox::server::conn=trace,mio=off"
        .parse()
        .unwrap();
    assert_eq!(
        f.to_string(),
        "warn,stompbox::server=debug,stompbox::server::conn=trace,mio=off"
    );
    assert_eq!(f.to_string().parse::<LogFilter>().unwrap(), f);
    assert_eq!("".parse::<LogFilter>().unwrap(), LogFilter::default());
    assert_eq!(LogFilter::default().to_string(), "info");
    // The filter tracing-subscriber gets says the same (its own rendering of the directives).
    let shown = f.env_filter().to_string();
    assert!(shown.contains("stompbox::server::conn=trace"), "{shown}");
    for bad in ["loud", "=debug", "stompbox=loud", "a b=info"] {
        assert!(bad.parse::<LogFilter>().is_err(), "{bad}");
    }
}
