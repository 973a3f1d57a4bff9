//! The command-line client of the API (`get`, `apply`, `delete`, `status`, `audit`,
//! `peer showconf`) and `render`, which plans locally without a daemon. What it prints is made
//! by [`crate::output`]; this module talks to the API and finds the token.

use crate::output::{self, AuditOutput, GetOutput, StatusOutput, Target};
use crate::{ShowconfOutput, config};
use anyhow::{Context, bail};
use clap::ValueEnum;
use serde_json::Value;
use std::io::Write;
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

/// Where the client's bearer token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFrom {
    Flag,
    Env,
    File(PathBuf),
}

impl std::fmt::Display for TokenFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenFrom::Flag => f.write_str("--token"),
            TokenFrom::Env => f.write_str("KAWAII_TOKEN"),
            TokenFrom::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The token the client sends, and where it looked for one (for the error when there is none).
#[derive(Clone)]
pub struct Token {
    value: Option<String>,
    from: Option<TokenFrom>,
    /// The daemon's bootstrap token file, and why it gave no token (when it did not).
    file: PathBuf,
    file_problem: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &self.value.as_ref().map(|_| "(redacted)"))
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// `--token`, else `KAWAII_TOKEN`, else the bootstrap token file under `KAWAII_STATE`
    /// (default `/var/lib/kawaii`) when this user may read it.
    pub fn find(flag: Option<String>) -> Token {
        let state = std::env::var_os("KAWAII_STATE").unwrap_or_else(|| "/var/lib/kawaii".into());
        let file = Path::new(&state).join("admin.token");
        let mut token = Token {
            value: None,
            from: None,
            file: file.clone(),
            file_problem: None,
        };
        let env = std::env::var("KAWAII_TOKEN").ok();
        if let Some((value, from)) = flag
            .map(|t| (t, TokenFrom::Flag))
            .or_else(|| env.map(|t| (t, TokenFrom::Env)))
        {
            token.value = Some(value.trim().to_string());
            token.from = Some(from);
            return token;
        }
        match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => {
                token.value = Some(t.trim().to_string());
                token.from = Some(TokenFrom::File(file));
            }
            Ok(_) => token.file_problem = Some("is empty".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                token.file_problem = Some("does not exist".into());
            }
            Err(e) => token.file_problem = Some(format!("cannot be read ({e})")),
        }
        token
    }

    /// What to say when the API refused the request as unauthenticated.
    fn refused(&self, base: &str, msg: &str) -> String {
        match &self.from {
            None => format!(
                "{msg} (401): no token was given. The CLI looked for one in --token, in \
                 KAWAII_TOKEN (not set) and in {file} ({problem}; KAWAII_STATE sets the state \
                 directory).\nPass one with --token TOKEN or KAWAII_TOKEN=TOKEN (an [api] \
                 token of the gateway), or on the gateway run the CLI as a user who may read \
                 {file} (e.g. sudo kawaii ...).",
                file = self.file.display(),
                problem = self.file_problem.as_deref().unwrap_or("no token"),
            ),
            Some(from) => format!(
                "{msg} (401): the API at {base} does not know the token from {from}.\nUse a \
                 token of that gateway's [api] tokens or token_file, or its bootstrap token \
                 (STATE/admin.token on that gateway; KAWAII_STATE sets STATE)."
            ),
        }
    }
}

#[derive(Debug)]
pub struct Api {
    base: String,
    token: Token,
    agent: ureq::Agent,
}

struct Reply {
    status: u16,
    etag: Option<u64>,
    body: String,
}

/// Writes to stdout; a reader that went away (`kawaii status | head -1`) comes back as a
/// `BrokenPipe` error, which `main` ends on quietly.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The `warnings` of a write's answer (e.g. a port forwarded that no ingress rule opens), one
/// line each: `path: reason`.
fn warnings(body: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(
            |w| match (w["path"].as_str(), w["reason"].as_str(), w.as_str()) {
                (Some(p), Some(r), _) => format!("{p}: {r}"),
                (_, _, Some(s)) => s.to_string(),
                _ => w.to_string(),
            },
        )
        .collect()
}

fn print_warnings(body: &str) {
    for w in warnings(body) {
        eprintln!("warning: {w}");
    }
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
    pub fn new(base: &str, token: Token, tls: &TlsOptions) -> anyhow::Result<Api> {
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
        if let Some(t) = &self.token.value {
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
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or(r.body.trim());
            if r.status == 401 {
                bail!("{}", self.token.refused(&self.base, msg));
            }
            if details.is_empty() {
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

    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.ok("GET", path, None, None)?;
        serde_json::from_str(&r.body).with_context(|| format!("the API's answer to GET {path}"))
    }

    pub fn get(
        &self,
        kind: Option<&str>,
        name: Option<&str>,
        output: GetOutput,
    ) -> anyhow::Result<ExitCode> {
        match output::target(kind, name)? {
            Target::Gateway => emit(&output::gateway(&self.get_json("/v1/gateway")?, output)?)?,
            Target::Kind(kind, name) => {
                let path = match name {
                    Some(n) => format!("{}/{}", kind.path, urlencode(n)),
                    None => kind.path.to_string(),
                };
                let v = self.get_json(&path)?;
                let text = output::collection(kind, &v, output)?;
                if text.is_empty() {
                    eprintln!("No {} found.", kind.name);
                }
                emit(&text)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Applies a file (`-` for stdin): a gateway document replaces the desired state; Kilo
    /// `Peer` manifests create or replace those peers. Says `unchanged` when the store kept its
    /// revision (it commits nothing for an identical document).
    pub fn apply(&self, file: &Path) -> anyhow::Result<ExitCode> {
        let (file, text) = read_input(file)?;
        if let Some(peers) = kawaii_model::dropin::kilo_peers(&text) {
            let peers = peers.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for p in peers {
                let body = kawaii_model::Secret::reveal(|| serde_json::to_string(&p))?;
                let path = format!("/v1/wireguard/peers/{}", urlencode(&p.name));
                // Create or replace: a Kilo manifest is applied like `kubectl apply`.
                let before = self.call("GET", &path, None, None)?;
                let (r, verb) = if before.status == 404 {
                    let r = self.ok("POST", "/v1/wireguard/peers", Some(body), None)?;
                    (r, "created")
                } else {
                    let r = self.ok("PUT", &path, Some(body), None)?;
                    let same = before.status == 200 && r.etag.is_some() && r.etag == before.etag;
                    (r, if same { "unchanged" } else { "configured" })
                };
                print_warnings(&r.body);
                emit(&format!(
                    "wireguard-peer/{} {verb} (revision {})\n",
                    p.name,
                    r.etag.map(|e| e.to_string()).unwrap_or_default()
                ))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let gateway = config::parse(&file, &text).map_err(|e| {
            let lines: Vec<String> = e
                .details()
                .iter()
                .map(|d| config::located(&file, d))
                .collect();
            anyhow::anyhow!("{}", lines.join("\n"))
        })?;
        let body = kawaii_model::Secret::reveal(|| serde_json::to_string(&gateway))?;
        let cur = self.ok("GET", "/v1/gateway", None, None)?;
        let rev = cur.etag.context("the API sent no revision")?;
        let r = self.ok("PUT", "/v1/gateway", Some(body), Some(rev))?;
        print_warnings(&r.body);
        let now = r.etag.context("the API sent no revision")?;
        // The store commits nothing, and keeps its revision, when the document is the same.
        let verb = if now == rev {
            "unchanged"
        } else {
            "configured"
        };
        emit(&format!(
            "gateway/{} {verb} (revision {now})\n",
            gateway.gateway.name
        ))?;
        Ok(ExitCode::SUCCESS)
    }

    pub fn delete(&self, kind: &str, name: Option<&str>) -> anyhow::Result<ExitCode> {
        let Target::Kind(kind, Some(name)) = output::target(Some(kind), name)? else {
            bail!("delete takes KIND NAME or KIND/NAME (the gateway itself cannot be deleted)");
        };
        let path = format!("{}/{}", kind.path, urlencode(name));
        let r = self.ok("DELETE", &path, None, None)?;
        emit(&format!(
            "{}/{name} deleted (revision {})\n",
            kind.singular,
            r.etag.map(|e| e.to_string()).unwrap_or_default()
        ))?;
        Ok(ExitCode::SUCCESS)
    }

    pub fn status(&self, output: StatusOutput) -> anyhow::Result<ExitCode> {
        let v = self.get_json("/v1/status")?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        emit(&match output {
            StatusOutput::Table => output::status(&v, false, now_ms),
            StatusOutput::Wide => output::status(&v, true, now_ms),
            StatusOutput::Json => output::serialized(&v, "json")?,
            StatusOutput::Yaml => output::serialized(&v, "yaml")?,
        })?;
        Ok(ExitCode::SUCCESS)
    }

    pub fn audit(&self, limit: usize, output: AuditOutput) -> anyhow::Result<ExitCode> {
        let v = self.get_json(&format!("/v1/audit?limit={limit}"))?;
        emit(&match output {
            AuditOutput::Table => output::audit(&v),
            AuditOutput::Json => output::serialized(&v, "json")?,
            AuditOutput::Yaml => output::serialized(&v, "yaml")?,
        })?;
        Ok(ExitCode::SUCCESS)
    }

    /// `ipv6`: the zone's IPv6 VIP as `Endpoint`.
    pub fn showconf(
        &self,
        name: &str,
        output: ShowconfOutput,
        ipv6: bool,
    ) -> anyhow::Result<ExitCode> {
        let format = match output {
            ShowconfOutput::Wireguard => "wireguard",
            ShowconfOutput::Json => "json",
            ShowconfOutput::Yaml => "yaml",
        };
        let r = self.ok(
            "GET",
            &format!(
                "/v1/wireguard/peers/{}/config?format={format}{}",
                urlencode(name),
                if ipv6 { "&endpoint=ipv6" } else { "" }
            ),
            None,
            None,
        )?;
        emit(&r.body)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The file's text, or stdin's for `-`; with the name its format is told by (stdin's by its
/// content: `{` is JSON, a Cloud-Gateway `conf.yaml` is YAML, anything else TOML).
fn read_input(file: &Path) -> anyhow::Result<(PathBuf, String)> {
    if file != Path::new("-") {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return Ok((file.to_path_buf(), text));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("cannot read stdin")?;
    let name = if text.trim_start().starts_with('{') {
        "(stdin).json"
    } else if kawaii_model::dropin::cloud_gateway(&text).is_some() {
        "(stdin).yaml"
    } else {
        "(stdin)"
    };
    Ok((PathBuf::from(name), text))
}

fn urlencode(s: &str) -> String {
    kawaii_api::urlencode(s)
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
    let text = match what {
        RenderWhat::All => format!("{}\n", serde_json::to_string_pretty(&plan)?),
        RenderWhat::Nftables => match &plan.nftables {
            Some(t) => t.render(),
            None => bail!("this node has no zone, so no firewall of its own"),
        },
        RenderWhat::Routes => plan.net.render(),
        RenderWhat::Ipsec => format!("{}\n", serde_json::to_string_pretty(&plan.ipsec)?),
        RenderWhat::Vrrp => kawaii_plan::vrrp::render(&plan.vrrp),
        RenderWhat::Conntrackd => match &plan.conntrackd {
            Some(c) => kawaii_plan::conntrackd::render(c, "/var/lib/kawaii/conntrackd"),
            None => bail!("no connection-state sync: no HA, or [ha] conntrack_sync = false"),
        },
        RenderWhat::Wireguard => match &plan.wireguard {
            Some(w) => w.render(),
            None => bail!("the config has no [wireguard] section"),
        },
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_warnings_print_with_their_paths() {
        let body = r#"{"revision": 3, "gateway": {}, "warnings": [
            {"path": "nat_rules[0]", "reason": "tcp 8081 is forwarded but no ingress rule opens it"},
            "a plain sentence"]}"#;
        assert_eq!(
            super::warnings(body),
            [
                "nat_rules[0]: tcp 8081 is forwarded but no ingress rule opens it",
                "a plain sentence"
            ]
        );
        assert!(super::warnings(r#"{"revision": 3}"#).is_empty());
        assert!(super::warnings("not json").is_empty());
    }
}
