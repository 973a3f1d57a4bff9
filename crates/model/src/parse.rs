//! Parsing that reports every mistake at once. The text becomes a value tree first; the tree is
//! deserialized into a [`Gateway`], and each structural error (an unknown field, a value of the
//! wrong type, a missing field) is recorded with its field path — and its line and column when
//! the text is TOML — then taken out of the tree (or a placeholder put in) and deserialization
//! tried again. The rest of the document is then validated as usual, so one `kawaii check`
//! prints every error, structural and value ones alike. Only a syntax error stops at once.

use crate::error::FieldError;
use crate::spec::{Format, Gateway};
use serde_json::Value;

/// At most this many structural errors are collected (each costs one more deserialization).
const MAX_STRUCTURAL: usize = 100;

/// What parsing found: the document (with the broken parts left out) and the structural errors.
#[derive(Debug)]
pub struct Parsed {
    pub gateway: Gateway,
    pub errors: Vec<FieldError>,
    /// False when the tree could not be mended and `gateway` is empty (nothing to validate).
    pub complete: bool,
}

/// Parses `text`; `Err` only for a JSON syntax error (one error, with its position). TOML
/// syntax errors are recorded and their lines blanked, so the rest is still read.
pub fn parse(text: &str, format: Format) -> Result<Parsed, FieldError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mended: String;
    let (mut tree, spans) = match format {
        Format::Toml => {
            let (table, text) = match toml_recovering(text, &mut errors) {
                Some(t) => t,
                None => {
                    return Ok(Parsed {
                        gateway: Gateway::default(),
                        errors,
                        complete: false,
                    });
                }
            };
            mended = text;
            let tree = serde_json::to_value(&table)
                .map_err(|e| FieldError::new("(file)", one_line(&e.to_string())))?;
            (tree, Some(mended.as_str()))
        }
        Format::Json => {
            let tree: Value = serde_json::from_str(text).map_err(|e| {
                at_position(
                    FieldError::new("(document)", one_line(&e.to_string())),
                    Some((e.line(), e.column())),
                )
            })?;
            (tree, None)
        }
    };
    let mut placeholders: Vec<(Vec<Seg>, usize)> = Vec::new();
    // Each mistake is fixed once: one that comes back (a fix that did not change what
    // deserialization sees) ends the pass instead of repeating forever.
    let mut removed: Vec<(Vec<Seg>, String)> = Vec::new();
    let mut passes = 0;
    loop {
        passes += 1;
        let e = match serde_path_to_error::deserialize::<_, Gateway>(&tree) {
            Ok(gateway) => {
                return Ok(Parsed {
                    gateway,
                    errors,
                    complete: true,
                });
            }
            Err(e) => e,
        };
        let reason = one_line(&e.inner().to_string());
        let mut path = segments(e.path());
        let fix = if let Some(field) = quoted_after(&reason, "missing field ") {
            path.push(Seg::Key(field));
            Fix::Fill
        } else if let Some(field) = quoted_after(&reason, "unknown field ")
            && path.last() != Some(&Seg::Key(field.clone()))
        {
            path.push(Seg::Key(field));
            Fix::Remove
        } else {
            Fix::Remove
        };
        // A placeholder of the wrong type: try the next kind, without a second report.
        if let Some(tried) = placeholders.iter_mut().find(|(p, _)| *p == path) {
            tried.1 += 1;
            let Some(next) = placeholder(tried.1) else {
                return Ok(give_up(errors, &path, &reason, spans));
            };
            if !set(&mut tree, &path, Some(next)) {
                return Ok(give_up(errors, &path, &reason, spans));
            }
            continue;
        }
        // A field just taken out for its type is then missing: the same mistake, told once.
        let rendered = render(&path);
        if !errors.iter().any(|e| e.path == rendered) {
            let at = spans.and_then(|text| span_of(text, &path));
            errors.push(at_position(FieldError::new(rendered, reason.clone()), at));
        }
        let repeated =
            matches!(fix, Fix::Remove) && removed.iter().any(|(p, r)| *p == path && *r == reason);
        let done = !repeated
            && match fix {
                Fix::Fill => {
                    placeholders.push((path.clone(), 0));
                    set(&mut tree, &path, placeholder(0))
                }
                Fix::Remove => {
                    removed.push((path.clone(), reason.clone()));
                    set(&mut tree, &path, None)
                }
            };
        if !done || errors.len() >= MAX_STRUCTURAL || passes > 4 * MAX_STRUCTURAL {
            return Ok(give_up(errors, &path, &reason, spans));
        }
    }
}

/// At most this many syntax errors are collected (each blanks one line and parses again).
const MAX_SYNTAX: usize = 20;

/// Parses TOML, recording each syntax error (with the field path its line names) and blanking
/// its line until the rest parses; the table and the text that parsed, or None when a line
/// could not be blanked away (the error is recorded).
fn toml_recovering(text: &str, errors: &mut Vec<FieldError>) -> Option<(toml::Table, String)> {
    let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
    loop {
        let current = lines.join("\n");
        let e = match current.parse::<toml::Table>() {
            Ok(table) => {
                errors.sort_by_key(|e| (e.line, e.column));
                return Some((table, current));
            }
            Err(e) => e,
        };
        let at = e.span().map(|s| position(&current, s.start));
        let line = at.map(|(l, _)| l);
        let path = line.map_or_else(|| "(file)".to_string(), |l| syntax_path(&lines, l - 1));
        errors.push(at_position(
            FieldError::new(path, one_line(e.message())),
            at,
        ));
        let slot = line.and_then(|l| lines.get_mut(l - 1));
        match slot {
            Some(l) if !l.trim().is_empty() && errors.len() < MAX_SYNTAX => l.clear(),
            _ => return None,
        }
    }
}

/// The field a TOML line sets, as a path (`zones[1].name`): the table header in force there and
/// the key before `=`; `(file)` when the line is no `key = value`.
fn syntax_path(lines: &[String], index: usize) -> String {
    let mut table = String::new();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for l in &lines[..index] {
        let t = l.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let h = h.trim().to_string();
            let n = counts.entry(h.clone()).or_insert(0);
            table = format!("{h}[{n}]");
            *n += 1;
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = h.trim().to_string();
        }
    }
    let line = lines.get(index).map(|l| l.trim()).unwrap_or_default();
    let key = line.split('=').next().map(str::trim).unwrap_or_default();
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match (line.contains('=') && bare(key), table.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{table}.{key}"),
        (false, _) => "(file)".to_string(),
    }
}

/// The tree could not be mended at `path`: what was found so far, and an empty document.
fn give_up(mut errors: Vec<FieldError>, path: &[Seg], reason: &str, text: Option<&str>) -> Parsed {
    if errors.last().is_none_or(|e| e.path != render(path)) {
        let at = text.and_then(|t| span_of(t, path));
        errors.push(at_position(FieldError::new(render(path), reason), at));
    }
    Parsed {
        gateway: Gateway::default(),
        errors,
        complete: false,
    }
}

enum Fix {
    Remove,
    Fill,
}

/// Stand-ins for a missing field, tried in turn until one has the field's type. Most fields are
/// strings as written (validated later), so the first usually fits.
fn placeholder(attempt: usize) -> Option<Value> {
    Some(match attempt {
        0 => Value::String(String::new()),
        1 => Value::Bool(false),
        2 => Value::from(0),
        3 => Value::Array(Vec::new()),
        4 => Value::Object(serde_json::Map::new()),
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `ipsec[0].phase1_dh_group_number`, as validation writes paths; `(document)` for the root.
fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        "(document)".into()
    } else {
        out
    }
}

/// Sets (or with `None` removes) the value at `path`; false when the path is not in the tree.
fn set(tree: &mut Value, path: &[Seg], value: Option<Value>) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for s in parents {
        node = match (s, node) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(n) => n,
                None => return false,
            },
            (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node, value) {
        (Seg::Key(k), Value::Object(m), Some(v)) => {
            m.insert(k.clone(), v);
            true
        }
        (Seg::Key(k), Value::Object(m), None) => m.remove(k).is_some(),
        // An array element is replaced, never removed: later indices must keep their meaning.
        (Seg::Index(i), Value::Array(a), v) => match a.get_mut(*i) {
            Some(slot) => {
                let was = std::mem::replace(slot, v.unwrap_or(Value::Null));
                // Null in a list of tables fails again; drop the element's fields instead.
                if slot.is_null() && was.is_object() {
                    *slot = Value::Object(serde_json::Map::new());
                }
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// The name in backquotes after `prefix` in a serde message (`missing field `name``).
fn quoted_after(reason: &str, prefix: &str) -> Option<String> {
    let rest = reason.split(prefix).nth(1)?.strip_prefix('`')?;
    Some(rest.split('`').next()?.to_string())
}

/// The line and column (1-based) of `path` in TOML `text`: the key for a field, the table for
/// a missing field's parent.
fn span_of(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut span = None;
    let mut value: Option<&toml::de::DeValue> = None;
    for s in path {
        let found = match (s, value) {
            (Seg::Key(k), None) => table.get_key_value(k.as_str()).map(|(k, v)| (k.span(), v)),
            (Seg::Key(k), Some(toml::de::DeValue::Table(t))) => {
                table = t;
                table.get_key_value(k.as_str()).map(|(k, v)| (k.span(), v))
            }
            (Seg::Index(i), Some(toml::de::DeValue::Array(a))) => a.get(*i).map(|v| (v.span(), v)),
            _ => None,
        };
        // Further down than the text goes (a missing field): the nearest place found.
        let Some((at, v)) = found else { break };
        span = Some(at);
        value = Some(v.get_ref());
    }
    span.map(|s| position(text, s.start))
}

/// 1-based line and column of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn at_position(e: FieldError, at: Option<(usize, usize)>) -> FieldError {
    match at {
        Some((line, column)) => e.at(line, column),
        None => e,
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Format::Toml) {
            Ok(p) => p.errors.iter().map(|e| e.to_string()).collect(),
            Err(e) => vec![format!("syntax {e}")],
        }
    }

    #[test]
    fn every_structural_error_is_reported_with_its_place() {
        let text = "[gateway]\nname = \"acme\"\nnmae = \"typo\"\n\n[[ingress_rules]]\nports = 22\n\n[[zones]]\nname = \"a\"\n";
        let got = errors(text);
        let zone = |f: &str| format!("zones[0].{f}: missing field `{f}` (line 8, column 1)");
        let mut want = vec![
            "gateway.nmae: unknown field `nmae`, expected one of `name`, `private_subnet`, `private_subnet6`, `slaac`, `egress_policy` (line 3, column 1)".to_string(),
            "ingress_rules[0].ports: invalid type: integer `22`, expected a string (line 6, column 1)".to_string(),
        ];
        for f in [
            "public_interface",
            "private_interface",
            "public_vip",
            "public_gateway",
            "private_vip",
        ] {
            want.push(zone(f));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn a_syntax_error_has_its_line_column_and_field_and_the_rest_is_still_read() {
        let got = errors(
            "[gateway]\nname = \"acme\nprivate_subnet = \"10.1.0.0/24\"\n\n[[zones]]\n[[zones]]\nname = = 2\ncolour = \"red\"\n",
        );
        assert!(got[0].starts_with("gateway.name: "), "{got:?}");
        assert!(got[0].contains("(line 2, column"), "{got:?}");
        assert!(got[1].starts_with("zones[1].name: "), "{got:?}");
        assert!(got[1].contains("(line 7, column"), "{got:?}");
        // The blanked name is not reported again as missing; the rest of the file still is.
        assert!(
            !got[2..].iter().any(|e| e.starts_with("gateway.name")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|e| e.starts_with("zones[1].colour: unknown field")),
            "{got:?}"
        );
    }

    #[test]
    fn a_syntax_error_on_a_header_names_the_file() {
        let got = errors("[gateway\nname = \"acme\"\n");
        assert!(got[0].starts_with("(file): "), "{got:?}");
    }

    #[test]
    fn a_good_document_has_no_errors() {
        assert!(errors("[gateway]\nname = \"acme\"\n").is_empty());
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(position("ab\ncd", 4), (2, 2));
        assert_eq!(position("é\nx", 3), (2, 1));
    }
}
