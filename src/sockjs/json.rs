//! The JSON SockJS needs, and no more: strings written the way SockJS clients expect them, and
//! the messages a client sends (an array of strings, or one string) read without recursion.
//!
//! Written by hand rather than with a JSON crate because both directions are narrower than JSON
//! and have SockJS-specific rules: the server escapes the characters some browsers mangle
//! (`escapable_by_server` in the protocol's test suite), and a client's payload is a flat array
//! of strings, so there is no nesting a client could make deep.

/// Why a client's payload was refused (the protocol's wording, answered with HTTP 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPayload {
    /// Nothing was sent.
    Empty,
    /// Not an array of strings (or one string).
    Broken,
}

impl BadPayload {
    pub fn reason(self) -> &'static str {
        match self {
            BadPayload::Empty => "Payload expected.",
            BadPayload::Broken => "Broken JSON encoding.",
        }
    }
}

/// Append `bytes` as a JSON string. Invalid UTF-8 becomes U+FFFD (SockJS carries text only).
/// Control characters and the ranges browsers treat specially (U+200C-U+200F, U+2028-U+202F,
/// U+2060-U+206F, U+FFF0-U+FFFF) are written `\uXXXX`; with `html`, `<` too (`\u003c`), so
/// that a message holding `</script>` cannot end the script element it is written into.
pub fn write_string(out: &mut Vec<u8>, bytes: &[u8], html: bool) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        write_valid(out, chunk.valid(), html);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

fn write_valid(out: &mut Vec<u8>, s: &str, html: bool) {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            '\u{8}' => b"\\b",
            '\u{c}' => b"\\f",
            _ => b"",
        };
        let escape = !short.is_empty() || needs_unicode_escape(c) || (html && c == '<');
        if !escape {
            continue;
        }
        out.extend_from_slice(s.as_bytes().get(plain..i).unwrap_or_default());
        plain = i + c.len_utf8();
        if short.is_empty() {
            write_u_escape(out, c as u32);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(s.as_bytes().get(plain..).unwrap_or_default());
}

fn needs_unicode_escape(c: char) -> bool {
    matches!(c,
        '\0'..='\u{1f}'
        | '\u{200c}'..='\u{200f}'
        | '\u{2028}'..='\u{202f}'
        | '\u{2060}'..='\u{206f}'
        | '\u{fff0}'..='\u{ffff}')
}

fn write_u_escape(out: &mut Vec<u8>, v: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((v >> shift) & 0xf) as usize]);
    }
}

/// Read a client's payload: a JSON array of strings, or (`single_ok`, the WebSocket
/// transport) one string. Each message is decoded onto `out`; `ends` gets the offset in `out`
/// where each ends. Nothing is appended when the payload is refused.
pub fn read_messages(
    body: &[u8],
    single_ok: bool,
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), BadPayload> {
    let (out_len, ends_len) = (out.len(), ends.len());
    let r = read_inner(body, single_ok, out, ends);
    if r.is_err() {
        out.truncate(out_len);
        ends.truncate(ends_len);
    }
    r
}

fn read_inner(
    body: &[u8],
    single_ok: bool,
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), BadPayload> {
    let mut p = Reader { s: body, i: 0 };
    p.ws();
    match p.peek() {
        None => return Err(BadPayload::Empty),
        Some(b'"') if single_ok => {
            p.string(out)?;
            ends.push(out.len());
        }
        Some(b'[') => {
            p.i += 1;
            p.ws();
            if p.peek() == Some(b']') {
                p.i += 1;
            } else {
                loop {
                    p.ws();
                    p.string(out)?;
                    ends.push(out.len());
                    p.ws();
                    match p.next() {
                        Some(b',') => continue,
                        Some(b']') => break,
                        _ => return Err(BadPayload::Broken),
                    }
                }
            }
        }
        Some(_) => return Err(BadPayload::Broken),
    }
    p.ws();
    match p.peek() {
        None => Ok(()),
        Some(_) => Err(BadPayload::Broken),
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn hex4(&mut self) -> Result<u32, BadPayload> {
        let mut v = 0;
        for _ in 0..4 {
            let d = match self.next() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(BadPayload::Broken),
            };
            v = v * 16 + u32::from(d);
        }
        Ok(v)
    }

    /// One string, decoded onto `out` (a lone surrogate becomes U+FFFD).
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), BadPayload> {
        if self.next() != Some(b'"') {
            return Err(BadPayload::Broken);
        }
        loop {
            // The run up to the next quote, backslash or control character, copied whole.
            let rest = self.s.get(self.i..).unwrap_or_default();
            let run = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or(BadPayload::Broken)?;
            let plain = rest.get(..run).unwrap_or_default();
            if std::str::from_utf8(plain).is_err() {
                return Err(BadPayload::Broken);
            }
            out.extend_from_slice(plain);
            self.i += run;
            match self.next() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => {}
                _ => return Err(BadPayload::Broken),
            }
            let c = match self.next() {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => self.unicode()?,
                _ => return Err(BadPayload::Broken),
            };
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }

    /// After `\u`: one code point, a surrogate pair taken together.
    fn unicode(&mut self) -> Result<char, BadPayload> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            let save = self.i;
            if self.s.get(self.i..self.i + 2) == Some(b"\\u") {
                self.i += 2;
                let lo = self.hex4()?;
                if (0xDC00..0xE000).contains(&lo) {
                    let v = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return Ok(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
            }
            self.i = save;
            return Ok('\u{fffd}');
        }
        Ok(char::from_u32(hi).unwrap_or('\u{fffd}'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &[u8], html: bool) -> String {
        let mut out = Vec::new();
        write_string(&mut out, s, html);
        String::from_utf8(out).unwrap()
    }

    fn dec(body: &str, single: bool) -> Result<Vec<String>, BadPayload> {
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        read_messages(body.as_bytes(), single, &mut out, &mut ends)?;
        let mut start = 0;
        Ok(ends
            .iter()
            .map(|&e| {
                let s = String::from_utf8(out[start..e].to_vec()).unwrap();
                start = e;
                s
            })
            .collect())
    }

    #[test]
    fn strings_are_escaped_as_sockjs_clients_expect() {
        assert_eq!(enc(b"a", false), r#""a""#);
        assert_eq!(enc(b"  \0\n\r ", false), r#""  \u0000\n\r ""#);
        assert_eq!(enc("q\"b\\".as_bytes(), false), r#""q\"b\\""#);
        assert_eq!(
            enc("\u{2028}\u{200b}\u{fff0}é".as_bytes(), false),
            "\"\\u2028\u{200b}\\ufff0é\""
        );
        assert_eq!(enc(b"\xff\xfeok", false), r#""\ufffd\ufffdok""#);
        assert_eq!(enc(b"</script>", true), r#""\u003c/script>""#);
        assert_eq!(enc(b"</script>", false), r#""</script>""#);
    }

    /// The protocol suite's `escapable_by_server` set, every code point from 255 up: exactly
    /// those are escaped.
    #[test]
    fn exactly_the_server_set_is_escaped() {
        for c in (255u32..0x10000).filter_map(char::from_u32) {
            let s = c.to_string();
            let e = enc(s.as_bytes(), false);
            let want = matches!(c as u32, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff);
            assert_eq!(e.starts_with("\"\\u"), want, "{:x}", c as u32);
        }
    }

    #[test]
    fn payloads_are_read() {
        assert_eq!(dec(r#"["a"]"#, false).unwrap(), ["a"]);
        assert_eq!(dec(r#" [ "a" , "b\n" ] "#, false).unwrap(), ["a", "b\n"]);
        assert_eq!(dec(r#"[]"#, false).unwrap(), Vec::<String>::new());
        assert_eq!(dec(r#""x""#, true).unwrap(), ["x"]);
        assert_eq!(
            dec(r#"["\u0041\ud83d\ude00\ud800x\/"]"#, false).unwrap(),
            ["A😀\u{fffd}x/"]
        );
        assert_eq!(dec("[\"\\u00e9é\"]", false).unwrap(), ["éé"]);
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert_eq!(dec("", false), Err(BadPayload::Empty));
        assert_eq!(dec("  ", false), Err(BadPayload::Empty));
        for bad in [
            r#"["a"#,
            r#"["a""#,
            r#"["a",]"#,
            r#"[1]"#,
            r#"[["a"]]"#,
            r#""x""#,
            r#"["a"] x"#,
            "[\"a\nb\"]",
            r#"["\x"]"#,
            r#"["\u12"]"#,
            "{}",
        ] {
            assert_eq!(dec(bad, false), Err(BadPayload::Broken), "{bad}");
        }
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        assert!(read_messages(b"[\"\xff\"]", false, &mut out, &mut ends).is_err());
        assert!(read_messages(b"[\"ok\", 2]", false, &mut out, &mut ends).is_err());
        assert!(out.is_empty() && ends.is_empty());
    }

    /// Deep nesting is refused at the first level: nothing recurses.
    #[test]
    fn nesting_cannot_go_deep() {
        let deep = "[".repeat(100_000);
        assert_eq!(dec(&deep, false), Err(BadPayload::Broken));
    }

    #[test]
    fn what_is_written_reads_back() {
        let samples: [&[u8]; 4] = [
            b"",
            b"CONNECT\naccept-version:1.2\n\n\0",
            "é\u{2028}\"\\\t".as_bytes(),
            b"\x01\x1f",
        ];
        for s in samples {
            let mut body = b"[".to_vec();
            write_string(&mut body, s, false);
            body.push(b']');
            let got = dec(std::str::from_utf8(&body).unwrap(), false).unwrap();
            assert_eq!(got[0].as_bytes(), s);
        }
    }
}
