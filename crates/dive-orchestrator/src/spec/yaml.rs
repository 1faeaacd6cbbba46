//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Built from `saphyr-parser` events so that every node carries its line and column. Aliases are
//! expanded (the alias node keeps the position of the alias) and `<<` merge keys are applied while
//! building, so the resolver only ever sees plain mappings. Scalars are kept as text: the resolver
//! decides what a value means from the key it sits under (compose `no` is a string, not `false`).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::types::Pos;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `plain` is true for an unquoted scalar (only those can be `null`, `~`, booleans...).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in document order; duplicate keys are rejected while building.
    Map(Vec<(Node, Node)>),
}

/// A YAML error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// An unquoted empty scalar, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    #[cfg(test)]
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The key text of a mapping key (keys are always scalars in compose files).
    pub fn key_text(&self) -> String {
        match &self.kind {
            Kind::Scalar { text, .. } => text.clone(),
            Kind::Seq(_) => "<sequence>".to_string(),
            Kind::Map(_) => "<mapping>".to_string(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Parse one YAML document. An empty input yields `None`.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        alias_nodes: 0,
    };
    let mut root = None;
    loop {
        let (ev, span) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(YamlError {
                        pos: pos_of(&span),
                        message: "a stack file must contain one YAML document, found several"
                            .into(),
                    });
                }
                let (ev, span) = b.next()?;
                if matches!(ev, Event::DocumentEnd) {
                    continue;
                }
                root = Some(b.node(ev, span)?);
            }
            other => {
                return Err(YamlError {
                    pos: pos_of(&span),
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        }
    }
    Ok(root)
}

/// Most nodes that aliases may expand to: a few levels of nested aliases can otherwise turn a
/// small file into gigabytes ("billion laughs"). Real stack files are far below this.
const MAX_ALIAS_NODES: usize = 100_000;

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    /// Nodes produced by alias expansion so far.
    alias_nodes: usize,
}

fn size(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Scalar { .. } => 0,
        Kind::Seq(items) => items.iter().map(size).sum(),
        Kind::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
    }
}

/// Only the core-schema tags (`!!str`, `!!int`...) are harmless; others (compose's `!reset`,
/// `!override`) change meaning in ways this loader does not implement, so they are refused.
fn check_tag(tag: Option<&Tag>, pos: Pos) -> Result<(), YamlError> {
    match tag {
        Some(t) if !t.is_yaml_core_schema() => Err(YamlError {
            pos,
            message: format!("YAML tag {}{} is not supported", t.handle, t.suffix),
        }),
        _ => Ok(()),
    }
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(x)) => Ok(x),
            Some(Err(e)) => Err(YamlError {
                pos: Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                },
                message: format!("invalid YAML: {}", e.info()),
            }),
            None => Err(YamlError {
                pos: Pos::default(),
                message: "invalid YAML: unexpected end of input".into(),
            }),
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Node, YamlError> {
        let pos = pos_of(&span);
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                check_tag(tag.as_deref(), pos)?;
                (
                    Node {
                        pos,
                        kind: Kind::Scalar {
                            text: text.into_owned(),
                            plain: style == ScalarStyle::Plain,
                        },
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let target = self.anchors.get(&id).ok_or_else(|| YamlError {
                    pos,
                    message: "alias to an anchor that is not defined before it".into(),
                })?;
                // The alias is reported where it is used: errors in aliased content point at the alias.
                self.alias_nodes += size(target);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(YamlError {
                        pos,
                        message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                    });
                }
                let mut n = target.clone();
                n.pos = pos;
                return Ok(n);
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), pos)?;
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span)?);
                }
                (
                    Node {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), pos)?;
                (self.mapping(pos)?, anchor)
            }
            other => {
                return Err(YamlError {
                    pos,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, pos: Pos) -> Result<Node, YamlError> {
        let mut own: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key = self.node(ev, span)?;
            let (ev, span) = self.next()?;
            let value = self.node(ev, span)?;
            if matches!(&key.kind, Kind::Scalar { text, plain: true } if text == "<<") {
                merge_into(&mut merged, value)?;
                continue;
            }
            if let Some((first, _)) = own.iter().find(|(k, _)| k.kind == key.kind) {
                return Err(YamlError {
                    pos: key.pos,
                    message: format!(
                        "duplicate key \"{}\" (first defined at line {})",
                        key.key_text(),
                        first.pos.line
                    ),
                });
            }
            own.push((key, value));
        }
        // Merge keys: explicit keys win over merged ones; earlier merge sources win over later ones.
        for (k, v) in merged {
            if !own.iter().any(|(ok, _)| ok.kind == k.kind) {
                own.push((k, v));
            }
        }
        Ok(Node {
            pos,
            kind: Kind::Map(own),
        })
    }
}

/// `<<: *a` or `<<: [*a, *b]`: add the source mapping's entries not already present.
fn merge_into(acc: &mut Vec<(Node, Node)>, value: Node) -> Result<(), YamlError> {
    let sources = match value.kind {
        Kind::Map(_) => vec![value],
        Kind::Seq(items) => items,
        _ => {
            return Err(YamlError {
                pos: value.pos,
                message: "a `<<` merge key needs a mapping or a list of mappings".into(),
            });
        }
    };
    for src in sources {
        let Kind::Map(entries) = src.kind else {
            return Err(YamlError {
                pos: src.pos,
                message: "a `<<` merge key needs a mapping or a list of mappings".into(),
            });
        };
        for (k, v) in entries {
            if !acc.iter().any(|(ak, _)| ak.kind == k.kind) {
                acc.push((k, v));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_get<'n>(n: &'n Node, key: &str) -> &'n Node {
        let Kind::Map(entries) = &n.kind else {
            panic!("not a map: {n:?}")
        };
        &entries
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .unwrap_or_else(|| panic!("no key {key}"))
            .1
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("a:\n  b: x\n").unwrap().unwrap();
        let b = map_get(map_get(&root, "a"), "b");
        assert_eq!(b.pos, Pos { line: 2, column: 6 });
    }

    #[test]
    fn merge_keys_keep_explicit_values() {
        let text = "base: &b\n  x: 1\n  y: 2\nderived:\n  <<: *b\n  y: 3\n";
        let root = parse(text).unwrap().unwrap();
        let d = map_get(&root, "derived");
        assert_eq!(map_get(d, "x").as_scalar(), Some("1"));
        assert_eq!(map_get(d, "y").as_scalar(), Some("3"));
    }

    #[test]
    fn merge_list_earlier_wins() {
        let text = "a: &a {x: 1}\nb: &b {x: 2, z: 3}\nc:\n  <<: [*a, *b]\n";
        let root = parse(text).unwrap().unwrap();
        let c = map_get(&root, "c");
        assert_eq!(map_get(c, "x").as_scalar(), Some("1"));
        assert_eq!(map_get(c, "z").as_scalar(), Some("3"));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos.line, 3);
        assert!(e.message.contains("duplicate key \"a\""), "{}", e.message);
    }

    #[test]
    fn bad_yaml_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1);
        assert!(e.message.starts_with("invalid YAML"));
    }

    #[test]
    fn unknown_alias_is_error() {
        assert!(parse("a: *nope\n").is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&text).unwrap_err();
        assert!(
            e.message.contains("aliases expand to more than"),
            "{}",
            e.message
        );
    }

    #[test]
    fn non_core_tags_are_refused() {
        let e = parse("a: !reset null\n").unwrap_err();
        assert_eq!(e.message, "YAML tag !reset is not supported");
        assert_eq!(e.pos.line, 1);
        assert!(parse("a: !!str 5\nb: !!map {c: 1}\n").is_ok());
    }

    #[test]
    fn empty_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# just a comment\n").unwrap(), None);
    }
}
