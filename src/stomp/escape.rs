//! STOMP 1.1/1.2 header escaping: `\r` (1.2), `\n`, `\c` (colon), `\\`. Any other escape is an
//! error; 1.0 escapes nothing.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape;

/// Check that every backslash starts a defined escape.
pub fn validate(raw: &[u8]) -> Result<(), BadEscape> {
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            match it.next() {
                Some(b'r' | b'n' | b'c' | b'\\') => {}
                _ => return Err(BadEscape),
            }
        }
    }
    Ok(())
}

/// Decode escapes; borrows when there are none.
pub fn unescape(raw: &[u8]) -> Result<Cow<'_, [u8]>, BadEscape> {
    if !raw.contains(&b'\\') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            out.push(match it.next() {
                Some(b'r') => b'\r',
                Some(b'n') => b'\n',
                Some(b'c') => b':',
                Some(b'\\') => b'\\',
                _ => return Err(BadEscape),
            });
        } else {
            out.push(b);
        }
    }
    Ok(Cow::Owned(out))
}

/// Does this value need escaping?
pub fn needs_escape(v: &[u8]) -> bool {
    v.iter()
        .any(|b| matches!(b, b'\r' | b'\n' | b':' | b'\\' | 0))
}

/// Append `v` escaped. STOMP has no escape for NUL, which would end the frame for any reader:
/// it becomes a space (parsed frames cannot hold one; values from handlers could).
pub fn escape_into(out: &mut Vec<u8>, v: &[u8]) {
    if !needs_escape(v) {
        out.extend_from_slice(v);
        return;
    }
    for &b in v {
        match b {
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0 => out.push(b' '),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let v = b"a:b\\c\nd\re";
        let mut e = Vec::new();
        escape_into(&mut e, v);
        assert_eq!(e, b"a\\cb\\\\c\\nd\\re");
        assert_eq!(unescape(&e).unwrap().as_ref(), v);
        assert!(validate(&e).is_ok());
        assert_eq!(validate(b"bad\\t"), Err(BadEscape));
        assert_eq!(validate(b"trailing\\"), Err(BadEscape));
        assert!(matches!(unescape(b"plain"), Ok(Cow::Borrowed(_))));
        // NUL has no escape: written as a space, never raw.
        let mut e = Vec::new();
        escape_into(&mut e, b"a\0MESSAGE");
        assert_eq!(e, b"a MESSAGE");
    }
}
