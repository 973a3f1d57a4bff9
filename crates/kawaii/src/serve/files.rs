//! The files `serve` reads: the config file (applied when its content changed since it was last
//! applied, on SIGHUP, and when it changes on disk) and the API tokens (the document's, a token
//! file's, or a bootstrap admin token written once under the state directory).

use super::app::App;
use super::wake::Wake;
use crate::config;
use kawaii_model::valid::{Role, TokenSpec};
use kawaii_model::{Desired, FieldError, Gateway};
use kawaii_store::Actor;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

const FILE_HASH_KEY: &str = "config_file_sha256";
const BOOTSTRAP_TOKEN: &str = "admin.token";
/// How often the config file's content is compared with what was last read.
const POLL: Duration = Duration::from_millis(250);

/// Applies the config file if its content differs from the last file applied. Returns whether
/// it committed a new revision; errors leave the state untouched.
pub async fn apply_file(app: &App) -> Result<bool, Vec<FieldError>> {
    let file = &app.settings.config;
    let reloads = |result: &str| {
        app.metrics
            .config_reloads
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    };
    let (loaded, report) = match config::load_valid(file) {
        Ok(ok) => ok,
        Err(errors) => {
            for e in &errors {
                error!(file = %file.display(), %e, "config rejected; the running state stays");
            }
            reloads("rejected");
            app.api
                .update_status(|s| s.rejected_config = errors.clone());
            return Err(errors);
        }
    };
    let (doc, zone) = (loaded.gateway.clone(), app.settings.zone.clone());
    let machine = tokio::task::spawn_blocking(move || config::machine(&doc, zone.as_deref()))
        .await
        .unwrap_or_default();
    for w in report.warnings.iter().chain(&machine) {
        warn!(file = %file.display(), %w, "config warning");
    }
    app.api.update_status(|s| s.rejected_config.clear());
    let hash = hex::encode(Sha256::digest(&loaded.bytes));
    let store = app.store.clone();
    let actor = Actor {
        name: format!("file:{}", file.display()),
        action: "config file applied".into(),
    };
    let mut gateway: Gateway = loaded.gateway;
    let store_error = |e: String| vec![FieldError::new("(store)", e)];
    let outcome = tokio::task::spawn_blocking(move || -> Result<bool, Vec<FieldError>> {
        let err = |e: kawaii_store::StoreError| store_error(e.to_string());
        if store.get_meta(FILE_HASH_KEY).map_err(err)?.as_deref() == Some(hash.as_str()) {
            return Ok(false);
        }
        let cur = store.current().map_err(err)?;
        gateway.prepare_commit(&cur.gateway);
        // What the server filled in (VPN addresses) must still be valid.
        kawaii_model::validate(&gateway).map_err(|e| e.0)?;
        // The file's hash is kept with the document, in the same transaction: instances that
        // read the same file never apply it twice.
        let rev = store
            .commit_with_meta(None, &gateway, &actor, &[(FILE_HASH_KEY, &hash)])
            .map_err(err)?;
        Ok(rev != cur.revision)
    })
    .await
    .unwrap_or_else(|e| Err(store_error(e.to_string())));
    match outcome {
        Ok(changed) => {
            if changed {
                info!(file = %file.display(), "config file applied");
                app.wakes.send(Wake::File);
            }
            reloads("applied");
            Ok(changed)
        }
        Err(errors) => {
            for e in &errors {
                error!(%e, "storing the config file failed");
            }
            Err(errors)
        }
    }
}

/// Polls the config file (content hash) and reacts to `reload` (SIGHUP) until `stop`.
pub async fn watch(app: Arc<App>, reload: Arc<Notify>, stop: CancellationToken) {
    let read = || {
        std::fs::read(&app.settings.config)
            .ok()
            .map(|b| Sha256::digest(&b))
    };
    let mut last = read();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {
                let now = read();
                if now.is_some() && now != last {
                    last = now;
                    info!(file = %app.settings.config.display(), "config file changed");
                    let _ = apply_file(&app).await;
                }
            }
            _ = reload.notified() => {
                last = read();
                let _ = apply_file(&app).await;
            }
            _ = stop.cancelled() => break,
        }
    }
}

/// Tokens from the document, the token file, and (when none is configured) the bootstrap
/// token under the state directory.
pub fn refresh_tokens(app: &App, d: &Desired) {
    let mut tokens = d.api.tokens.clone();
    if let Some(file) = &d.api.token_file {
        match read_token_file(Path::new(file)) {
            Ok(more) => tokens.extend(more),
            Err(e) => warn!(file, %e, "token file unreadable; its tokens are not accepted"),
        }
    }
    if tokens.is_empty() {
        match bootstrap_token(&app.settings.state_dir) {
            Ok(hash) => tokens.push(TokenSpec {
                name: "bootstrap".into(),
                role: Role::Admin,
                sha256: hash,
            }),
            Err(e) => warn!(%e, "cannot write the bootstrap token; the API accepts no token"),
        }
    }
    app.api.set_tokens(tokens);
}

/// `name role sha256hex` per line; `#` comments.
fn read_token_file(path: &Path) -> anyhow::Result<Vec<TokenSpec>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(role), Some(hash)) = (
            f.first(),
            f.get(1).and_then(|r| Role::parse(r)),
            f.get(2).and_then(|h| kawaii_model::valid::sha256_hex(h)),
        ) else {
            anyhow::bail!("line {}: expected `name role sha256hex`", n + 1);
        };
        out.push(TokenSpec {
            name: name.to_string(),
            role,
            sha256: hash,
        });
    }
    Ok(out)
}

/// Creates (once) a random admin token in `STATE/admin.token`, mode 0600; returns its hash.
fn bootstrap_token(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join(BOOTSTRAP_TOKEN);
    let token = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 24];
            rand::fill(&mut bytes);
            let token = hex::encode(bytes);
            crate::keys::write_private(&path, &token)?;
            info!(path = %path.display(), "no API token configured: wrote a bootstrap admin token");
            token
        }
    };
    Ok(kawaii_api::hash_token(&token))
}
