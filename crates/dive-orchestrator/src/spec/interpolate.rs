//! Compose variable interpolation: `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`,
//! `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`, and `$$` for a literal `$`. Defaults and alternatives may
//! themselves contain interpolations (`${A:-${B}}`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${VAR:?msg}` / `${VAR?msg}` on an unset (or empty) variable.
    Missing { var: String, message: String },
    /// Malformed syntax.
    Syntax(String),
}

/// Interpolate `text`. `lookup` returns a variable's value; names of unset variables that were
/// replaced by an empty string are appended to `unset` so the caller can warn about them.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = matching_brace(r).ok_or_else(|| {
                InterpError::Syntax(format!("unterminated \"${{\" in \"{text}\""))
            })?;
            out.push_str(&braced(&r[..end], lookup, unset)?);
            rest = &r[end + 1..];
        } else {
            let n = name_len(after);
            if n == 0 {
                return Err(InterpError::Syntax(format!(
                    "\"$\" must be followed by a variable name, \"{{\" or \"$\" (write \"$$\" for a literal \"$\") in \"{text}\""
                )));
            }
            let name = &after[..n];
            out.push_str(&value_or_unset(name, lookup, unset));
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn name_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

/// Index of the `}` closing a `${` whose body starts at `s`, honouring nested `${...}`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn value_or_unset(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> String {
    match lookup(name) {
        Some(v) => v,
        None => {
            if !unset.iter().any(|u| u == name) {
                unset.push(name.to_string());
            }
            String::new()
        }
    }
}

fn braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpError> {
    let n = name_len(body);
    if n == 0 {
        return Err(InterpError::Syntax(format!(
            "invalid variable name in \"${{{body}}}\""
        )));
    }
    let name = &body[..n];
    let op = &body[n..];
    if op.is_empty() {
        return Ok(value_or_unset(name, lookup, unset));
    }
    let value = lookup(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let mut chars = op.chars();
    let Some(sym) = chars.next() else {
        return Err(InterpError::Syntax(format!(
            "missing operator after ':' in \"${{{body}}}\""
        )));
    };
    let arg = chars.as_str();
    // With ':', an empty value counts as unset.
    let present = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match sym {
        '-' => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                interpolate(arg, lookup, unset)
            }
        }
        '+' => {
            if present {
                interpolate(arg, lookup, unset)
            } else {
                Ok(String::new())
            }
        }
        '?' => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                let message = interpolate(arg, lookup, unset)?;
                Err(InterpError::Missing {
                    var: name.to_string(),
                    message,
                })
            }
        }
        _ => Err(InterpError::Syntax(format!(
            "unknown operator \"{sym}\" in \"${{{body}}}\" (expected :-, -, :?, ?, :+ or +)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, InterpError> {
        let lookup = |k: &str| match k {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".to_string()),
            _ => None,
        };
        interpolate(text, &lookup, &mut Vec::new())
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(run("a $SET b").unwrap(), "a value b");
        assert_eq!(run("${SET}x").unwrap(), "valuex");
        assert_eq!(run("$SET-x").unwrap(), "value-x");
        assert_eq!(run("host:$PORT/p").unwrap(), "host:8080/p");
    }

    #[test]
    fn defaults() {
        assert_eq!(run("${UNSET:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${UNSET-d}").unwrap(), "d");
        assert_eq!(run("${SET:-d}").unwrap(), "value");
        assert_eq!(run("${UNSET:-${SET}}").unwrap(), "value");
        assert_eq!(run("${UNSET:-a b c}").unwrap(), "a b c");
    }

    #[test]
    fn alternatives() {
        assert_eq!(run("${SET:+alt}").unwrap(), "alt");
        assert_eq!(run("${EMPTY:+alt}").unwrap(), "");
        assert_eq!(run("${EMPTY+alt}").unwrap(), "alt");
        assert_eq!(run("${UNSET+alt}").unwrap(), "");
    }

    #[test]
    fn required() {
        assert_eq!(run("${SET:?boom}").unwrap(), "value");
        assert_eq!(
            run("${UNSET:?set it please}").unwrap_err(),
            InterpError::Missing {
                var: "UNSET".into(),
                message: "set it please".into()
            }
        );
        assert!(matches!(
            run("${EMPTY:?x}"),
            Err(InterpError::Missing { .. })
        ));
        assert_eq!(run("${EMPTY?x}").unwrap(), "");
        assert!(matches!(
            run("${UNSET?x}"),
            Err(InterpError::Missing { .. })
        ));
    }

    #[test]
    fn escapes_and_errors() {
        assert_eq!(run("cost $$5 and $${SET}").unwrap(), "cost $5 and ${SET}");
        assert!(matches!(run("${SET"), Err(InterpError::Syntax(_))));
        assert!(matches!(run("a $ b"), Err(InterpError::Syntax(_))));
        assert!(matches!(run("${1X}"), Err(InterpError::Syntax(_))));
        assert!(matches!(run("${SET:}"), Err(InterpError::Syntax(_))));
        assert!(matches!(run("${SET/x}"), Err(InterpError::Syntax(_))));
    }

    #[test]
    fn unset_is_empty_and_reported() {
        let mut unset = Vec::new();
        let out = interpolate("[$NOPE][${NOPE}]", &|_| None, &mut unset).unwrap();
        assert_eq!(out, "[][]");
        assert_eq!(unset, vec!["NOPE".to_string()]);
    }
}
