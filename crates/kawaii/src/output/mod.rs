//! What the client prints, as kubectl prints it: borderless tables with the name or id first,
//! `-o wide` for more columns, `-o json|yaml|toml` for the API's values unchanged, and `-o name`
//! for `KIND/NAME` lines. Pure: API values (and the clock, for ages) in, text out.

use clap::ValueEnum;
use serde_json::{Map, Value};

/// `kawaii get -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    /// Columns with the name or id first.
    Table,
    /// The table with every column.
    Wide,
    /// The API's value.
    Json,
    /// The API's value.
    Yaml,
    /// A config file (`get gateway -o toml > f; edit f; apply -f f`).
    Toml,
    /// `KIND/NAME` lines, one per resource.
    Name,
}

/// `kawaii status -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusOutput {
    /// One table per section.
    Table,
    /// The tables with every column.
    Wide,
    /// The API's value (`GET /v1/status`).
    Json,
    /// The API's value.
    Yaml,
}

/// `kawaii audit -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// One line per change.
    Table,
    /// The API's value.
    Json,
    /// The API's value.
    Yaml,
}

/// How one cell is made from a field.
#[derive(Debug, Clone, Copy)]
enum Fmt {
    /// The value as text; lists joined with `,`.
    Text,
    /// `yes` / `no`.
    Bool,
    /// The number of items of a list.
    Count,
    /// Unix milliseconds, shown as the age.
    AgeMs,
    /// Unix seconds, shown as the age.
    AgeSecs,
    /// A number of seconds, shown as a duration.
    Secs,
    /// Per-kind error counters (`{"connect_failed": 3}`), shown as `connect_failed=3`.
    Counts,
    /// A 0..=1 fraction as a percentage.
    Percent,
    /// Firewall rules of a peering, a tunnel or a peer: `tcp/22 from 10.0.0.0/8`.
    PeerRules,
    /// A tagged reason: `{"reason": "preempted", "master": "10.0.0.2"}`.
    Reason,
    /// A rule's network: absent means every address of both families, `any`.
    Net,
}

/// One column: its header, the field it shows (`a.b` for nested), and whether only `-o wide`
/// shows it.
#[derive(Debug, Clone, Copy)]
struct Col {
    header: &'static str,
    field: &'static str,
    fmt: Fmt,
    wide: bool,
}

const fn col(header: &'static str, field: &'static str, fmt: Fmt) -> Col {
    Col {
        header,
        field,
        fmt,
        wide: false,
    }
}

const fn wide(header: &'static str, field: &'static str, fmt: Fmt) -> Col {
    Col {
        header,
        field,
        fmt,
        wide: true,
    }
}

/// A collection of the API, by the names the CLI accepts.
#[derive(Debug)]
pub struct Kind {
    /// The plural the CLI lists it under (`ingress-rules`).
    pub name: &'static str,
    /// What `-o name` prints before the slash (`ingress-rule`); also accepted as a kind.
    pub singular: &'static str,
    aliases: &'static [&'static str],
    /// The collection's path in the API.
    pub path: &'static str,
    /// The field that names one item in the URL.
    pub key: &'static str,
    columns: &'static [Col],
    /// Serializes the API's value through the model's type, in its field order.
    typed: Typed,
}

/// `serialized` through a model type (None: the value is not of that type, e.g. a newer
/// daemon's field; it is then printed as it came).
type Typed = fn(&Value, &str) -> Option<anyhow::Result<String>>;

/// A bare list in TOML: `[[items]]`.
#[derive(serde::Serialize)]
struct Items<T> {
    items: Vec<T>,
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Value,
    format: &str,
) -> Option<anyhow::Result<String>> {
    fn out<S: serde::Serialize>(v: &S, format: &str) -> anyhow::Result<String> {
        Ok(match format {
            "json" => format!("{}\n", serde_json::to_string_pretty(v)?),
            "yaml" => yaml_serde::to_string(v)?,
            _ => toml::to_string_pretty(v)?,
        })
    }
    Some(match v {
        Value::Array(_) => {
            let items: Vec<T> = serde_json::from_value(v.clone()).ok()?;
            match format {
                "toml" => out(&Items { items }, format),
                _ => out(&items, format),
            }
        }
        _ => out(&serde_json::from_value::<T>(v.clone()).ok()?, format),
    })
}

const RULE_COLUMNS: [Col; 5] = [
    col("ID", "id", Fmt::Text),
    col("DESTINATION", "destination", Fmt::Net),
    col("PROTOCOL", "protocol", Fmt::Text),
    col("PORTS", "ports", Fmt::Text),
    col("DESCRIPTION", "description", Fmt::Text),
];

pub const KINDS: &[Kind] = &[
    Kind {
        name: "ingress-rules",
        singular: "ingress-rule",
        aliases: &["ingress", "ingress_rules"],
        path: "/v1/ingress-rules",
        key: "id",
        typed: typed::<kawaii_model::IngressRule>,
        columns: &[
            col("ID", "id", Fmt::Text),
            col("SOURCE", "source", Fmt::Net),
            col("PROTOCOL", "protocol", Fmt::Text),
            col("PORTS", "ports", Fmt::Text),
            wide("RATE-LIMIT", "rate_limit", Fmt::Text),
            wide("BURST", "burst", Fmt::Text),
            wide("CONN-LIMIT", "conn_limit", Fmt::Text),
            col("DESCRIPTION", "description", Fmt::Text),
        ],
    },
    Kind {
        name: "egress-rules",
        singular: "egress-rule",
        aliases: &["egress", "egress_rules"],
        path: "/v1/egress-rules",
        key: "id",
        typed: typed::<kawaii_model::EgressRule>,
        columns: &RULE_COLUMNS,
    },
    Kind {
        name: "nat-rules",
        singular: "nat-rule",
        aliases: &["nat", "nat_rules"],
        path: "/v1/nat-rules",
        key: "id",
        typed: typed::<kawaii_model::NatRule>,
        columns: &RULE_COLUMNS,
    },
    Kind {
        name: "vpc-peerings",
        singular: "vpc-peering",
        aliases: &["peering", "peerings", "vpc_peerings"],
        path: "/v1/vpc-peerings",
        key: "name",
        typed: typed::<kawaii_model::VpcPeering>,
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("SUBNET", "subnet", Fmt::Text),
            col("VIA", "via", Fmt::Text),
            wide("SUBNET6", "subnet6", Fmt::Text),
            wide("VIA6", "via6", Fmt::Text),
            col("POLICY", "policy", Fmt::Text),
            col("CONSENT", "consent", Fmt::Text),
            wide("INGRESS-RULES", "ingress_rules", Fmt::PeerRules),
            wide("EGRESS-RULES", "egress_rules", Fmt::PeerRules),
            col("DESCRIPTION", "description", Fmt::Text),
        ],
    },
    Kind {
        name: "ipsec",
        singular: "ipsec-connection",
        aliases: &["ipsec-connections"],
        path: "/v1/ipsec",
        key: "name",
        typed: typed::<kawaii_model::Ipsec>,
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("REMOTE-PEER", "remote_peer", Fmt::Text),
            col("REMOTE-SUBNET", "remote_subnet", Fmt::Text),
            col("ZONE", "zone", Fmt::Text),
            col("START", "start_action", Fmt::Text),
            wide("PHASE1-DH", "phase1_dh_group_number", Fmt::Text),
            wide("PHASE1-ENC", "phase1_encryption_algorithm", Fmt::Text),
            wide("PHASE1-INTEGRITY", "phase1_integrity_algorithm", Fmt::Text),
            wide("PHASE2-DH", "phase2_dh_group_number", Fmt::Text),
            wide("PHASE2-ENC", "phase2_encryption_algorithm", Fmt::Text),
            wide("PHASE2-INTEGRITY", "phase2_integrity_algorithm", Fmt::Text),
            wide("DPD", "dpd_action", Fmt::Text),
            wide("REKEY", "rekey", Fmt::Text),
            wide("PSK-FILE", "pre_shared_key_file", Fmt::Text),
            wide("INGRESS-RULES", "ingress_rules", Fmt::PeerRules),
            col("DESCRIPTION", "description", Fmt::Text),
        ],
    },
    Kind {
        name: "wireguard-peers",
        singular: "wireguard-peer",
        aliases: &["peer", "peers", "vpn-peers"],
        path: "/v1/wireguard/peers",
        key: "name",
        typed: typed::<kawaii_model::WgPeer>,
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("ADDRESS", "address", Fmt::Text),
            col("ALLOWED-IPS", "allowed_ips", Fmt::Text),
            col("ENDPOINT", "endpoint", Fmt::Text),
            wide("PUBLIC-KEY", "public_key", Fmt::Text),
            wide("KEEPALIVE", "persistent_keepalive", Fmt::Text),
            wide("INTERNET", "allow_internet", Fmt::Bool),
            wide("INGRESS-RULES", "ingress_rules", Fmt::PeerRules),
        ],
    },
    Kind {
        name: "pipes",
        singular: "pipe",
        aliases: &[],
        path: "/v1/pipes",
        key: "name",
        typed: typed::<kawaii_model::Pipe>,
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("PORT", "port", Fmt::Text),
            col("REMOTE", "remote", Fmt::Text),
            col("PEER", "peer", Fmt::Text),
            wide("LISTEN", "listen", Fmt::Text),
        ],
    },
    Kind {
        name: "routes",
        singular: "route",
        aliases: &[],
        path: "/v1/routes",
        key: "domain",
        typed: typed::<kawaii_model::Route>,
        columns: &[
            col("DOMAIN", "domain", Fmt::Text),
            col("HTTPS", "https", Fmt::Text),
            col("HTTP", "http", Fmt::Text),
            col("BALANCE", "balance", Fmt::Text),
            col("HEALTH-CHECK", "health_check", Fmt::Text),
            wide("PROXY-PROTOCOL", "proxy_protocol", Fmt::Text),
        ],
    },
];

/// What `get` was asked for.
#[derive(Debug)]
pub enum Target<'a> {
    /// The whole document.
    Gateway,
    Kind(&'static Kind, Option<&'a str>),
}

fn find_kind(word: &str) -> Option<&'static Kind> {
    // The API's own names too: `wireguard/peers`, `/v1/ipsec`.
    let word = word.trim_start_matches('/');
    let word = word.strip_prefix("v1/").unwrap_or(word);
    KINDS.iter().find(|k| {
        k.name == word
            || k.singular == word
            || k.aliases.contains(&word)
            || k.path.strip_prefix("/v1/") == Some(word)
    })
}

/// Resolves `KIND`, `KIND NAME` or `KIND/NAME` (the form `-o name` prints).
pub fn target<'a>(kind: Option<&'a str>, name: Option<&'a str>) -> anyhow::Result<Target<'a>> {
    let Some(kind) = kind else {
        return Ok(Target::Gateway);
    };
    if kind == "gateway" || kind.starts_with("gateway/") {
        return Ok(Target::Gateway);
    }
    if let Some(k) = find_kind(kind) {
        return Ok(Target::Kind(k, name));
    }
    if let Some((k, n)) = kind.rsplit_once('/')
        && let Some(k) = find_kind(k)
        && !n.is_empty()
    {
        if let Some(other) = name {
            anyhow::bail!("give the name once: {kind} or {k} {other}", k = k.name);
        }
        return Ok(Target::Kind(k, Some(n)));
    }
    let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
    anyhow::bail!(
        "unknown kind {kind:?}; kinds: gateway, {} (or the API's names, e.g. wireguard/peers)",
        names.join(", ")
    )
}

/// The API's value as JSON, YAML or TOML (a bare list becomes `[[items]]` in TOML).
pub fn serialized(v: &Value, format: &str) -> anyhow::Result<String> {
    Ok(match format {
        "json" => format!("{}\n", serde_json::to_string_pretty(v)?),
        "yaml" => yaml_serde::to_string(v)?,
        _ => match v {
            Value::Object(_) => toml::to_string_pretty(&without_nulls(v))?,
            Value::Array(items) => {
                let doc =
                    serde_json::json!({ "items": without_nulls(&Value::Array(items.clone())) });
                toml::to_string_pretty(&doc)?
            }
            other => format!("{other}\n"),
        },
    })
}

/// TOML has no null: absent is how it says "not set".
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// `v` in the model's field order where it is of the model's type, else as it came.
fn in_order(typed: Typed, v: &Value, format: &str) -> anyhow::Result<String> {
    typed(v, format).unwrap_or_else(|| serialized(v, format))
}

/// `get gateway` (or `get` alone): `envelope` is the API's `{revision, gateway}`.
pub fn gateway(envelope: &Value, output: GetOutput) -> anyhow::Result<String> {
    let doc = &envelope["gateway"];
    Ok(match output {
        // The document itself, in the config file's own format.
        GetOutput::Table | GetOutput::Wide => format!(
            "# revision {}\n{}",
            envelope["revision"],
            in_order(typed::<kawaii_model::Gateway>, doc, "toml")?
        ),
        GetOutput::Json => in_order(typed::<kawaii_model::Gateway>, doc, "json")?,
        GetOutput::Yaml => in_order(typed::<kawaii_model::Gateway>, doc, "yaml")?,
        GetOutput::Toml => in_order(typed::<kawaii_model::Gateway>, doc, "toml")?,
        GetOutput::Name => format!(
            "gateway/{}\n",
            doc["gateway"]["name"].as_str().unwrap_or("kawaii")
        ),
    })
}

/// `get KIND [NAME]`: `v` is a list (or one item, when a name was given).
pub fn collection(kind: &Kind, v: &Value, output: GetOutput) -> anyhow::Result<String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    Ok(match output {
        GetOutput::Table | GetOutput::Wide => {
            if items.is_empty() {
                return Ok(String::new());
            }
            table(kind.columns, &items, output == GetOutput::Wide, 0)
        }
        GetOutput::Json => in_order(kind.typed, v, "json")?,
        GetOutput::Yaml => in_order(kind.typed, v, "yaml")?,
        GetOutput::Toml => in_order(kind.typed, v, "toml")?,
        GetOutput::Name => items
            .iter()
            .map(|i| format!("{}/{}\n", kind.singular, text(&i[kind.key])))
            .collect(),
    })
}

/// Columns padded to their widest cell, three spaces apart, no borders (kubectl's layout).
fn layout(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(c);
            line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn table(columns: &[Col], items: &[&Value], wide: bool, now_ms: u64) -> String {
    let columns: Vec<&Col> = columns.iter().filter(|c| wide || !c.wide).collect();
    let header: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| cell(field(item, c.field), c.fmt, now_ms))
                .collect()
        })
        .collect();
    layout(&header, &rows)
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, p| &v[p])
}

/// A scalar, a list of scalars, or an object as `k=v` pairs: never JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "<none>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Array(a) if a.is_empty() => "<none>".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Object(o) if o.is_empty() => "<none>".into(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(","),
        Value::Number(n) => n.to_string(),
    }
}

fn cell(v: &Value, fmt: Fmt, now_ms: u64) -> String {
    match (fmt, v) {
        (Fmt::Net, Value::Null) => "any".into(),
        (_, Value::Null) => "<none>".into(),
        (Fmt::Count, Value::Array(a)) => a.len().to_string(),
        (Fmt::AgeMs, Value::Number(n)) => n
            .as_u64()
            .map(|ms| age(now_ms.saturating_sub(ms) / 1000))
            .unwrap_or_else(|| text(v)),
        (Fmt::AgeSecs, Value::Number(n)) => n
            .as_u64()
            .map(|s| age((now_ms / 1000).saturating_sub(s)))
            .unwrap_or_else(|| text(v)),
        (Fmt::Secs, Value::Number(n)) => n.as_u64().map(age).unwrap_or_else(|| text(v)),
        (Fmt::Counts, Value::Object(o)) => {
            let nonzero: Vec<String> = o
                .iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(k, n)| format!("{k}={}", text(n)))
                .collect();
            if nonzero.is_empty() {
                "0".into()
            } else {
                nonzero.join(",")
            }
        }
        (Fmt::Percent, Value::Number(n)) => n
            .as_f64()
            .map(|f| format!("{:.1}%", f * 100.0))
            .unwrap_or_else(|| text(v)),
        (Fmt::PeerRules, Value::Array(rules)) if !rules.is_empty() => {
            rules.iter().map(peer_rule).collect::<Vec<_>>().join("; ")
        }
        (Fmt::Reason, Value::Object(o)) => {
            let reason = o.get("reason").map(text).unwrap_or_default();
            let rest: Map<String, Value> = o
                .iter()
                .filter(|(k, _)| *k != "reason")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if rest.is_empty() {
                reason
            } else {
                format!("{reason}({})", text(&Value::Object(rest)))
            }
        }
        _ => text(v),
    }
}

/// `tcp/22 from 10.0.0.0/8 to 10.1.0.5`.
fn peer_rule(r: &Value) -> String {
    let mut s = format!("{}/{}", text(&r["protocol"]), text(&r["ports"]));
    for (word, f) in [("from", "source"), ("to", "destination")] {
        if let Some(a) = r[f].as_str() {
            s.push_str(&format!(" {word} {a}"));
        }
    }
    s
}

/// kubectl's ages: `42s`, `5m3s`, `3h12m`, `2d4h`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// One table of `kawaii status`: its title, where its rows are in `/v1/status` (`a.b`: a list,
/// one row per item, or an object, one row), and its columns. They print in this order.
struct Section {
    title: &'static str,
    path: &'static str,
    columns: &'static [Col],
}

const SECTIONS: &[Section] = &[
    Section {
        title: "drivers",
        path: "drivers",
        columns: &[
            col("DRIVER", "name", Fmt::Text),
            col("OK", "ok", Fmt::Bool),
            col("APPLIED", "applied_revision", Fmt::Text),
            col("LAST-APPLY", "last_apply", Fmt::Text),
            col("ERROR-KIND", "error_kind", Fmt::Text),
            col("RESOURCE", "resource", Fmt::Text),
            col("ERROR", "error", Fmt::Text),
        ],
    },
    Section {
        title: "config file rejected (the running state stays)",
        path: "rejected_config",
        columns: &[
            col("FIELD", "path", Fmt::Text),
            col("REASON", "reason", Fmt::Text),
        ],
    },
    Section {
        title: "zones (vrrp)",
        path: "details.vrrp",
        columns: &[
            col("ZONE", "zone", Fmt::Text),
            col("VRID", "vrid", Fmt::Text),
            col("FAMILY", "family", Fmt::Text),
            col("STATE", "state", Fmt::Text),
            col("PRIORITY", "priority", Fmt::Text),
            col("MASTER", "master", Fmt::Text),
            col("VIPS", "vips", Fmt::Text),
            col("SINCE", "last_transition_ms", Fmt::AgeMs),
            col("REASON", "last_reason", Fmt::Reason),
            wide("CONFIGURED-PRIORITY", "configured_priority", Fmt::Text),
            wide("HELD-FOR-SYNC", "held_for_sync", Fmt::Bool),
            wide("TRANSITIONS", "transitions", Fmt::Text),
            wide("ADVERTS-SENT", "adverts_sent", Fmt::Text),
            wide("ADVERTS-RECEIVED", "adverts_received", Fmt::Text),
        ],
    },
    Section {
        title: "rule counters",
        path: "details.rules",
        columns: &[
            col("RULE", "rule", Fmt::Text),
            col("CHAIN", "chain", Fmt::Text),
            col("PACKETS", "packets", Fmt::Text),
            col("BYTES", "bytes", Fmt::Text),
        ],
    },
    Section {
        title: "wireguard device",
        path: "details.wireguard",
        columns: &[
            col("INTERFACE", "interface", Fmt::Text),
            col("PORT", "listen_port", Fmt::Text),
            col("PUBLIC-KEY", "public_key", Fmt::Text),
            col("PEERS", "peers", Fmt::Count),
        ],
    },
    Section {
        title: "wireguard peers",
        path: "details.wireguard.peers",
        columns: &[
            col("PEER", "name", Fmt::Text),
            col("ENDPOINT", "endpoint", Fmt::Text),
            col("ALLOWED-IPS", "allowed_ips", Fmt::Text),
            col("HANDSHAKE", "last_handshake_ago", Fmt::Secs),
            col("RX-BYTES", "rx_bytes", Fmt::Text),
            col("TX-BYTES", "tx_bytes", Fmt::Text),
            wide("PUBLIC-KEY", "public_key", Fmt::Text),
        ],
    },
    Section {
        title: "ipsec (charon)",
        path: "details.ipsec",
        columns: &[
            col("RUNNING", "charon.running", Fmt::Bool),
            col("PID", "charon.pid", Fmt::Text),
            col("RESTARTS", "charon.restarts", Fmt::Text),
            col("MODE", "mode", Fmt::Text),
            col("LAST-EXIT", "charon.last_exit", Fmt::Text),
        ],
    },
    Section {
        title: "ipsec connections",
        path: "details.ipsec.connections",
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("REMOTE-PEER", "remote_peer", Fmt::Text),
            col("IKE", "ike_state", Fmt::Text),
            col("CHILD", "child_state", Fmt::Text),
            col("UP", "established_seconds", Fmt::Secs),
            col("BYTES-IN", "bytes_in", Fmt::Text),
            col("BYTES-OUT", "bytes_out", Fmt::Text),
            col("ERROR", "last_error.reason", Fmt::Text),
            wide("ID", "id", Fmt::Text),
            wide("REMOTE-SUBNET", "remote_subnet", Fmt::Text),
            wide("REMOTE-ALIAS", "remote_alias", Fmt::Text),
            wide("LOCAL-ALIAS", "local_alias", Fmt::Text),
            wide("START", "start", Fmt::Text),
            wide("CHILD-UP", "child_installed_seconds", Fmt::Secs),
            wide("PACKETS-IN", "packets_in", Fmt::Text),
            wide("PACKETS-OUT", "packets_out", Fmt::Text),
            wide("ALGORITHMS", "algorithms", Fmt::Text),
            wide("REMOTE-TS", "child_remote_ts", Fmt::Text),
            wide("NOTE", "note", Fmt::Text),
            wide("ERROR-DETAIL", "last_error.detail", Fmt::Text),
            wide("ERROR-AT", "last_error.at", Fmt::AgeSecs),
        ],
    },
    Section {
        title: "vpc peerings",
        path: "details.vpc_peerings",
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("SUBNET", "subnet", Fmt::Text),
            col("STATE", "state", Fmt::Text),
            col("SINCE", "since", Fmt::AgeSecs),
            col("ERROR", "error", Fmt::Text),
            wide("LOCAL-SUBNET", "local_subnet", Fmt::Text),
            wide("LOCAL-ALIAS", "local_alias", Fmt::Text),
            wide("SUBNET6", "subnet6", Fmt::Text),
            wide("LOCAL-SUBNET6", "local_subnet6", Fmt::Text),
        ],
    },
    Section {
        title: "router listeners",
        path: "details.router.listeners",
        columns: &[
            col("LISTENER", "name", Fmt::Text),
            col("PROTOCOL", "protocol", Fmt::Text),
            col("ADDRESS", "local_addr", Fmt::Text),
            col("ACTIVE", "active_connections", Fmt::Text),
            col("ACCEPTED", "accepted_connections", Fmt::Text),
            col("ERRORS", "errors", Fmt::Counts),
            wide("BIND", "bind", Fmt::Text),
        ],
    },
    Section {
        title: "router routes",
        path: "details.router.routes",
        columns: &[
            col("DOMAIN", "domain", Fmt::Text),
            col("PROTOCOL", "protocol", Fmt::Text),
            col("ACTIVE", "active_connections", Fmt::Text),
            col("TOTAL", "total_connections", Fmt::Text),
            col("BYTES-TO-BACKEND", "bytes_to_backend", Fmt::Text),
            col("BYTES-TO-CLIENT", "bytes_to_client", Fmt::Text),
            col("ERRORS", "errors", Fmt::Counts),
        ],
    },
    Section {
        title: "pipes",
        path: "details.pipes",
        columns: &[
            col("NAME", "name", Fmt::Text),
            col("LISTEN", "listen", Fmt::Text),
            col("TARGET", "target", Fmt::Text),
            col("ACTIVE", "active", Fmt::Text),
            col("CONNECTIONS", "connections", Fmt::Text),
            col("BYTES-IN", "bytes_in", Fmt::Text),
            col("BYTES-OUT", "bytes_out", Fmt::Text),
            col("ERRORS", "errors", Fmt::Counts),
        ],
    },
    Section {
        title: "connection-state sync",
        path: "details.conntrack_sync",
        columns: &[
            col("ENABLED", "enabled", Fmt::Bool),
            col("TRANSPORT", "transport", Fmt::Text),
            col("RUNNING", "running", Fmt::Bool),
            col("READY", "ready", Fmt::Bool),
            col("PID", "pid", Fmt::Text),
            col("RESTARTS", "restarts", Fmt::Text),
            col("SYNCED", "synced_entries", Fmt::Text),
            col("INJECTED", "injected_entries", Fmt::Text),
            col("ERRORS", "errors", Fmt::Text),
            wide("READY-SINCE", "ready_at_ms", Fmt::AgeMs),
            wide("RESYNCS", "resyncs", Fmt::Text),
            wide("LAST-RESYNC", "last_resync_ms", Fmt::AgeMs),
            wide("LAST-RESTART", "last_restart_ms", Fmt::AgeMs),
            wide("LAST-EXIT", "last_exit", Fmt::Text),
            wide("WATCHDOG-RESTARTS", "watchdog_restarts", Fmt::Text),
            wide("LAST-WATCHDOG", "last_watchdog", Fmt::Text),
            wide("UPDATES", "injected_updates", Fmt::Text),
            wide("DESTROYS", "injected_destroys", Fmt::Text),
            wide("SENT", "messages_sent", Fmt::Text),
            wide("RECEIVED", "messages_received", Fmt::Text),
        ],
    },
    Section {
        title: "connection-state sync siblings",
        path: "details.conntrack_sync.siblings",
        columns: &[
            col("SIBLING", "address", Fmt::Text),
            col("STATE", "state", Fmt::Text),
            col("LAST-HEARD", "last_heard_secs", Fmt::Secs),
        ],
    },
    Section {
        title: "conntrack table",
        path: "details.conntrack",
        columns: &[
            col("ENTRIES", "count", Fmt::Text),
            col("MAX", "max", Fmt::Text),
            col("FILL", "fill", Fmt::Percent),
            col("PUBLIC-CAP", "public_cap", Fmt::Text),
            col("GUARD-ENGAGED", "engaged", Fmt::Bool),
        ],
    },
];

/// The fields of `details` that [`SECTIONS`] print (any other one is printed generically).
const KNOWN_DETAILS: &[&str] = &[
    "rules",
    "vrrp",
    "router",
    "ipsec",
    "pipes",
    "vpc_peerings",
    "wireguard",
    "conntrack_sync",
    "conntrack",
];

/// `kawaii status` as tables: a header, then one table per section that has something to show.
/// `now_ms` (Unix milliseconds) turns timestamps into ages.
pub fn status(v: &Value, wide: bool, now_ms: u64) -> String {
    let store = &v["store"];
    let state = match (v["ready"].as_bool(), v["degraded"].as_str()) {
        // Applied, but a driver fails: the daemon names the resource.
        (_, Some(why)) => format!("DEGRADED: {why}"),
        (Some(true), None) => "ready".into(),
        _ => "NOT READY".into(),
    };
    let store_state = match store["up"].as_bool() {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "<none>",
    };
    let sync = match store["seconds_since_sync"].as_f64() {
        Some(s) => format!("{s:.1}s ago"),
        None if store.is_object() => "never".into(),
        None => "<none>".into(),
    };
    let header = [
        "GATEWAY",
        "ZONE",
        "DESIRED",
        "APPLIED",
        "STATE",
        "STORE",
        "STORE-STATE",
        "LAST-SYNC",
    ]
    .map(String::from);
    let row = vec![
        text(&v["gateway"]),
        text(&v["zone"]),
        text(&v["desired_revision"]),
        text(&v["applied_revision"]),
        state,
        text(&store["backend"]),
        store_state.to_string(),
        sync,
    ];
    let mut out = layout(&header, &[row]);
    let mut notes: Vec<(&str, &Value)> = vec![("store error", &store["error"])];
    notes.push(("plan error", &v["plan_error"]));
    for (what, note) in notes {
        if let Some(n) = note.as_str() {
            out.push_str(&format!("{what}: {n}\n"));
        }
    }
    for s in SECTIONS {
        let value = field(v, s.path);
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            Value::Object(_) => vec![value],
            _ => continue,
        };
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{}\n", s.title));
        out.push_str(&table(s.columns, &items, wide, now_ms));
        if s.path == "details.router.routes" {
            backends(&mut out, &items, wide);
            if let Some(idle) = v["details"]["router"]["idle_pipes"].as_u64() {
                out.push_str(&format!("idle splice pipes: {idle}\n"));
            }
        }
    }
    for (name, value) in v["details"].as_object().into_iter().flatten() {
        if !KNOWN_DETAILS.contains(&name.as_str()) {
            generic(&mut out, name, value);
        }
    }
    out
}

/// The router's backends, one row each, under their route.
fn backends(out: &mut String, routes: &[&Value], all: bool) {
    const COLUMNS: &[Col] = &[
        col("BACKEND", "address", Fmt::Text),
        col("HEALTHY", "healthy", Fmt::Bool),
        col("ACTIVE", "active_connections", Fmt::Text),
        col("TOTAL", "total_connections", Fmt::Text),
        col("BYTES-TO-BACKEND", "bytes_to_backend", Fmt::Text),
        col("BYTES-TO-CLIENT", "bytes_to_client", Fmt::Text),
        col("ERRORS", "errors", Fmt::Counts),
        wide("HEALTH-CHECKED", "health_checked", Fmt::Bool),
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let columns: Vec<&Col> = COLUMNS.iter().filter(|c| all || !c.wide).collect();
    for r in routes {
        for b in r["backends"].as_array().into_iter().flatten() {
            let mut row = vec![text(&r["domain"])];
            row.extend(columns.iter().map(|c| cell(field(b, c.field), c.fmt, 0)));
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return;
    }
    let mut header = vec!["ROUTE".to_string()];
    header.extend(columns.iter().map(|c| c.header.to_string()));
    out.push_str("\nrouter backends\n");
    out.push_str(&layout(&header, &rows));
}

/// A section this client does not know yet (a newer daemon): a list of objects is a table with
/// a column per field; an object is a one-row table; nested lists of objects get tables of
/// their own.
fn generic(out: &mut String, title: &str, value: &Value) {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        Value::Null => return,
        one => vec![one],
    };
    let mut columns: Vec<&str> = Vec::new();
    let mut nested: Vec<&str> = Vec::new();
    for o in items.iter().filter_map(|i| i.as_object()) {
        for (k, v) in o {
            let is_table = v.as_array().is_some_and(|a| a.iter().any(Value::is_object));
            let list = if is_table { &mut nested } else { &mut columns };
            if !list.contains(&k.as_str()) {
                list.push(k);
            }
        }
    }
    out.push_str(&format!("\n{}\n", title.replace('_', " ")));
    if columns.is_empty() {
        let rows: Vec<Vec<String>> = items.iter().map(|i| vec![text(i)]).collect();
        out.push_str(&layout(&["VALUE".to_string()], &rows));
    } else {
        let header: Vec<String> = columns
            .iter()
            .map(|c| c.to_uppercase().replace('_', "-"))
            .collect();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| columns.iter().map(|c| text(&i[*c])).collect())
            .collect();
        out.push_str(&layout(&header, &rows));
    }
    if let [one] = items.as_slice() {
        for n in nested {
            generic(out, &format!("{title} {n}"), &one[n]);
        }
    }
}

/// `kawaii audit`: one line per entry, its changes indented below.
pub fn audit(v: &Value) -> String {
    let mut out = String::new();
    for e in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}  rev {:<4} {:<20} {}\n",
            text(&e["at"]),
            text(&e["revision"]),
            text(&e["actor"]),
            text(&e["action"])
        ));
        for c in e["changes"].as_array().into_iter().flatten() {
            out.push_str(&format!("    {:<8} {}\n", text(&c["op"]), text(&c["path"])));
        }
    }
    out
}

#[cfg(test)]
mod tests;
