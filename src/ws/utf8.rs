//! Incremental UTF-8 validation for text messages that arrive in fragments (RFC 6455 §8.1).
//!
//! It fails as soon as the bytes seen so far cannot be the prefix of valid UTF-8, which is what
//! "fail fast" conformance tests expect, not only at the end of the message.

/// Validates a text message piece by piece. At most 3 bytes of an unfinished code point are
/// carried between pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The bytes fed so far can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget any carried bytes (start of a new message).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Feed the next piece of the message.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        // Finish a code point carried over from the previous piece, one byte at a time.
        while self.pending_len > 0 {
            let Some((&b, rest)) = data.split_first() else {
                return Ok(());
            };
            data = rest;
            let slot = self
                .pending
                .get_mut(self.pending_len as usize)
                .ok_or(InvalidUtf8)?;
            *slot = b;
            self.pending_len += 1;
            let carried = self
                .pending
                .get(..self.pending_len as usize)
                .ok_or(InvalidUtf8)?;
            match std::str::from_utf8(carried) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {}
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = data.get(e.valid_up_to()..).ok_or(InvalidUtf8)?;
                let dst = self.pending.get_mut(..tail.len()).ok_or(InvalidUtf8)?;
                dst.copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The message ended: valid only if no code point is left unfinished.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let ok = self.pending_len == 0;
        self.pending_len = 0;
        if ok {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split_everywhere(bytes: &[u8]) {
        let expected = std::str::from_utf8(bytes).is_ok();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&bytes[..i]).is_ok()
                    && v.feed(&bytes[i..j]).is_ok()
                    && v.feed(&bytes[j..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, expected, "{bytes:x?} split at {i},{j}");
            }
        }
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let cases: &[&[u8]] = &[
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            &[0xf0, 0x90, 0x80, 0x80],
            &[0xf4, 0x8f, 0xbf, 0xbf],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xed, 0xa0, 0x80],
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
            &[0xc0, 0xaf],
            &[0xe0, 0x80, 0xaf],
            &[0xfe],
            &[0xc2],
            &[0xe2, 0x82],
            b"plain ascii",
        ];
        for c in cases {
            check_split_everywhere(c);
        }
    }

    #[test]
    fn fails_fast_on_invalid_prefix() {
        // κόσμε followed by the start of a surrogate: invalid before the message ends.
        let mut v = Utf8Validator::new();
        assert!(v
            .feed(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5])
            .is_ok());
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }
}
