//! Audit entries and the structural diff they record. Diffs are taken over the redacted JSON
//! form of the documents, so no secret ever reaches the trail (a changed secret shows as a change
//! of "(redacted)" to "(redacted)", which still says that it changed).

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: u64,
    /// RFC 3339 UTC.
    pub at: String,
    pub revision: u64,
    pub actor: String,
    pub action: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub op: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// The changes from `before` to `after` as the audit trail records them: diffed on the real
/// values (so a changed secret is a change), then redacted.
pub fn redacted_changes(
    before: &kawaii_model::Gateway,
    after: &kawaii_model::Gateway,
) -> Vec<Change> {
    let revealed = |g: &kawaii_model::Gateway| {
        kawaii_model::Secret::reveal(|| serde_json::to_value(g)).unwrap_or_default()
    };
    let mut changes = diff(&revealed(before), &revealed(after));
    for c in &mut changes {
        let last = c.path.rsplit('.').next().unwrap_or_default();
        for v in [&mut c.before, &mut c.after].into_iter().flatten() {
            if kawaii_model::secret::FIELD_NAMES.contains(&last) {
                *v = Value::String(kawaii_model::secret::REDACTED.into());
            }
            kawaii_model::secret::redact_json(v);
        }
    }
    changes
}

/// Differences between two JSON documents. Arrays of named objects are matched by `name` (or
/// `id`, or `domain`), so reordering is not a change and the path names the resource.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

fn key_of(v: &Value) -> Option<String> {
    ["name", "id", "domain"].iter().find_map(|k| {
        v.get(k)
            .and_then(Value::as_str)
            .map(|s| format!("{k}={s:?}"))
    })
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => walk(&join(k), va, vb, out),
                    None => out.push(change("removed", join(k), Some(va), None)),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(change("added", join(k), None, Some(vb)));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.iter().chain(y).all(|v| key_of(v).is_some()) => {
            for va in x {
                let k = key_of(va).unwrap_or_default();
                match y
                    .iter()
                    .find(|vb| key_of(vb).as_deref() == Some(k.as_str()))
                {
                    Some(vb) => walk(&format!("{path}[{k}]"), va, vb, out),
                    None => out.push(change("removed", format!("{path}[{k}]"), Some(va), None)),
                }
            }
            for vb in y {
                let k = key_of(vb).unwrap_or_default();
                if !x.iter().any(|va| key_of(va).as_deref() == Some(k.as_str())) {
                    out.push(change("added", format!("{path}[{k}]"), None, Some(vb)));
                }
            }
        }
        _ => out.push(change("changed", path.to_string(), Some(a), Some(b))),
    }
}

fn change(op: &str, path: String, before: Option<&Value>, after: Option<&Value>) -> Change {
    Change {
        op: op.into(),
        path,
        before: before.cloned(),
        after: after.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_arrays_diff_by_name() {
        let a = json!({"ipsec": [{"name": "a", "remote_peer": "1"}, {"name": "b"}]});
        let b = json!({"ipsec": [{"name": "b"}, {"name": "a", "remote_peer": "2"}, {"name": "c"}]});
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].path, "ipsec[name=\"a\"].remote_peer");
        assert_eq!(d[1].op, "added");
    }
}
