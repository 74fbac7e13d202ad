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
        (" 2 s ", 2000, "2s"),
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
        "1.5s",
        "-1s",
        "10 sec",
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
fn log_filters_choose_the_longest_matching_target() {
    let f: LogFilter = "warn, stompbox::server=debug,stompbox::server::conn=trace,mio=off"
        .parse()
        .unwrap();
    assert_eq!(f.level_for("stompbox"), LevelFilter::Warn);
    assert_eq!(f.level_for("stompbox::server"), LevelFilter::Debug);
    assert_eq!(f.level_for("stompbox::server::reactor"), LevelFilter::Debug);
    assert_eq!(f.level_for("stompbox::server::conn"), LevelFilter::Trace);
    assert_eq!(f.level_for("stompbox::serverless"), LevelFilter::Warn);
    assert_eq!(f.level_for("mio::poll"), LevelFilter::Off);
    assert_eq!(f.max_level(), LevelFilter::Trace);
    assert_eq!(
        f.to_string(),
        "warn,stompbox::server=debug,stompbox::server::conn=trace,mio=off"
    );
    assert_eq!(f.to_string().parse::<LogFilter>().unwrap(), f);

    let f: LogFilter = "DEBUG".parse().unwrap();
    assert_eq!(
        (f.to_string().as_str(), f.max_level()),
        ("debug", LevelFilter::Debug)
    );
    let f: LogFilter = "stompbox=trace".parse().unwrap();
    assert_eq!(f.level_for("other"), LevelFilter::Info);
    assert_eq!(f.level_for("stompbox::x"), LevelFilter::Trace);
    for bad in ["loud", "=debug", "stompbox=loud", "a b=info"] {
        assert!(bad.parse::<LogFilter>().is_err(), "{bad}");
    }
}
