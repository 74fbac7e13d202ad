//! The STOMP frame parser on arbitrary bytes, for every version, with small limits: never
//! panics, never consumes more than it was given, always makes progress, stays within the
//! limits, a frame's strict prefix is only ever partial, and a parsed frame re-encoded with
//! `write_frame` parses again to the same command and body (and the same headers when they can
//! be written back exactly).
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use stompbox::stomp::escape::unescape;
use stompbox::stomp::{parse, write_frame, FrameRef, Header, Limits, Parsed, Version};

const LIMITS: Limits = Limits {
    max_headers: 8,
    max_header_line: 128,
    max_body: 512,
};

fn parses(buf: &[u8], version: Version, limits: &Limits) -> Result<&'static str, String> {
    let mut slots = [Header::default(); 16];
    match parse(buf, &mut slots, version, limits) {
        Ok(Parsed::Frame(..)) => Ok("frame"),
        Ok(Parsed::Heartbeat(_)) => Ok("heartbeat"),
        Ok(Parsed::Partial) => Ok("partial"),
        Err(e) => Err(e.to_string()),
    }
}

type Decoded<'a> = Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>;

/// Header names and values decoded as the frame's version and command decode them.
fn decoded<'a>(f: &FrameRef<'a>) -> Decoded<'a> {
    let dec = |b: &'a [u8]| {
        if f.escaped {
            match unescape(b) {
                Ok(d) => d,
                Err(_) => panic!("parsed header with a bad escape: {b:?}"),
            }
        } else {
            Cow::Borrowed(b)
        }
    };
    f.headers
        .iter()
        .map(|h| (dec(h.name), dec(h.value)))
        .collect()
}

fn check_frame(f: &FrameRef<'_>, version: Version) {
    assert!(f.headers.len() <= LIMITS.max_headers);
    assert!(f.body.len() <= LIMITS.max_body);
    for h in f.headers {
        assert!(h.name.len() + 1 + h.value.len() <= LIMITS.max_header_line);
        // A NUL in a header would end the frame for a reader downstream (forgery).
        assert!(!h.name.contains(&0) && !h.value.contains(&0), "NUL in {h:?}");
        if f.escaped && version == Version::V1_2 {
            assert!(!h.name.contains(&b'\r') && !h.value.contains(&b'\r'), "CR in {h:?}");
        }
    }
    assert_eq!(
        f.escaped,
        version != Version::V1_0 && f.command.escapes_headers()
    );

    // Re-encode and parse again.
    let headers = decoded(f);
    let strings: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = strings
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut wire = Vec::new();
    write_frame(&mut wire, version, f.command, &pairs, f.body);
    let mut slots = [Header::default(); 64];
    let again = match parse(&wire, &mut slots, version, &Limits::default()) {
        Ok(Parsed::Frame(g, used)) => {
            assert_eq!(used, wire.len());
            g
        }
        other => panic!(
            "re-encoded {:?} gave {other:?}",
            String::from_utf8_lossy(&wire)
        ),
    };
    assert_eq!(again.command, f.command);
    assert_eq!(again.body, f.body);
    // Exact when nothing was lossy: valid UTF-8, and (unescaped frames) no CR, which
    // write_frame turns into a space; write_frame adds a content-length to a body without one.
    let exact = headers.iter().all(|(n, v)| {
        std::str::from_utf8(n).is_ok()
            && std::str::from_utf8(v).is_ok()
            && (f.escaped || !n.contains(&b'\r') && !v.contains(&b'\r'))
    });
    if exact {
        let got = decoded(&again);
        let added = usize::from(
            !f.body.is_empty() && !headers.iter().any(|(n, _)| n.as_ref() == b"content-length"),
        );
        assert_eq!(got.len(), headers.len() + added);
        assert_eq!(got.get(..headers.len()), Some(headers.as_slice()));
    }
}

fuzz_target!(|data: &[u8]| {
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut pos = 0;
        while pos < data.len() {
            let Some(rest) = data.get(pos..) else {
                panic!("position {pos} past {}", data.len());
            };
            let remaining = rest.len();
            let mut slots = [Header::default(); 16];
            match parse(rest, &mut slots, version, &LIMITS) {
                Ok(Parsed::Frame(f, used)) => {
                    assert!(used > 0 && used <= remaining, "used {used} of {remaining}");
                    check_frame(&f, version);
                    // A strict prefix of a frame is only partial; the last byte is its NUL.
                    assert_eq!(rest.get(used - 1), Some(&0));
                    for cut in [used - 1, used / 2] {
                        let prefix = rest.get(..cut).unwrap_or_default();
                        assert_eq!(parses(prefix, version, &LIMITS), Ok("partial"), "cut {cut}");
                    }
                    pos += used;
                }
                Ok(Parsed::Heartbeat(n)) => {
                    assert!(n > 0 && n <= remaining, "heart-beat {n} of {remaining}");
                    assert!(rest.iter().take(n).all(|b| matches!(b, b'\r' | b'\n')));
                    pos += n;
                }
                Ok(Parsed::Partial) => {
                    // A partial frame never needs more buffering than the limits allow.
                    assert!(remaining <= LIMITS.max_frame_bytes());
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
