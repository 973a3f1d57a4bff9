//! Serves a `RouterConfig` from a TOML file: `cargo run --release -p kawaii-proxy --example
//! router -- router.toml`. SIGHUP reloads the file, SIGUSR1 prints status as JSON, Ctrl-C /
//! SIGTERM drains for 5 s and exits. `RUST_LOG=info,kawaii_proxy::access=info` shows access logs.

use std::time::Duration;

use kawaii_proxy::{DomainRouter, RouterConfig};
use tokio::signal::unix::{SignalKind, signal};

fn load(path: &str) -> anyhow_lite::Result<RouterConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    toml::from_str(&text).map_err(|e| format!("parsing {path}: {e}"))
}

/// Just enough error plumbing for an example without pulling anyhow.
mod anyhow_lite {
    pub type Result<T> = std::result::Result<T, String>;
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: router CONFIG.toml");
        return std::process::ExitCode::from(2);
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let router = DomainRouter::new(Some(&mut registry));
    let apply = |router: DomainRouter, path: String| async move {
        match load(&path) {
            Ok(cfg) => router.apply(cfg).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = apply(router.clone(), path.clone()).await {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let (Ok(mut hup), Ok(mut usr1), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return std::process::ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match apply(router.clone(), path.clone()).await {
                Ok(()) => tracing::info!("reloaded"),
                Err(e) => tracing::error!(error = %e, "reload failed, previous config stays"),
            },
            _ = usr1.recv() => {
                println!("{}", serde_json::to_string_pretty(&router.status()).unwrap_or_default());
                let mut text = String::new();
                if prometheus_client::encoding::text::encode(&mut text, &registry).is_ok() {
                    println!("{text}");
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    router.shutdown(Duration::from_secs(5)).await;
    std::process::ExitCode::SUCCESS
}
