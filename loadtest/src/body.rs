//! The load tool's message body: who sent it, its sequence number and when, in fixed-width hex
//! at the front, padded to the requested size. Receivers read the timestamp for end-to-end
//! latency (sender and receiver share one process clock).

/// `L` + 8 hex digits of source + 16 of sequence + 16 of send time (ns since the run's epoch).
pub const MIN_BODY: usize = 41;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        let nib = (v >> (i * 4)) & 0xf;
        out.push(HEX.get(nib as usize).copied().unwrap_or(b'0'));
    }
}

fn get_hex(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | d as u64)
    })
}

/// Append a body of `size` bytes (at least [`MIN_BODY`]).
pub fn write(out: &mut Vec<u8>, src: u32, seq: u64, ts_ns: u64, size: usize) {
    let start = out.len();
    out.push(b'L');
    put_hex(out, src as u64, 8);
    put_hex(out, seq, 16);
    put_hex(out, ts_ns, 16);
    let pad = size.saturating_sub(out.len() - start);
    out.extend(std::iter::repeat_n(b'.', pad));
}

/// What a body says, if it is one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub src: u32,
    pub seq: u64,
    pub ts_ns: u64,
}

pub fn read(b: &[u8]) -> Option<Stamp> {
    let (&[b'L'], rest) = b.split_at_checked(1)? else {
        return None;
    };
    Some(Stamp {
        src: get_hex(rest.get(0..8)?)? as u32,
        seq: get_hex(rest.get(8..24)?)?,
        ts_ns: get_hex(rest.get(24..40)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        for size in [0, 41, 64, 1000] {
            let mut b = Vec::new();
            write(&mut b, 0xdead_beef, u64::MAX - 3, 123_456_789, size);
            assert_eq!(b.len(), size.max(MIN_BODY));
            assert_eq!(
                read(&b),
                Some(Stamp {
                    src: 0xdead_beef,
                    seq: u64::MAX - 3,
                    ts_ns: 123_456_789
                })
            );
        }
        assert_eq!(read(b"hello"), None);
        assert_eq!(read(b""), None);
        assert_eq!(read(&[b'L'; 41]), None);
    }
}
