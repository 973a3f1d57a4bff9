//! The command-line client of the API (`get`, `apply`, `delete`, `status`, `audit`,
//! `peer showconf`) and `render`, which plans locally without a daemon.

use crate::{Output, ShowconfOutput, config};
use anyhow::{Context, bail};
use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderWhat {
    All,
    Nftables,
    Routes,
    Ipsec,
    Wireguard,
    Vrrp,
    Conntrackd,
}

/// Collections by the names the CLI accepts, and their API paths.
const KINDS: &[(&str, &[&str], &str)] = &[
    (
        "ingress-rules",
        &["ingress", "ingress-rule", "ingress_rules"],
        "/v1/ingress-rules",
    ),
    (
        "egress-rules",
        &["egress", "egress-rule", "egress_rules"],
        "/v1/egress-rules",
    ),
    (
        "nat-rules",
        &["nat", "nat-rule", "nat_rules"],
        "/v1/nat-rules",
    ),
    (
        "vpc-peerings",
        &["vpc-peering", "peering", "peerings", "vpc_peerings"],
        "/v1/vpc-peerings",
    ),
    (
        "ipsec",
        &["ipsec-connection", "ipsec-connections"],
        "/v1/ipsec",
    ),
    (
        "wireguard-peers",
        &["peer", "peers", "wireguard-peer", "vpn-peers"],
        "/v1/wireguard/peers",
    ),
    ("pipes", &["pipe"], "/v1/pipes"),
    ("routes", &["route"], "/v1/routes"),
];

fn kind_path(kind: &str) -> anyhow::Result<&'static str> {
    KINDS
        .iter()
        .find(|(name, aliases, _)| *name == kind || aliases.contains(&kind))
        .map(|k| k.2)
        .ok_or_else(|| {
            let names: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
            anyhow::anyhow!("unknown kind {kind:?}; use gateway, {}", names.join(", "))
        })
}

#[derive(Debug)]
pub struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

struct Reply {
    status: u16,
    etag: Option<u64>,
    body: String,
}

/// How the client commands reach an API served over TLS (`--api https://...`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsOptions {
    /// PEM CA certificate(s) that signed the API's certificate (default: the public web roots).
    #[arg(long, global = true, env = "KAWAII_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for an API with `[api] client_ca_file`.
    #[arg(
        long,
        global = true,
        env = "KAWAII_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(
        long,
        global = true,
        env = "KAWAII_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    fn config(&self) -> anyhow::Result<ureq::tls::TlsConfig> {
        use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("{}", p.display()));
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &self.ca_cert {
            let pem = read(ca)?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                bail!("--ca-cert {}: no PEM certificate in it", ca.display());
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let chain = Certificate::from_pem(&read(cert)?)
                .with_context(|| format!("--client-cert {}", cert.display()))?;
            let key = PrivateKey::from_pem(&read(key)?).map_err(|_| {
                anyhow::anyhow!("--client-key {}: no PEM private key", key.display())
            })?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&[chain], key)));
        }
        Ok(tls.build())
    }
}

impl Api {
    pub fn new(base: &str, token: Option<String>, tls: &TlsOptions) -> anyhow::Result<Api> {
        let token = token.or_else(default_token);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls.config()?)
            .build()
            .into();
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        if_match: Option<u64>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(rev) = if_match {
            req = req.header("If-Match", format!("\"{rev}\""));
        }
        let result = match body {
            Some(b) => self
                .agent
                .run(req.header("Content-Type", "application/json").body(b)?),
            None => self.agent.run(req.body(())?),
        };
        let mut resp =
            result.with_context(|| format!("cannot reach the kawaii API at {}", self.base))?;
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok());
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Ok(Reply { status, etag, body })
    }

    /// Calls and turns an error status into one line per field error.
    fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        if_match: Option<u64>,
    ) -> anyhow::Result<Reply> {
        let r = self.call(method, path, body, if_match)?;
        if r.status >= 400 {
            let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let details = v
                .get("details")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if details.is_empty() {
                let msg = v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or(r.body.trim());
                bail!("{} ({})", msg, r.status);
            }
            let lines: Vec<String> = details
                .iter()
                .map(|d| {
                    format!(
                        "{}: {}",
                        d["path"].as_str().unwrap_or("?"),
                        d["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            bail!("{}", lines.join("\n"));
        }
        Ok(r)
    }

    pub fn get(
        &self,
        kind: Option<&str>,
        name: Option<&str>,
        output: Output,
    ) -> anyhow::Result<ExitCode> {
        match kind {
            None | Some("gateway") => {
                let r = self.ok("GET", "/v1/gateway", None, None)?;
                let v: Value = serde_json::from_str(&r.body)?;
                let doc = &v["gateway"];
                match output {
                    Output::Table => {
                        println!("revision {}", v["revision"]);
                        for (field, value) in doc.as_object().into_iter().flatten() {
                            let n = value
                                .as_array()
                                .map(|a| a.len().to_string())
                                .unwrap_or_else(|| "set".into());
                            println!("  {field}: {n}");
                        }
                    }
                    other => print_value(doc, other)?,
                }
            }
            Some(kind) => {
                let base = kind_path(kind)?;
                let path = match name {
                    Some(n) => format!("{base}/{}", urlencode(n)),
                    None => base.to_string(),
                };
                let r = self.ok("GET", &path, None, None)?;
                let v: Value = serde_json::from_str(&r.body)?;
                match output {
                    Output::Table => print_table(&v),
                    other => print_value(&v, other)?,
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn apply(&self, file: &Path) -> anyhow::Result<ExitCode> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if let Some(peers) = kawaii_model::dropin::kilo_peers(&text) {
            let peers = peers.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for p in peers {
                let body = kawaii_model::Secret::reveal(|| serde_json::to_string(&p))?;
                let path = format!("/v1/wireguard/peers/{}", urlencode(&p.name));
                // Create or replace: a Kilo manifest is applied like `kubectl apply`.
                let r = self.call("GET", &path, None, None)?;
                let (verb, r) = if r.status == 404 {
                    (
                        "created",
                        self.ok("POST", "/v1/wireguard/peers", Some(body), None)?,
                    )
                } else {
                    ("configured", self.ok("PUT", &path, Some(body), None)?)
                };
                println!(
                    "peer {} {verb} (revision {})",
                    p.name,
                    r.etag.map(|e| e.to_string()).unwrap_or_default()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        let loaded = config::load(file).map_err(config::error_lines)?;
        let body = kawaii_model::Secret::reveal(|| serde_json::to_string(&loaded.gateway))?;
        let cur = self.ok("GET", "/v1/gateway", None, None)?;
        let rev = cur.etag.context("the API sent no revision")?;
        let r = self.ok("PUT", "/v1/gateway", Some(body), Some(rev))?;
        println!(
            "applied {} (revision {})",
            file.display(),
            r.etag.unwrap_or(rev)
        );
        Ok(ExitCode::SUCCESS)
    }

    pub fn delete(&self, kind: &str, name: &str) -> anyhow::Result<ExitCode> {
        let path = format!("{}/{}", kind_path(kind)?, urlencode(name));
        let r = self.ok("DELETE", &path, None, None)?;
        println!(
            "deleted {kind} {name} (revision {})",
            r.etag.map(|e| e.to_string()).unwrap_or_default()
        );
        Ok(ExitCode::SUCCESS)
    }

    pub fn status(&self, output: Output) -> anyhow::Result<ExitCode> {
        let r = self.ok("GET", "/v1/status", None, None)?;
        let v: Value = serde_json::from_str(&r.body)?;
        if output != Output::Table {
            print_value(&v, output)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "gateway {}  zone {}  desired revision {}  applied {}  {}",
            v["gateway"].as_str().unwrap_or("?"),
            v["zone"].as_str().unwrap_or("-"),
            v["desired_revision"],
            v["applied_revision"],
            if v["ready"].as_bool() == Some(true) {
                "ready"
            } else {
                "NOT READY"
            }
        );
        if let Some(store) = v["store"].as_object() {
            let up = store.get("up").and_then(Value::as_bool) == Some(true);
            let age = store
                .get("seconds_since_sync")
                .and_then(Value::as_f64)
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "never".into());
            println!(
                "store {}  {}  last sync {age} ago{}",
                store.get("backend").and_then(Value::as_str).unwrap_or("?"),
                if up { "up" } else { "DOWN" },
                store
                    .get("error")
                    .and_then(Value::as_str)
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
        if let Some(drivers) = v["drivers"].as_array().filter(|d| !d.is_empty()) {
            println!("\ndrivers");
            print_table(&Value::Array(drivers.clone()));
        }
        if let Some(rejected) = v["rejected_config"].as_array().filter(|d| !d.is_empty()) {
            println!("\nconfig file rejected (the running state stays):");
            for e in rejected {
                println!(
                    "  {}: {}",
                    e["path"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("?")
                );
            }
        }
        for (section, value) in v["details"].as_object().into_iter().flatten() {
            println!("\n{section}");
            match value {
                Value::Array(_) => print_table(value),
                other => println!("{}", serde_json::to_string_pretty(other)?),
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn audit(&self, limit: usize, output: Output) -> anyhow::Result<ExitCode> {
        let r = self.ok("GET", &format!("/v1/audit?limit={limit}"), None, None)?;
        let v: Value = serde_json::from_str(&r.body)?;
        if output != Output::Table {
            print_value(&v, output)?;
            return Ok(ExitCode::SUCCESS);
        }
        for e in v.as_array().into_iter().flatten() {
            println!(
                "{}  rev {:<4} {:<20} {}",
                e["at"].as_str().unwrap_or("?"),
                e["revision"],
                e["actor"].as_str().unwrap_or("?"),
                e["action"].as_str().unwrap_or("?")
            );
            for c in e["changes"].as_array().into_iter().flatten() {
                println!(
                    "    {:<8} {}",
                    c["op"].as_str().unwrap_or("?"),
                    c["path"].as_str().unwrap_or("?")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn showconf(&self, name: &str, output: ShowconfOutput) -> anyhow::Result<ExitCode> {
        let format = match output {
            ShowconfOutput::Wireguard => "wireguard",
            ShowconfOutput::Json => "json",
            ShowconfOutput::Yaml => "yaml",
        };
        let r = self.ok(
            "GET",
            &format!(
                "/v1/wireguard/peers/{}/config?format={format}",
                urlencode(name)
            ),
            None,
            None,
        )?;
        print!("{}", r.body);
        Ok(ExitCode::SUCCESS)
    }
}

/// The bootstrap token a local daemon wrote, when this user may read it.
fn default_token() -> Option<String> {
    let dir = std::env::var("KAWAII_STATE").unwrap_or_else(|_| "/var/lib/kawaii".into());
    std::fs::read_to_string(Path::new(&dir).join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print_value(v: &Value, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json | Output::Table => println!("{}", serde_json::to_string_pretty(v)?),
        Output::Yaml => print!("{}", yaml_serde::to_string(v)?),
        Output::Toml => match v {
            Value::Object(_) => print!("{}", toml::to_string_pretty(v)?),
            Value::Array(items) => {
                // A bare list is not a TOML document: wrap it as `[[items]]`.
                let doc = serde_json::json!({ "items": items });
                print!("{}", toml::to_string_pretty(&doc)?)
            }
            other => println!("{other}"),
        },
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// A table from a list of objects (or one object), one column per field seen.
fn print_table(v: &Value) {
    let rows: Vec<&serde_json::Map<String, Value>> = match v {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(o) => vec![o],
        _ => Vec::new(),
    };
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut columns: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(columns.iter().map(|c| c.to_uppercase()));
    for r in rows {
        t.add_row(
            columns
                .iter()
                .map(|c| r.get(c).map(cell).unwrap_or_else(|| "-".into())),
        );
    }
    println!("{t}");
}

/// Plans locally from a config file and prints the requested parts.
pub fn render(file: &Path, zone: Option<&str>, what: RenderWhat) -> anyhow::Result<ExitCode> {
    let (mut loaded, _) = config::load_valid(file).map_err(config::error_lines)?;
    // As a first commit to an empty store would: rule ids and VPN addresses filled in.
    loaded
        .gateway
        .prepare_commit(&kawaii_model::Gateway::default());
    let report = kawaii_model::validate(&loaded.gateway).map_err(|e| config::error_lines(e.0))?;
    let plan = kawaii_plan::plan(&report.desired, zone)?;
    match what {
        RenderWhat::All => println!("{}", serde_json::to_string_pretty(&plan)?),
        RenderWhat::Nftables => match &plan.nftables {
            Some(t) => print!("{}", t.render()),
            None => bail!("this node has no zone, so no firewall of its own"),
        },
        RenderWhat::Routes => print!("{}", plan.net.render()),
        RenderWhat::Ipsec => println!("{}", serde_json::to_string_pretty(&plan.ipsec)?),
        RenderWhat::Vrrp => print!("{}", kawaii_plan::vrrp::render(&plan.vrrp)),
        RenderWhat::Conntrackd => match &plan.conntrackd {
            Some(c) => print!(
                "{}",
                kawaii_plan::conntrackd::render(c, "/var/lib/kawaii/conntrackd")
            ),
            None => bail!("no connection-state sync: no HA, or [ha] conntrack_sync = false"),
        },
        RenderWhat::Wireguard => match &plan.wireguard {
            Some(w) => print!("{}", w.render()),
            None => bail!("the config has no [wireguard] section"),
        },
    }
    Ok(ExitCode::SUCCESS)
}
