//! Frame encoding, client and server side.

use super::escape::escape_into;
use super::frame::{Command, Version};

/// Append a frame. `headers` are raw (unescaped) names and values; they are escaped when the
/// version and command call for it. `content-length` is added when `body` is not empty or when
/// `with_length` is set.
pub fn write_frame(
    out: &mut Vec<u8>,
    version: Version,
    command: Command,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(command.as_str().as_bytes());
    out.push(b'\n');
    let escaped = version != Version::V1_0 && command.escapes_headers();
    for (k, v) in headers {
        if escaped {
            escape_into(out, k.as_bytes());
            out.push(b':');
            escape_into(out, v.as_bytes());
        } else {
            push_unescaped(out, k.as_bytes());
            out.push(b':');
            push_unescaped(out, v.as_bytes());
        }
        out.push(b'\n');
    }
    if !body.is_empty() && !headers.iter().any(|(k, _)| *k == "content-length") {
        out.extend_from_slice(b"content-length:");
        push_usize(out, body.len());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
}

/// Append a header name or value where escaping is not available (1.0, CONNECT, CONNECTED).
/// An EOL would end the header and let the value inject headers or a body, and a NUL would end
/// the frame, so each `\r`, `\n` and NUL becomes a space.
fn push_unescaped(out: &mut Vec<u8>, v: &[u8]) {
    let bad = |b: &u8| matches!(b, b'\r' | b'\n' | 0);
    if !v.iter().any(bad) {
        out.extend_from_slice(v);
        return;
    }
    out.extend(v.iter().map(|&b| if bad(&b) { b' ' } else { b }));
}

/// Append a decimal number without allocating.
pub fn push_usize(out: &mut Vec<u8>, n: usize) {
    let mut tmp = [0u8; 20];
    out.extend_from_slice(usize_digits(n, &mut tmp));
}

/// The decimal digits of `n`, written at the end of `tmp`.
pub fn usize_digits(mut n: usize, tmp: &mut [u8; 20]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(d) = tmp.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    tmp.get(i..).unwrap_or_default()
}

/// Append an ERROR frame with a `message` header and a short body.
pub fn write_error(out: &mut Vec<u8>, version: Version, message: &str, receipt_id: Option<&str>) {
    let mut h: [(&str, &str); 3] = [
        ("message", message),
        ("content-type", "text/plain"),
        ("", ""),
    ];
    let n = match receipt_id {
        Some(r) => {
            h[2] = ("receipt-id", r);
            3
        }
        None => 2,
    };
    write_frame(
        out,
        version,
        Command::Error,
        h.get(..n).unwrap_or_default(),
        message.as_bytes(),
    );
}
