//! Topic wildcard subscriptions on every reactor get exactly the matching messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/queues.rs"]
mod queues;

use queues::*;

// ---------------------------------------------------------------------------------------------
// 5. Wildcards.

const KEYS: [&str; 11] = [
    "a.b.c", "a.c", "a.b.b.c", "a", "ab", "x.y", "a.b", "b.a.c", "a.x.c", "q.b.r", "a.b.c.d",
];

/// The keys of [`KEYS`] each pattern matches (RabbitMQ topic semantics), written out by hand.
fn expected(pattern: &str) -> Vec<&'static str> {
    match pattern {
        "/topic/a.*.c" => vec!["a.b.c", "a.x.c"],
        "/topic/a.#" => vec!["a.b.c", "a.c", "a.b.b.c", "a", "a.b", "a.x.c", "a.b.c.d"],
        "/topic/#" => KEYS.to_vec(),
        "/topic/*.b.*" => vec!["a.b.c", "q.b.r"],
        "/topic/#.c" => vec!["a.b.c", "a.c", "a.b.b.c", "b.a.c", "a.x.c"],
        "/topic/a.b.c" => vec!["a.b.c"],
        other => panic!("no expectation for {other}"),
    }
}

/// Outside `/topic/`, so no pattern (not even `#`) matches it.
const SENTINEL: &str = "/sentinel/wildcards";

/// Read until `pubs` sentinels arrived (one per publisher, on subscription "s"); returns
/// (subscription, body) of everything else, sorted.
fn collect_until_sentinels(c: &mut Client, pubs: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut sentinels = 0;
    while sentinels < pubs {
        let f = c.msg();
        assert_eq!(f.count("subscription"), 1, "{f:?}");
        if f.h("subscription") == "s" {
            sentinels += 1;
        } else {
            got.push((f.h("subscription").to_string(), f.text().to_string()));
        }
    }
    got.sort();
    got
}

/// (name, value) pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[test]
fn wildcard_subscribers_on_every_reactor_get_exactly_the_matching_messages() {
    let srv = server(3, |_| {});
    // (kind, reactor, [(pattern, subscription id)])
    let layout: [(Kind, usize, Headers); 5] = [
        (Kind::Tcp, 0, &[("/topic/a.*.c", "w1")]),
        (Kind::Ws, 1, &[("/topic/a.#", "w2")]),
        (Kind::Tcp, 2, &[("/topic/#", "w3"), ("/topic/#.c", "w4")]),
        // One connection, three subscriptions a.b.c matches: one MESSAGE per subscription.
        (
            Kind::Ws,
            0,
            &[
                ("/topic/a.*.c", "x"),
                ("/topic/a.#", "y"),
                ("/topic/a.b.c", "z"),
            ],
        ),
        (
            Kind::Tcp,
            1,
            &[("/topic/*.b.*", "v"), ("/topic/a.*.c", "v3")],
        ),
    ];
    let mut subs: Vec<(Client, Vec<(&str, &str)>)> = layout
        .iter()
        .map(|(kind, r, pats)| {
            let mut c = srv.client_on(*kind, *r);
            for (p, id) in *pats {
                c.subscribe(p, id, &[]);
            }
            c.subscribe(SENTINEL, "s", &[]);
            (c, pats.to_vec())
        })
        .collect();
    let mut pubs: Vec<Client> = (0..3)
        .map(|r| srv.client_on(if r == 1 { Kind::Ws } else { Kind::Tcp }, r))
        .collect();
    let publish_round = |pubs: &mut [Client], keys: &[&str]| {
        for (i, p) in pubs.iter_mut().enumerate() {
            for k in keys {
                let dest = format!("/topic/{k}");
                p.send_frame(
                    "SEND",
                    &[("destination", &dest)],
                    format!("{i}:{k}").as_bytes(),
                );
            }
            p.send_frame("SEND", &[("destination", SENTINEL)], b"end");
        }
    };
    let expect_for = |pats: &[(&str, &str)], keys: &[&str], live: &dyn Fn(&str) -> bool| {
        let mut want = Vec::new();
        for (p, id) in pats {
            if !live(id) {
                continue;
            }
            for k in expected(p) {
                if keys.contains(&k) {
                    for i in 0..3 {
                        want.push((id.to_string(), format!("{i}:{k}")));
                    }
                }
            }
        }
        want.sort();
        want
    };

    publish_round(&mut pubs, &KEYS);
    for (c, pats) in &mut subs {
        let got = collect_until_sentinels(c, 3);
        assert_eq!(
            got,
            expect_for(pats, &KEYS, &|_| true),
            "reactor {} {pats:?}",
            c.reactor()
        );
    }

    // Unsubscribe every a.# (on two reactors) and the a.*.c ones on reactor 0 (reactor 1
    // keeps one), add a new *.b.* on reactor 2: after the receipts the next round follows the
    // new subscriptions exactly.
    subs[1].0.unsubscribe("w2");
    subs[3].0.unsubscribe("y");
    subs[0].0.unsubscribe("w1");
    subs[3].0.unsubscribe("x");
    subs[2].0.subscribe("/topic/*.b.*", "v2", &[]);
    subs[2].1.push(("/topic/*.b.*", "v2"));
    let round2 = ["a.b.c", "a", "q.b.r", "a.b.c.d", "a.x.c"];
    publish_round(&mut pubs, &round2);
    let gone = |id: &str| !["w2", "y", "w1", "x"].contains(&id);
    for (c, pats) in &mut subs {
        let got = collect_until_sentinels(c, 3);
        assert_eq!(
            got,
            expect_for(pats, &round2, &gone),
            "round 2, reactor {} {pats:?}",
            c.reactor()
        );
    }
    drop((subs, pubs));
    srv.stop();
}
