//! Destination patterns with path variables: `/chat/{room}/history`.

/// One pattern's segments.
#[derive(Debug, Clone)]
pub struct Route<T> {
    pattern: String,
    segments: Vec<Segment>,
    pub value: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(String),
}

/// Path variables of a match: (name, value).
pub type Vars = Vec<(String, String)>;

/// Patterns in registration order; the best match has the most literal segments.
#[derive(Debug, Clone)]
pub struct Routes<T> {
    routes: Vec<Route<T>>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Routes { routes: Vec::new() }
    }
}

impl<T> Routes<T> {
    pub fn add(&mut self, pattern: &str, value: T) {
        let segments = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                    Some(v) => Segment::Var(v.to_string()),
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        self.routes.push(Route {
            pattern: pattern.to_string(),
            segments,
            value,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The best route for `path` (the destination without its prefix) and its variables.
    pub fn find(&self, path: &str) -> Option<(&Route<T>, Vars)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(&Route<T>, usize)> = None;
        for r in &self.routes {
            if r.segments.len() != parts.len() {
                continue;
            }
            let ok = r.segments.iter().zip(&parts).all(|(s, p)| match s {
                Segment::Literal(l) => l == p,
                Segment::Var(_) => !p.is_empty(),
            });
            if !ok {
                continue;
            }
            let literals = r
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            if best.is_none_or(|(_, n)| literals > n) {
                best = Some((r, literals));
            }
        }
        let (r, _) = best?;
        let vars = r
            .segments
            .iter()
            .zip(&parts)
            .filter_map(|(s, p)| match s {
                Segment::Var(v) => Some((v.clone(), p.to_string())),
                Segment::Literal(_) => None,
            })
            .collect();
        Some((r, vars))
    }
}

impl<T> Route<T> {
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let mut r = Routes::default();
        r.add("/chat/{room}", 1);
        r.add("/chat/{room}/history", 2);
        r.add("/chat/lobby", 3);
        r.add("/{a}/{b}", 4);
        type Case<'a> = (&'a str, Option<(i32, &'a [(&'a str, &'a str)])>);
        let cases: &[Case<'_>] = &[
            ("/chat/5", Some((1, &[("room", "5")]))),
            ("/chat/5/history", Some((2, &[("room", "5")]))),
            ("/chat/lobby", Some((3, &[]))),
            ("/x/y", Some((4, &[("a", "x"), ("b", "y")]))),
            ("/chat", None),
            ("/chat/5/history/old", None),
            ("", None),
        ];
        for (path, want) in cases {
            let got = r.find(path).map(|(route, vars)| (route.value, vars));
            let want = want.map(|(v, vars)| {
                (
                    v,
                    vars.iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{path}");
        }
    }
}
