//! Topic wildcards, as in RabbitMQ's topic exchange: the part of a `/topic/` destination after
//! the prefix is a '.'-separated list of words; in a subscription, `*` matches exactly one word
//! and `#` matches zero or more. Patterns live in a trie, so matching a published destination
//! costs a walk of its words, not a look at every pattern.

use std::collections::HashMap;

pub const TOPIC_PREFIX: &str = "/topic/";

/// The routing key of a topic destination (None for other destinations).
pub fn key(destination: &str) -> Option<&str> {
    destination.strip_prefix(TOPIC_PREFIX)
}

/// A topic subscription with a `*` or `#` word.
pub fn is_pattern(destination: &str) -> bool {
    key(destination).is_some_and(|k| k.split('.').any(|w| w == "*" || w == "#"))
}

/// The words of a pattern as the trie stores them: consecutive `#` words collapse into one
/// (`a.#.#.b` matches exactly what `a.#.b` matches), so no run of `#` can multiply the nodes a
/// walk keeps alive.
pub fn pattern_words(pattern: &str) -> impl Iterator<Item = &str> {
    let mut prev_hash = false;
    key(pattern).unwrap_or(pattern).split('.').filter(move |w| {
        let hash = *w == "#";
        let keep = !(hash && prev_hash);
        prev_hash = hash;
        keep
    })
}

/// Words of a pattern after normalisation (what `session.max_pattern_words` bounds).
pub fn pattern_len(pattern: &str) -> usize {
    pattern_words(pattern).count()
}

/// The plain recursive matcher the trie is tested against.
pub fn matches_naive(pattern: &str, destination: &str) -> bool {
    fn go(p: &[&str], d: &[&str]) -> bool {
        match p.split_first() {
            None => d.is_empty(),
            Some((&"#", rest)) => (0..=d.len()).any(|k| go(rest, d.get(k..).unwrap_or_default())),
            Some((w, rest)) => match d.split_first() {
                Some((x, drest)) => (*w == "*" || w == x) && go(rest, drest),
                None => false,
            },
        }
    }
    match (key(pattern), key(destination)) {
        (Some(p), Some(d)) => {
            let p: Vec<&str> = p.split('.').collect();
            let d: Vec<&str> = d.split('.').collect();
            go(&p, &d)
        }
        _ => false,
    }
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    value: Option<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            words: HashMap::new(),
            star: None,
            hash: None,
            value: None,
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

/// Patterns to values.
#[derive(Debug)]
pub struct Trie<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for Trie<T> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T> Trie<T> {
    /// Patterns stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every value, in no particular order (a walk with a stack: no recursion).
    pub fn visit(&self, mut f: impl FnMut(&T)) {
        let mut stack = vec![&self.root];
        while let Some(n) = stack.pop() {
            if let Some(v) = &n.value {
                f(v);
            }
            stack.extend(n.words.values());
            stack.extend(n.star.as_deref());
            stack.extend(n.hash.as_deref());
        }
    }

    /// The value slot of a pattern, created if missing.
    pub fn entry(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        let mut node = &mut self.root;
        for w in pattern_words(pattern) {
            node = match w {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                w => node.words.entry(w.into()).or_default(),
            };
        }
        if node.value.is_none() {
            self.len += 1;
        }
        node.value.get_or_insert_with(make)
    }

    /// The value of a pattern, if stored.
    pub fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let mut node = &mut self.root;
        for w in pattern_words(pattern) {
            node = match w {
                "*" => node.star.as_deref_mut()?,
                "#" => node.hash.as_deref_mut()?,
                w => node.words.get_mut(w)?,
            };
        }
        node.value.as_mut()
    }

    /// Remove a pattern (and prune empty branches). The recursion is as deep as the pattern has
    /// words, which SUBSCRIBE bounds (`session.max_pattern_words`).
    pub fn remove(&mut self, pattern: &str) -> Option<T> {
        fn go<T>(node: &mut Node<T>, words: &[&str]) -> Option<T> {
            let Some((w, rest)) = words.split_first() else {
                return node.value.take();
            };
            let v = match *w {
                "*" => {
                    let child = node.star.as_deref_mut()?;
                    let v = go(child, rest);
                    if child.is_empty() {
                        node.star = None;
                    }
                    v
                }
                "#" => {
                    let child = node.hash.as_deref_mut()?;
                    let v = go(child, rest);
                    if child.is_empty() {
                        node.hash = None;
                    }
                    v
                }
                w => {
                    let child = node.words.get_mut(w)?;
                    let v = go(child, rest);
                    if child.is_empty() {
                        node.words.remove(w);
                    }
                    v
                }
            };
            v
        }
        let words: Vec<&str> = pattern_words(pattern).collect();
        let v = go(&mut self.root, &words);
        if v.is_some() {
            self.len -= 1;
        }
        v
    }

    /// Call `f` once for each stored pattern that matches `destination`.
    ///
    /// The words are read once, left to right, keeping the set of trie nodes still alive (an
    /// NFA walk): a node entered through `#` stays alive for every further word. Each live node
    /// is entered once per word, with an O(1) check for duplicates, so the cost is at most
    /// words x live nodes: no pattern (`#.a.#.a.#...`) can make one publish explode the way
    /// backtracking over the ways `#` can split the words would. The live sets sit on the stack
    /// up to 32 nodes each: a publish allocates nothing unless more are alive.
    pub fn for_each_match<'t>(&'t self, destination: &str, mut f: impl FnMut(&'t T)) {
        let Some(k) = key(destination) else {
            return;
        };
        if self.len == 0 {
            return;
        }
        let mut live = Live::new();
        let mut next = Live::new();
        live.enter(&self.root, false);
        for w in k.split('.') {
            next.clear();
            for (n, by_hash) in live.iter() {
                if by_hash {
                    // `#` takes this word as well.
                    next.enter(n, true);
                }
                if let Some(c) = n.words.get(w) {
                    next.enter(c, false);
                }
                if let Some(c) = n.star.as_deref() {
                    next.enter(c, false);
                }
            }
            std::mem::swap(&mut live, &mut next);
            if live.is_empty() {
                return;
            }
        }
        for (n, _) in live.iter() {
            if let Some(v) = &n.value {
                f(v);
            }
        }
    }
}

/// How many live nodes a walk keeps on the stack before it spills to the heap.
const LIVE_INLINE: usize = 32;

/// The trie nodes alive after some words, each with whether it was entered through `#`.
struct Live<'t, T> {
    inline: [Option<(&'t Node<T>, bool)>; LIVE_INLINE],
    len: usize,
    spill: Vec<(&'t Node<T>, bool)>,
    /// Every live node's address once the set has spilled: membership in O(1) (up to
    /// [`LIVE_INLINE`] nodes a scan of the inline array is as cheap).
    seen: std::collections::HashSet<*const Node<T>, PtrHash>,
}

/// Hashes a node's address with one multiplication (SipHash would dominate a large walk).
#[derive(Default, Clone, Copy)]
struct PtrHash;

impl std::hash::BuildHasher for PtrHash {
    type Hasher = PtrHasher;
    fn build_hasher(&self) -> PtrHasher {
        PtrHasher(0)
    }
}

struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        // Fibonacci hashing; the high bits carry the mix, so fold them down.
        let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

impl<'t, T> Live<'t, T> {
    fn new() -> Self {
        Live {
            inline: [None; LIVE_INLINE],
            len: 0,
            spill: Vec::new(),
            seen: std::collections::HashSet::with_hasher(PtrHash),
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
        self.seen.clear();
    }

    fn contains(&self, n: &'t Node<T>) -> bool {
        if self.spill.is_empty() {
            self.inline
                .iter()
                .take(self.len)
                .flatten()
                .any(|(m, _)| std::ptr::eq(*m, n))
        } else {
            self.seen.contains(&std::ptr::from_ref(n))
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.spill.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&'t Node<T>, bool)> + '_ {
        self.inline
            .iter()
            .take(self.len)
            .flatten()
            .copied()
            .chain(self.spill.iter().copied())
    }

    fn push(&mut self, n: &'t Node<T>, by_hash: bool) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some((n, by_hash));
                self.len += 1;
            }
            None => {
                if self.spill.is_empty() {
                    let inline = self.inline.iter().flatten();
                    self.seen
                        .extend(inline.map(|(m, _)| std::ptr::from_ref(*m)));
                }
                self.seen.insert(std::ptr::from_ref(n));
                self.spill.push((n, by_hash));
            }
        }
    }

    /// Make `n` live, and the `#` children below it (a `#` may take no word at all). A node
    /// reached through a word or `*` has one parent edge, so it is entered at most once per
    /// word; a `#` node also stays alive by itself, so it is looked for first (in O(1)).
    fn enter(&mut self, mut n: &'t Node<T>, mut by_hash: bool) {
        loop {
            if by_hash && self.contains(n) {
                return; // already live, with its `#` chain
            }
            self.push(n, by_hash);
            match n.hash.as_deref() {
                Some(h) => {
                    n = h;
                    by_hash = true;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Patterns that normalise alike share a node: each node holds the patterns stored there.
    fn add(t: &mut Trie<Vec<String>>, p: &str) {
        t.entry(p, Vec::new).push(p.to_string());
    }

    fn matched(t: &Trie<Vec<String>>, d: &str) -> Vec<String> {
        let mut v = Vec::new();
        t.for_each_match(d, |s| v.extend(s.iter().cloned()));
        v.sort();
        v
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/topic/a.*.c", "/topic/a.b.c", true),
            ("/topic/a.*.c", "/topic/a.c", false),
            ("/topic/a.*.c", "/topic/a.b.b.c", false),
            ("/topic/a.#", "/topic/a", true),
            ("/topic/a.#", "/topic/a.b.c", true),
            ("/topic/a.#", "/topic/ab", false),
            ("/topic/#", "/topic/x.y", true),
            ("/topic/#.c", "/topic/c", true),
            ("/topic/#.c", "/topic/a.b.c", true),
            ("/topic/#.c", "/topic/a.b", false),
            ("/topic/*", "/topic/a", true),
            ("/topic/*", "/topic/a.b", false),
            ("/topic/a.#.#", "/topic/a.b", true),
            ("/topic/*.#", "/topic/a", true),
            ("/topic/a.*", "/queue/a.b", false),
            ("/topic/chat/room/*", "/topic/chat/room/5", false),
        ];
        for (p, d, want) in cases {
            assert_eq!(matches_naive(p, d), *want, "naive {p} {d}");
            let mut t = Trie::default();
            add(&mut t, p);
            assert_eq!(!matched(&t, d).is_empty(), *want, "trie {p} {d}");
        }
        assert!(is_pattern("/topic/a.*"));
        assert!(!is_pattern("/topic/a.b"));
        assert!(!is_pattern("/queue/*"));
    }

    #[test]
    fn each_pattern_once_and_removal_prunes() {
        let mut t = Trie::default();
        for p in ["/topic/a.#.#", "/topic/#", "/topic/a.*", "/topic/a.b"] {
            add(&mut t, p);
        }
        assert_eq!(
            matched(&t, "/topic/a.b"),
            vec!["/topic/#", "/topic/a.#.#", "/topic/a.*", "/topic/a.b"]
        );
        assert_eq!(
            t.remove("/topic/a.#.#"),
            Some(vec!["/topic/a.#.#".to_string()])
        );
        assert_eq!(t.remove("/topic/a.#.#"), None);
        assert_eq!(t.len(), 3);
        assert_eq!(matched(&t, "/topic/a.b.c"), vec!["/topic/#"]);
    }

    /// Backtracking over the ways the `#`s can split 300 words would take about 10^10 steps
    /// here; the walk takes words x live nodes.
    #[test]
    fn many_hashes_cannot_blow_up_a_publish() {
        let mut t = Trie::default();
        let yes = "/topic/#.a.#.a.#.a.#.a.#.a.#";
        let no = "/topic/#.a.#.a.#.a.#.a.#.a.#.b";
        add(&mut t, yes);
        add(&mut t, no);
        let d = format!("/topic/{}", vec!["a"; 300].join("."));
        assert_eq!(matched(&t, &d), vec![yes]);
    }

    /// Regression (reactor stall): `#.#.#...` (K words) against a K-word destination kept K
    /// `#` nodes alive and looked each one up in the whole live set, ~K^3 steps (89 s at
    /// K=4,000). Consecutive `#` now collapse into one node, and membership is O(1): the same
    /// walk at K=4,000 is K steps. A pattern of K distinct `#` nodes (`#.a.#.a...`) is bounded
    /// by words x live nodes.
    #[test]
    fn many_hashes_in_a_row_are_one_node() {
        let k = 4000;
        let mut t = Trie::default();
        let p = format!("/topic/{}", vec!["#"; k].join("."));
        add(&mut t, &p);
        assert_eq!(pattern_len(&p), 1);
        assert_eq!(t.get_mut("/topic/#").cloned(), Some(vec![p.clone()]));
        let d = format!("/topic/{}", vec!["a"; k].join("."));
        let started = std::time::Instant::now();
        assert_eq!(matched(&t, &d), vec![p.clone()]);
        assert_eq!(t.remove("/topic/#.#"), Some(vec![p.clone()]));
        assert!(t.is_empty());
        // Many live `#` nodes at once: 1,000 of them alive over 2,000 words.
        let p2 = format!("/topic/{}", vec!["#.a"; 1000].join("."));
        add(&mut t, &p2);
        let d2 = format!("/topic/{}", vec!["a"; 2000].join("."));
        assert_eq!(matched(&t, &d2), vec![p2.clone()]);
        // Generous: the old walk took minutes here; this takes milliseconds even unoptimised.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn consecutive_hashes_normalise() {
        assert_eq!(
            pattern_words("/topic/a.#.#.b.#.#.#").collect::<Vec<_>>(),
            vec!["a", "#", "b", "#"]
        );
        assert_eq!(pattern_len("/topic/#.*.#.#"), 3);
        let mut t = Trie::default();
        t.entry("/topic/a.#.#.b", || 1);
        assert_eq!(t.len(), 1);
        *t.entry("/topic/a.#.b", || 2) += 10;
        assert_eq!(t.get_mut("/topic/a.#.#.#.b").copied(), Some(11));
        let mut seen = Vec::new();
        t.for_each_match("/topic/a.x.y.b", |v| seen.push(*v));
        assert_eq!(seen, vec![11]);
    }

    /// Every pattern of four words from {a, *, #} then `x`: up to 3^4 nodes alive at once, past
    /// the walk's 32 on the stack.
    #[test]
    fn more_live_nodes_than_the_stack_holds() {
        let mut t = Trie::default();
        let mut patterns = Vec::new();
        for i in 0..81u32 {
            let w: Vec<&str> = (0..4)
                .map(|j| ["a", "*", "#"][(i / 3u32.pow(j) % 3) as usize])
                .collect();
            let p = format!("/topic/{}.x", w.join("."));
            add(&mut t, &p);
            patterns.push(p);
        }
        for d in [
            "/topic/a.a.a.a.x",
            "/topic/a.a.x",
            "/topic/a.b.a.a.a.x",
            "/topic/x",
        ] {
            let mut want: Vec<String> = patterns
                .iter()
                .filter(|p| matches_naive(p, d))
                .cloned()
                .collect();
            want.sort();
            want.dedup();
            assert!(!want.is_empty(), "{d}");
            assert_eq!(matched(&t, d), want, "{d}");
        }
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
            1 => Just("*".to_string()),
            1 => Just("#".to_string()),
        ]
    }

    proptest! {
        /// The trie agrees with the naive matcher on every pattern for random destinations.
        #[test]
        fn trie_agrees_with_naive(
            patterns in prop::collection::vec(prop::collection::vec(word(), 1..5), 1..8),
            dests in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..6), 1..8),
        ) {
            let patterns: Vec<String> = patterns.iter().map(|w| format!("/topic/{}", w.join("."))).collect();
            let mut t = Trie::default();
            let mut stored = Vec::new();
            for p in &patterns {
                if !stored.contains(p) {
                    add(&mut t, p);
                    stored.push(p.clone());
                }
            }
            for d in &dests {
                let d = format!("/topic/{}", d.join("."));
                let mut want: Vec<String> = patterns.iter().filter(|p| matches_naive(p, &d)).cloned().collect();
                want.sort();
                want.dedup();
                prop_assert_eq!(matched(&t, &d), want, "{}", d);
            }
        }
    }
}
