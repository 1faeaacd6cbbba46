//! The variables a stack file is interpolated with, and compose env-file syntax
//! (used by both the `.env` beside the stack and `env_file` entries).

use std::collections::BTreeMap;

use super::interpolate::{InterpError, interpolate};

/// The environment a stack is read in. Compose semantics: the process environment takes
/// precedence over the `.env` file beside the stack file (which `load` reads and layers beneath).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The current process environment (non-UTF-8 entries are skipped: they cannot be interpolated
    /// into a UTF-8 stack file anyway).
    pub fn from_process() -> Self {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An explicit environment (tests, or callers that want a clean slate).
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// An error in an env file: 1-based line and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// Parse compose env-file syntax: `KEY=VALUE` lines, optional `export ` prefix, `#` comments,
/// unquoted values (trimmed, ` #` starts a comment), `'single'` (literal), `"double"` (escapes
/// `\n \t \r \\ \" \$`, interpolated). Unquoted and double-quoted values are interpolated with
/// `outer` first (the process environment wins, as in compose), then earlier entries of the file. A bare `KEY` takes its value from `outer`
/// (and is left out when `outer` has none).
pub fn parse_env_file(
    text: &str,
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let err = |message: String| EnvFileError {
            line: line_no,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim_start())),
            None => (line, None),
        };
        if !valid_key(key) {
            return Err(err(format!("invalid variable name \"{key}\"")));
        }
        let Some(value) = value else {
            if let Some(v) = outer(key) {
                out.push((key.to_string(), v));
            }
            continue;
        };
        let lookup = |name: &str| {
            outer(name).or_else(|| {
                out.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        let interp = |s: &str| {
            interpolate(s, &lookup, &mut Vec::new()).map_err(|e| match e {
                InterpError::Missing { var, message } => {
                    err(format!("required variable {var}: {message}"))
                }
                InterpError::Syntax(m) => err(format!("invalid interpolation: {m}")),
            })
        };
        let resolved = if let Some(body) = value.strip_prefix('\'') {
            let end = body
                .find('\'')
                .ok_or_else(|| err("unterminated single quote".into()))?;
            trailing_ok(&body[end + 1..]).map_err(err)?;
            body[..end].to_string()
        } else if let Some(body) = value.strip_prefix('"') {
            let (unescaped, rest) = double_quoted(body).map_err(err)?;
            trailing_ok(rest).map_err(err)?;
            interp(&unescaped)?
        } else {
            let v = match value.find(" #").or_else(|| value.find("\t#")) {
                Some(i) => &value[..i],
                None => value,
            };
            interp(v.trim_end())?
        };
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), resolved));
    }
    Ok(out)
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == '.' || c == '-' || c.is_ascii_alphanumeric())
}

/// After a closing quote only whitespace or a comment may follow.
fn trailing_ok(rest: &str) -> Result<(), String> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected text after closing quote: \"{rest}\""))
    }
}

/// Unescape a double-quoted value; returns the value and what follows the closing quote.
/// `\$` stays as `$$` so that interpolation turns it into a literal `$`.
fn double_quoted(body: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '$')) => out.push_str("$$"),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated double quote".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
        parse_env_file(text, &|k| (k == "OUTER").then(|| "from-outer".to_string()))
    }

    #[test]
    fn env_file_syntax() {
        let text = "# comment\n\nA=1\nexport B = two words # note\nC='lit $A # x'\nD=\"q\\n$A\"\nE=${OUTER}-$A\nOUTER\nMISSING\nF=\n";
        let got = parse(text).unwrap();
        let get = |k: &str| got.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("two words"));
        assert_eq!(get("C"), Some("lit $A # x"));
        assert_eq!(get("D"), Some("q\n1"));
        assert_eq!(get("E"), Some("from-outer-1"));
        assert_eq!(get("OUTER"), Some("from-outer"));
        assert_eq!(get("MISSING"), None);
        assert_eq!(get("F"), Some(""));
    }

    #[test]
    fn later_entries_override_earlier() {
        let got = parse("A=1\nA=2\n").unwrap();
        assert_eq!(got, vec![("A".to_string(), "2".to_string())]);
    }

    #[test]
    fn errors_have_lines() {
        assert_eq!(parse("A=1\n1BAD=x\n").unwrap_err().line, 2);
        assert_eq!(parse("A='open\n").unwrap_err().line, 1);
        assert_eq!(parse("\nA=\"open\n").unwrap_err().line, 2);
        assert!(
            parse("A=${NOPE:?needed}\n")
                .unwrap_err()
                .message
                .contains("NOPE")
        );
    }

    #[test]
    fn environment_lookup() {
        let env = Environment::from_map([("X", "1")]);
        assert_eq!(env.get("X"), Some("1"));
        assert_eq!(env.get("Y"), None);
        // The process environment always has PATH on the machines DIVE runs on.
        assert!(Environment::from_process().get("PATH").is_some());
    }
}
