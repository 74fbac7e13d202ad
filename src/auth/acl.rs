//! Per-user read/write rules on destination patterns.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// SUBSCRIBE.
    Read,
    /// SEND.
    Write,
}

#[derive(Debug, Clone)]
struct Rule {
    /// A login, `anonymous`, or `*` (everyone).
    who: String,
    read: bool,
    write: bool,
    pattern: String,
}

/// A set of rules. What no rule allows is denied.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

fn words(d: &str) -> Vec<&str> {
    let key = d.strip_prefix("/topic/").unwrap_or(d);
    key.split('.').collect()
}

/// Does `rule` (a pattern) match every destination that `sub` (a destination or pattern)
/// matches? `*` is one word, `#` zero or more, as in subscriptions; a `#` in `sub` is only
/// covered by a `#` in `rule`. Outside `/topic/` the destinations must be equal unless the rule
/// ends in `/#`-style `.#`.
pub fn covers(rule: &str, sub: &str) -> bool {
    fn go(r: &[&str], s: &[&str]) -> bool {
        match (r.split_first(), s.split_first()) {
            (None, None) => true,
            (Some((&"#", rrest)), _) => {
                go(rrest, s) || s.split_first().is_some_and(|(_, srest)| go(r, srest))
            }
            (None, Some(_)) | (Some(_), None) => false,
            (Some((_, _)), Some((&"#", _))) => false,
            (Some((&"*", rrest)), Some((_, srest))) => go(rrest, srest),
            (Some((_, _)), Some((&"*", _))) => false,
            (Some((rw, rrest)), Some((sw, srest))) => rw == sw && go(rrest, srest),
        }
    }
    let topic_rule = rule.starts_with("/topic/");
    let topic_sub = sub.starts_with("/topic/");
    if topic_rule != topic_sub {
        return false;
    }
    if !topic_rule {
        // Queues, /app, /user: exact, or a `prefix/#` rule covering everything below it.
        return match rule.strip_suffix("/#") {
            Some(prefix) => sub
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')),
            None => rule == sub,
        };
    }
    go(&words(rule), &words(sub))
}

impl Acl {
    /// Parse rules; every error names its line.
    pub fn parse(text: &str) -> Result<Acl, String> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            // Only whole-line comments: `#` inside a pattern is a wildcard.
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(who), Some(perm), Some(pattern), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "line {}: expected '<user> <read|write|readwrite> <pattern>'",
                    i + 1
                ));
            };
            let (read, write) = match perm {
                "read" => (true, false),
                "write" => (false, true),
                "readwrite" => (true, true),
                other => {
                    return Err(format!(
                        "line {}: permission must be read, write or readwrite, not '{other}'",
                        i + 1
                    ))
                }
            };
            if !pattern.starts_with('/') {
                return Err(format!("line {}: pattern must start with '/'", i + 1));
            }
            rules.push(Rule {
                who: who.to_string(),
                read,
                write,
                pattern: pattern.to_string(),
            });
        }
        Ok(Acl { rules })
    }

    /// May `user` (`None`: anonymous) SEND to (`Write`) or SUBSCRIBE to (`Read`)
    /// `destination`? For a wildcard subscription, a rule must cover every destination the
    /// pattern can match.
    pub fn allows(&self, user: Option<&str>, perm: Perm, destination: &str) -> bool {
        let who = user.unwrap_or("anonymous");
        self.rules.iter().any(|r| {
            (r.who == "*" || r.who == who)
                && match perm {
                    Perm::Read => r.read,
                    Perm::Write => r.write,
                }
                && covers(&r.pattern, destination)
        })
    }
}

/// The current rules, replaceable at run time (SIGHUP) without dropping connections. Sessions
/// keep their own `Arc` and re-read only when the generation moved: no lock per message.
#[derive(Debug, Default)]
pub struct AclHandle {
    current: RwLock<Arc<Acl>>,
    generation: AtomicU64,
}

impl AclHandle {
    pub fn new(acl: Acl) -> Self {
        AclHandle {
            current: RwLock::new(Arc::new(acl)),
            generation: AtomicU64::new(1),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::new(
            Acl::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        ))
    }

    /// Replace the rules; sessions see them from their next frame.
    pub fn reload(&self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.set(Acl::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        Ok(())
    }

    pub fn set(&self, acl: Acl) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(acl);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn current(&self) -> Arc<Acl> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/topic/#", "/topic/a.b", true),
            ("/topic/#", "/topic/#", true),
            ("/topic/a.#", "/topic/a", true),
            ("/topic/a.#", "/topic/a.*.c", true),
            ("/topic/a.#", "/topic/#", false),
            ("/topic/a.*", "/topic/a.b", true),
            ("/topic/a.*", "/topic/a.*", true),
            ("/topic/a.*", "/topic/a.#", false),
            ("/topic/a.*", "/topic/a.b.c", false),
            ("/topic/a.b", "/topic/a.*", false),
            ("/topic/*.b", "/topic/x.b", true),
            ("/topic/public.#", "/topic/private.x", false),
            ("/queue/jobs", "/queue/jobs", true),
            ("/queue/jobs", "/queue/jobs2", false),
            ("/queue/#", "/queue/anything/here", true),
            ("/app/#", "/app/chat/5", true),
            ("/queue/#", "/topic/a", false),
        ];
        for (rule, sub, want) in cases {
            assert_eq!(covers(rule, sub), *want, "{rule} covers {sub}");
        }
    }

    #[test]
    fn rules_by_user_and_permission() {
        let acl = Acl::parse(
            "# rules\n*          read       /topic/public.#\nalice      readwrite  /topic/chat.#\nanonymous  write      /app/chat/lobby\n",
        )
        .unwrap();
        assert!(acl.allows(None, Perm::Read, "/topic/public.news"));
        assert!(!acl.allows(None, Perm::Write, "/topic/public.news"));
        assert!(acl.allows(None, Perm::Write, "/app/chat/lobby"));
        assert!(acl.allows(Some("alice"), Perm::Write, "/topic/chat.room1"));
        assert!(acl.allows(Some("alice"), Perm::Read, "/topic/chat.*"));
        assert!(!acl.allows(Some("bob"), Perm::Read, "/topic/chat.room1"));
        assert!(
            !acl.allows(Some("alice"), Perm::Read, "/topic/#"),
            "too wide"
        );
        assert!(Acl::parse("alice fly /topic/x")
            .unwrap_err()
            .contains("line 1"));
        assert!(Acl::parse("alice read").is_err());
    }

    #[test]
    fn reload_bumps_the_generation() {
        let h = AclHandle::new(Acl::parse("* read /topic/a").unwrap());
        let g = h.generation();
        h.set(Acl::parse("* read /topic/b").unwrap());
        assert!(h.generation() > g);
        assert!(h.current().allows(None, Perm::Read, "/topic/b"));
    }
}
