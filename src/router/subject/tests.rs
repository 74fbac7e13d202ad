use super::*;
use crate::router::wildcard::{is_pattern, matches_naive};
use proptest::prelude::*;

const P: &str = "sbx";

#[test]
fn documented_examples() {
    assert_eq!(
        subject(P, "/topic/chat.room-5").as_deref(),
        Some("sbx.t.chat.room-5")
    );
    assert_eq!(
        subject(P, "/topic/a b.%x").as_deref(),
        Some("sbx.t.a%20b.%25x")
    );
    assert_eq!(subject(P, "/topic/a..b").as_deref(), Some("sbx.t.a.%.b"));
    assert_eq!(
        subject(P, "/user/bob/queue/x").as_deref(),
        Some("sbx.d./user/bob/queue/x")
    );
    assert_eq!(subject(P, "/topic/>").as_deref(), Some("sbx.t.%3E"));
    assert_eq!(
        subject(P, "/queue/jobs.eu").as_deref(),
        Some("sbx.q./queue/jobs.eu")
    );
    assert_eq!(
        covers(P, "/topic/a.*.c"),
        Some(vec!["sbx.t.a.*.c".to_string()])
    );
    assert_eq!(
        covers(P, "/topic/a.#"),
        Some(vec!["sbx.t.a.>".to_string(), "sbx.t.a".to_string()])
    );
    assert_eq!(
        covers(P, "/topic/a.#.#.c"),
        Some(vec!["sbx.t.a.>".to_string()])
    );
    assert_eq!(covers(P, "/topic/#"), Some(vec!["sbx.t.>".to_string()]));
    assert_eq!(covers(P, "/topic/#.x"), Some(vec!["sbx.t.>".to_string()]));
}

#[test]
fn the_inverse_refuses_what_the_mapping_cannot_make() {
    for bad in [
        "other.t.a",
        "sbx.t",
        "sbx.q.a",
        "sbx.t.a..b",
        "sbx.t.%2",
        "sbx.t.%41",
        "sbx.t.%zz",
        "sbx.t.a b",
        "sbx.d./topic/a",
        "sbx.t.*",
    ] {
        assert_eq!(destination(P, bad), None, "{bad}");
    }
}

#[test]
fn long_destinations_have_no_subject() {
    let long = format!("/topic/{}", "x".repeat(MAX_SUBJECT));
    assert_eq!(subject(P, &long), None);
    assert_eq!(covers(P, &format!("{long}.#")), None);
    let escaped = format!("/topic/{}", " ".repeat(MAX_SUBJECT / 3));
    assert_eq!(subject(P, &escaped), None);
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,2}",
        1 => Just(String::new()),
        1 => "[ .%*>#/\\-_:é\t\u{0}]{1,3}",
        1 => Just("*".to_string()),
        1 => Just("#".to_string()),
    ]
}

fn dest() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("/topic/"),
            Just("/user/u/queue/"),
            Just("/x/"),
            Just("/queue/")
        ],
        prop::collection::vec(word(), 1..5),
    )
        .prop_map(|(p, w)| format!("{p}{}", w.join(".")))
}

fn topic_word() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[ab]", 1 => Just(String::new()), 1 => Just("a b".to_string())]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(topic_word(), 1..5).prop_map(|w| format!("/topic/{}", w.join(".")))
}

fn pattern() -> impl Strategy<Value = String> {
    let w = prop_oneof![3 => topic_word(), 1 => Just("*".to_string()), 2 => Just("#".to_string())];
    prop::collection::vec(w, 1..5).prop_map(|w| format!("/topic/{}", w.join(".")))
}

fn valid_literal(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty() && t != "*" && t != ">" && !t.bytes().any(|b| b.is_ascii_whitespace())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_mapping_is_injective_and_inverted(a in dest(), b in dest()) {
        let (sa, sb) = (subject(P, &a), subject(P, &b));
        let (Some(sa), Some(sb)) = (sa, sb) else { return Ok(()) };
        prop_assert!(valid_literal(&sa), "{sa}");
        prop_assert_eq!(subject_len(P, &a), sa.len());
        let back = destination(P, &sa);
        prop_assert_eq!(back.as_deref(), Some(a.as_str()));
        prop_assert_eq!(a == b, sa == sb, "{} {} -> {} {}", a, b, sa, sb);
    }

    #[test]
    fn a_patterns_covers_take_each_match_exactly_once(p in pattern(), d in topic()) {
        prop_assume!(is_pattern(&p) && !is_pattern(&d));
        let (Some(cs), Some(sd)) = (covers(P, &p), subject(P, &d)) else { return Ok(()) };
        for c in &cs {
            // Valid NATS filters: no empty token, `>` only last.
            prop_assert!(c.split('.').all(|t| !t.is_empty()), "{c}");
            prop_assert!(!c.contains(">.") , "{c}");
        }
        let hits = cs.iter().filter(|c| nats_matches(c, &sd)).count();
        if matches_naive(&p, &d) {
            prop_assert_eq!(hits, 1, "{} {} {:?} {}", p, d, cs, sd);
        } else {
            prop_assert!(hits <= 1, "{} {} {:?} {}", p, d, cs, sd);
        }
    }
}
