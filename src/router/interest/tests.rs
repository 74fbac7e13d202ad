//! Model-based: random subscribes and unsubscribes on a clustered router. The subjects it asks
//! the bridge for are exactly those its subscriptions need, and a message arriving once through
//! every NATS subscription that matches it reaches each matching local subscription once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use crate::router::interest::Change;
use crate::router::subject;
use crate::router::wildcard::{is_pattern, matches_naive};
use crate::router::{Directory, Framing, Published, Router, Sink, Subscriber};
use crate::session::AckMode;
use crate::stomp::Version;

const P: &str = "p";

const DESTS: &[&str] = &[
    "/topic/a.b",
    "/topic/a",
    "/topic/a.*",
    "/topic/a.#",
    "/topic/#",
    "/topic/*.b",
    "/topic/a.#.b",
    "/topic/#.#",
    "/user/u/queue/x",
];

const MESSAGES: &[&str] = &[
    "/topic/a.b",
    "/topic/a",
    "/topic/x.b",
    "/topic/a.c.b",
    "/topic/a.c",
    "/user/u/queue/x",
];

/// Counts deliveries per (connection, subscription id).
#[derive(Default)]
struct Count(HashMap<(usize, String), usize>);

impl Sink for Count {
    fn deliver(&mut self, conn: usize, head: &[&[u8]], _shared: &Arc<[u8]>) {
        let prefix = String::from_utf8_lossy(head.get(1).copied().unwrap_or_default());
        let id = prefix
            .strip_prefix("MESSAGE\nsubscription:")
            .and_then(|r| r.strip_suffix('\n'))
            .unwrap_or_default()
            .to_string();
        *self.0.entry((conn, id)).or_default() += 1;
    }
}

fn needed(active: &HashSet<(usize, usize)>) -> HashSet<String> {
    let mut out = HashSet::new();
    for &(_, d) in active {
        let dest = DESTS[d];
        if is_pattern(dest) {
            out.extend(subject::covers(P, dest).unwrap_or_default());
        } else if let Some(s) = subject::subject(P, dest) {
            out.insert(s);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn interest_follows_the_subscriptions_and_each_gets_a_message_once(
        ops in prop::collection::vec((any::<bool>(), 0..4usize, 0..DESTS.len()), 1..60)
    ) {
        let mut r = Router::new(0, Arc::new(Directory::new())).clustered(P, b"@n-1");
        let mut active: HashSet<(usize, usize)> = HashSet::new();
        let mut held: HashSet<String> = HashSet::new();
        for (sub, conn, d) in ops {
            let id = d.to_string();
            if sub && !active.contains(&(conn, d)) {
                let s = Subscriber::new(conn, &id, AckMode::Auto, Version::V1_2, Framing::Tcp);
                r.subscribe(DESTS[d], s);
                active.insert((conn, d));
            } else if !sub && active.remove(&(conn, d)) {
                r.unsubscribe(DESTS[d], conn, &id);
            }
            for c in r.interest_changes().expect("clustered").drain(..) {
                match c {
                    Change::On(s) => prop_assert!(held.insert(s.to_string()), "asked twice for {}", s),
                    Change::Off(s) => prop_assert!(held.remove(&*s), "dropped {} it did not hold", s),
                    other => prop_assert!(false, "not asked for: {:?}", other),
                }
            }
            prop_assert_eq!(&held, &needed(&active));
            prop_assert_eq!(r.interest_len(), held.len());
        }
        for m in MESSAGES {
            let msg = Published::raw(m, b"x");
            let literal = subject::subject(P, m).expect("short");
            let mut count = Count::default();
            // NATS hands the node one copy per matching subscription of the node.
            for via in held.iter().filter(|f| subject::nats_matches(f, &literal)) {
                r.deliver_cluster(&msg, via, &mut count);
            }
            for &(conn, d) in &active {
                let dest = DESTS[d];
                let want = usize::from(if is_pattern(dest) { matches_naive(dest, m) } else { dest == *m });
                let got = count.0.remove(&(conn, d.to_string())).unwrap_or(0);
                prop_assert_eq!(got, want, "{} to {} on conn {}", m, dest, conn);
            }
            prop_assert!(count.0.is_empty(), "delivered to no subscription: {:?}", count.0);
        }
    }
}
