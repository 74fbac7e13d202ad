//! Options from the environment (`STOMPBOX_REACTORS=4`, `STOMPBOX_LISTEN_WEBSOCKET=...`: the
//! file's key in capitals, `.` as `_`), and every problem of a file found at once. Both work on
//! the settings as a TOML table, one option at a time, so each problem names its option (or
//! its variable).

use super::*;

/// Variables naming options start with this.
pub const ENV_PREFIX: &str = "STOMPBOX_";

/// The path of every value in `t` (tables walked with a stack, not recursion).
fn leaf_paths(t: &toml::Table) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<String>, &toml::Table)> = vec![(Vec::new(), t)];
    while let Some((prefix, table)) = stack.pop() {
        for (k, v) in table {
            let mut path = prefix.clone();
            path.push(k.clone());
            match v {
                toml::Value::Table(inner) => stack.push((path, inner)),
                _ => out.push(path),
            }
        }
    }
    out.sort();
    out
}

fn get_path<'t>(t: &'t toml::Table, path: &[String]) -> Option<&'t toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = t;
    for p in parents {
        table = table.get(p)?.as_table()?;
    }
    table.get(last)
}

/// Set `path` in `t`, making the tables on the way.
fn set_path(t: &mut toml::Table, path: &[String], v: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = t;
    for p in parents {
        let entry = table
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        table = inner;
    }
    table.insert(last.clone(), v);
}

/// `listen.websocket` -> `LISTEN_WEBSOCKET`.
fn env_name(path: &[String]) -> String {
    path.join("_").to_ascii_uppercase()
}

/// The option's value from a variable's text, typed like the option's current value.
fn typed(current: &toml::Value, text: &str) -> Result<toml::Value, String> {
    let t = text.trim();
    Ok(match current {
        toml::Value::String(_) => toml::Value::String(text.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            t.parse()
                .map_err(|_| format!("`{text}` is not a whole number"))?,
        ),
        toml::Value::Float(_) => {
            toml::Value::Float(t.parse().map_err(|_| format!("`{text}` is not a number"))?)
        }
        toml::Value::Boolean(_) => toml::Value::Boolean(match t {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(format!("`{text}` is not true or false")),
        }),
        toml::Value::Array(_) => toml::Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        other => return Err(format!("cannot be set from the environment ({other:?})")),
    })
}

fn from_table(t: toml::Table) -> Result<Settings, (String, String)> {
    let text = toml::to_string(&t).map_err(|e| (String::new(), e.to_string()))?;
    let de = toml::Deserializer::parse(&text).map_err(|e| (String::new(), e.to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner().message().trim_end().to_string())
    })
}

fn table_of(s: &Settings) -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(s).map_err(|e| ConfigError::one("settings", e.to_string()))
}

impl Settings {
    /// Apply the `STOMPBOX_*` variables among `vars` over these settings: every problem at
    /// once, each naming its variable. Returns the variables that name no option (the caller
    /// reports them; they may belong to something else, so they are not an error).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<String>, ConfigError> {
        let base = table_of(self)?;
        let paths = leaf_paths(&base);
        let mut all = base.clone();
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        for (name, text) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some(path) = paths.iter().find(|p| env_name(p) == rest) else {
                unknown.push(name);
                continue;
            };
            let Some(current) = get_path(&base, path) else {
                continue;
            };
            let value = match typed(current, &text) {
                Ok(v) => v,
                Err(message) => {
                    problems.push(Problem {
                        option: name,
                        message,
                    });
                    continue;
                }
            };
            // Checked alone, so that each problem names its variable.
            let mut one = base.clone();
            set_path(&mut one, path, value.clone());
            if let Err((_, message)) = from_table(one) {
                problems.push(Problem {
                    option: name,
                    message,
                });
                continue;
            }
            set_path(&mut all, path, value);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        *self = from_table(all).map_err(|(option, message)| ConfigError::one(option, message))?;
        Ok(unknown)
    }
}

/// Every problem of a file whose reading failed with `first`: each of its values is tried
/// alone over the defaults, so a file with three wrong values is told about all three.
pub(super) fn every_problem(text: &str, first: ConfigError) -> ConfigError {
    let Ok(file) = text.parse::<toml::Table>() else {
        return first;
    };
    let Ok(base) = table_of(&Settings::default()) else {
        return first;
    };
    let mut problems: Vec<Problem> = Vec::new();
    for path in leaf_paths(&file) {
        let Some(v) = get_path(&file, &path) else {
            continue;
        };
        let mut one = base.clone();
        set_path(&mut one, &path, v.clone());
        if let Err((option, message)) = from_table(one) {
            let option = if option.is_empty() || option == "." {
                path.join(".")
            } else {
                option
            };
            let line = line_of(text, &path).map_or(String::new(), |l| format!(" (line {l})"));
            if !problems.iter().any(|p| p.option == option) {
                problems.push(Problem {
                    option,
                    message: format!("{message}{line}"),
                });
            }
        }
    }
    if problems.len() > 1 {
        ConfigError { problems }
    } else {
        first
    }
}

/// The line where `path`'s key is set: after its table's header, the first `key =`.
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let (key, parents) = path.split_last()?;
    let header = format!("[{}]", parents.join("."));
    let mut in_table = parents.is_empty();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_table = l.split('#').next().map(str::trim) == Some(header.as_str());
            continue;
        }
        let set = l
            .split_once('=')
            .is_some_and(|(k, _)| k.trim().trim_matches('"') == key);
        if in_table && set {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn every_option_has_one_variable() {
        let base = table_of(&Settings::default()).unwrap();
        let names: Vec<String> = leaf_paths(&base).iter().map(|p| env_name(p)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "two options share a variable name"
        );
        assert!(names.contains(&"LISTEN_WEBSOCKET".to_string()));
        assert!(names.contains(&"WEBSOCKET_COMPRESSION_LEVEL".to_string()));
    }

    #[test]
    fn variables_set_options_of_every_type() {
        let mut s = Settings::default();
        let unknown = s
            .apply_env(vars(&[
                ("STOMPBOX_REACTORS", "4"),
                ("STOMPBOX_LISTEN_WEBSOCKET", "0.0.0.0:8080"),
                ("STOMPBOX_LISTEN_TCP", "off"),
                ("STOMPBOX_WEBSOCKET_COMPRESSION_ENABLED", "true"),
                ("STOMPBOX_WEBSOCKET_SUBPROTOCOLS", "v12.stomp, v11.stomp"),
                ("STOMPBOX_HEARTBEAT_SEND", "3s"),
                ("STOMPBOX_NOT_AN_OPTION", "1"),
                ("PATH", "/bin"),
            ]))
            .unwrap();
        assert_eq!(unknown, ["STOMPBOX_NOT_AN_OPTION"]);
        assert_eq!(s.reactors, 4);
        assert_eq!(s.listen.websocket.to_string(), "0.0.0.0:8080");
        assert_eq!(s.listen.tcp, Listener::Off);
        assert!(s.websocket.compression.enabled);
        assert_eq!(s.websocket.subprotocols, ["v12.stomp", "v11.stomp"]);
        assert_eq!(s.heartbeat.send.millis(), 3000);
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let mut s = Settings::default();
        let e = s
            .apply_env(vars(&[
                ("STOMPBOX_REACTORS", "many"),
                ("STOMPBOX_HEARTBEAT_SEND", "10 parsecs"),
                ("STOMPBOX_ECHO", "maybe"),
            ]))
            .unwrap_err();
        let names: Vec<&str> = e.problems.iter().map(|p| p.option.as_str()).collect();
        assert_eq!(
            names,
            [
                "STOMPBOX_REACTORS",
                "STOMPBOX_HEARTBEAT_SEND",
                "STOMPBOX_ECHO"
            ]
        );
    }

    #[test]
    fn every_bad_value_of_a_file_is_reported_at_once() {
        let text = "reactors = \"x\"\n[heartbeat]\nsend = \"forever\"\n[buffers]\nnope = 1\n";
        let e = Settings::from_toml(text, "f.toml").unwrap_err();
        let got: Vec<(&str, &str)> = e
            .problems
            .iter()
            .map(|p| (p.option.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got
            .iter()
            .any(|(o, m)| *o == "reactors" && m.ends_with("(line 1)")));
        assert!(got
            .iter()
            .any(|(o, m)| *o == "heartbeat.send" && m.ends_with("(line 3)")));
        assert!(got.iter().any(|(o, _)| o.starts_with("buffers")));
    }
}
