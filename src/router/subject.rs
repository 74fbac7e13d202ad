//! STOMP destinations as NATS subjects, and back.
//!
//! ```text
//!  /topic/chat.room-5      ->  <prefix>.t.chat.room-5
//!  /topic/a b.%x           ->  <prefix>.t.a%20b.%25x
//!  /topic/a..b             ->  <prefix>.t.a.%.b            (an empty word is a lone `%`)
//!  /user/bob/queue/x       ->  <prefix>.d./user/bob/queue/x
//!  /exchange/x.y           ->  <prefix>.d./exchange/x.y
//!  /queue/jobs.eu          ->  <prefix>.q./queue/jobs.eu   (the JetStream queue store)
//!  /topic/a.*.c  (pattern) ->  <prefix>.t.a.*.c
//!  /topic/a.#    (pattern) ->  <prefix>.t.a.>  and  <prefix>.t.a
//!  /topic/a.#.c  (pattern) ->  <prefix>.t.a.>               (the trie filters the rest)
//! ```
//!
//! A destination's `.`-separated words become NATS tokens (`/topic/` destinations: the words
//! after the prefix, under `t`; any other destination: all its words, under `d`). Every byte
//! outside `A-Z a-z 0-9 - _ /` is written `%XX` (upper-case hex), and an empty word is a lone
//! `%`, so tokens are never empty, never `*` or `>`, and never hold whitespace: the mapping is
//! injective and [`destination`] inverts it.
//!
//! A pattern's `*` word is NATS's `*`. A `#` (zero or more words) is covered by NATS subjects
//! that together match every destination the pattern can match: the words before the first `#`
//! followed by `>` (one or more tokens), plus, for a trailing `#`, those words alone (the
//! zero-word case). At most one cover of a pattern matches any one subject, so a node receives
//! a message once per cover that wants it, never twice for one pattern.

/// The longest subject a node uses: NATS refuses protocol lines past its `max_control_line`
/// (4 KiB by default), and a refused line would cost the node its connection. A destination
/// whose subject is longer is refused in cluster mode.
pub const MAX_SUBJECT: usize = 2048;

/// Under the prefix: `/topic/` destinations.
const TOPIC: &str = "t";
/// Under the prefix: every other destination.
const OTHER: &str = "d";
/// Under the prefix: queues, in cluster mode's JetStream store (`/queue/jobs` ->
/// `<prefix>.q./queue/jobs`), so no topic subscription can ever match a queue's message.
const QUEUE: &str = "q";

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/')
}

fn push_word(out: &mut String, word: &str) {
    if word.is_empty() {
        out.push('%');
        return;
    }
    for &b in word.as_bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Whether `prefix` can head subjects: tokens of `A-Z a-z 0-9 - _`, separated by dots.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `(kind token, words)` of a destination.
fn split(destination: &str) -> (&'static str, &str) {
    match super::wildcard::key(destination) {
        Some(key) => (TOPIC, key),
        None if super::kind(destination) == super::DestKind::Queue => (QUEUE, destination),
        None => (OTHER, destination),
    }
}

/// The length [`subject`] would have, without making it (checked on every SEND).
pub fn subject_len(prefix: &str, destination: &str) -> usize {
    let (kind, words) = split(destination);
    let bytes: usize = words
        .bytes()
        .map(|b| if plain(b) || b == b'.' { 1 } else { 3 })
        .sum();
    // Each empty word becomes a lone `%`.
    let empty = words.split('.').filter(|w| w.is_empty()).count();
    prefix.len() + 1 + kind.len() + 1 + bytes + empty
}

/// The subject of a (non-pattern) destination. `None` past [`MAX_SUBJECT`].
pub fn subject(prefix: &str, destination: &str) -> Option<String> {
    let (kind, words) = split(destination);
    subject_of(prefix, kind, words)
}

/// What every queue subject starts with (the queue stream's subjects are this and `>`).
pub fn queue_root(prefix: &str) -> String {
    format!("{prefix}.{QUEUE}")
}

fn subject_of(prefix: &str, kind: &str, words: &str) -> Option<String> {
    let mut out = String::with_capacity(prefix.len() + 3 + words.len());
    out.push_str(prefix);
    out.push('.');
    out.push_str(kind);
    for w in words.split('.') {
        out.push('.');
        push_word(&mut out, w);
        if out.len() > MAX_SUBJECT {
            return None;
        }
    }
    Some(out)
}

/// The NATS subjects that together cover a `/topic/` pattern (one or two; see the module
/// docs). `None` past [`MAX_SUBJECT`].
pub fn covers(prefix: &str, pattern: &str) -> Option<Vec<String>> {
    let mut head = String::with_capacity(prefix.len() + 3 + pattern.len());
    head.push_str(prefix);
    head.push('.');
    head.push_str(TOPIC);
    let mut words = super::wildcard::pattern_words(pattern).peekable();
    let mut any = false;
    while let Some(w) = words.next() {
        if w == "#" {
            let all = format!("{head}.>");
            if all.len() > MAX_SUBJECT {
                return None;
            }
            let trailing = words.peek().is_none();
            return Some(if trailing && any {
                vec![all, head]
            } else {
                vec![all]
            });
        }
        head.push('.');
        if w == "*" {
            head.push('*');
        } else {
            push_word(&mut head, w);
        }
        any = true;
        if head.len() > MAX_SUBJECT {
            return None;
        }
    }
    Some(vec![head])
}

fn unhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unescape_word(token: &str, out: &mut Vec<u8>) -> Option<()> {
    if token == "%" {
        return Some(());
    }
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = unhex(bytes.next()?)?;
            let lo = unhex(bytes.next()?)?;
            let v = hi << 4 | lo;
            // Only what `push_word` escapes: one spelling per byte keeps the inverse exact.
            if plain(v) {
                return None;
            }
            out.push(v);
        } else if plain(b) {
            out.push(b);
        } else {
            return None;
        }
    }
    Some(())
}

/// The destination a literal subject stands for (the inverse of [`subject`]); `None` for a
/// subject this mapping cannot have made.
pub fn destination(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (kind, tokens) = rest.split_once('.')?;
    let mut out = Vec::with_capacity(tokens.len() + 7);
    match kind {
        TOPIC => out.extend_from_slice(super::wildcard::TOPIC_PREFIX.as_bytes()),
        OTHER | QUEUE => {}
        _ => return None,
    }
    for (i, t) in tokens.split('.').enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if t.is_empty() {
            return None;
        }
        unescape_word(t, &mut out)?;
    }
    let d = String::from_utf8(out).ok()?;
    // A `/topic/` destination is under `t` only; a queue under `q` only; the rest under `d`.
    let want = match super::kind(&d) {
        super::DestKind::Queue => QUEUE,
        _ if super::wildcard::key(&d).is_some() => TOPIC,
        _ => OTHER,
    };
    (kind == want).then_some(d)
}

/// Whether a subject holds a wildcard token (a pattern's cover, not a destination's subject).
pub fn is_wildcard(subject: &str) -> bool {
    subject.split('.').any(|t| t == "*" || t == ">")
}

/// NATS's own matching of a literal subject against a subscription subject (for tests and
/// for checking what arrives).
pub fn nats_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;
