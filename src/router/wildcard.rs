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

    /// The value slot of a pattern, created if missing.
    pub fn entry(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        let mut node = &mut self.root;
        for w in key(pattern).unwrap_or(pattern).split('.') {
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
        for w in key(pattern).unwrap_or(pattern).split('.') {
            node = match w {
                "*" => node.star.as_deref_mut()?,
                "#" => node.hash.as_deref_mut()?,
                w => node.words.get_mut(w)?,
            };
        }
        node.value.as_mut()
    }

    /// Remove a pattern (and prune empty branches).
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
        let words: Vec<&str> = key(pattern).unwrap_or(pattern).split('.').collect();
        let v = go(&mut self.root, &words);
        if v.is_some() {
            self.len -= 1;
        }
        v
    }

    /// Call `f` once for each stored pattern that matches `destination`.
    pub fn for_each_match<'t>(&'t self, destination: &str, mut f: impl FnMut(&'t T)) {
        let Some(k) = key(destination) else {
            return;
        };
        if self.len == 0 {
            return;
        }
        // A pattern can match along several paths (e.g. `a.#.#`); visit each node once.
        let mut hits: Vec<*const Node<T>> = Vec::new();
        let words: Vec<&str> = k.split('.').collect();
        collect(&self.root, &words, &mut hits);
        hits.sort_unstable();
        hits.dedup();
        // Resolve back to references by walking again (no unsafe): match pointers.
        visit(&self.root, &words, &mut |n: &'t Node<T>| {
            let p = n as *const Node<T>;
            if let Ok(i) = hits.binary_search(&p) {
                hits.remove(i);
                if let Some(v) = &n.value {
                    f(v);
                }
            }
        });
    }
}

fn collect<T>(node: &Node<T>, words: &[&str], hits: &mut Vec<*const Node<T>>) {
    visit(node, words, &mut |n: &Node<T>| {
        hits.push(n as *const Node<T>)
    });
}

/// Every node whose pattern matches all of `words`.
fn visit<'t, T>(node: &'t Node<T>, words: &[&str], f: &mut impl FnMut(&'t Node<T>)) {
    if let Some(h) = node.hash.as_deref() {
        // `#` takes zero or more words.
        for k in 0..=words.len() {
            visit(h, words.get(k..).unwrap_or_default(), f);
        }
    }
    let Some((w, rest)) = words.split_first() else {
        if node.value.is_some() {
            f(node);
        }
        return;
    };
    if let Some(c) = node.words.get(*w) {
        visit(c, rest, f);
    }
    if let Some(c) = node.star.as_deref() {
        visit(c, rest, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matched(t: &Trie<String>, d: &str) -> Vec<String> {
        let mut v = Vec::new();
        t.for_each_match(d, |s| v.push(s.clone()));
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
            t.entry(p, || p.to_string());
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
            t.entry(p, || p.to_string());
        }
        assert_eq!(
            matched(&t, "/topic/a.b"),
            vec!["/topic/#", "/topic/a.#.#", "/topic/a.*", "/topic/a.b"]
        );
        assert_eq!(t.remove("/topic/a.#.#").as_deref(), Some("/topic/a.#.#"));
        assert_eq!(t.remove("/topic/a.#.#"), None);
        assert_eq!(t.len(), 3);
        assert_eq!(matched(&t, "/topic/a.b.c"), vec!["/topic/#"]);
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
            for p in &patterns {
                t.entry(p, || p.clone());
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
