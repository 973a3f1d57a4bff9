//! Serves the API on the desired listen address, and moves it when the address changes.

use super::app::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A listener that is serving: its address and its own stop.
struct Serving {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Runs until `stop`; then the listener stops and open requests get up to 5 s.
pub async fn run(app: Arc<App>, stop: CancellationToken) {
    let mut revisions = app.store.watch();
    let mut current: Option<Serving> = None;
    loop {
        let want = app
            .store
            .current()
            .ok()
            .and_then(|s| kawaii_model::validate(&s.gateway).ok())
            .map(|r| r.desired.api.listen);
        if let Some(addr) = want
            && current.as_ref().map(|c| c.addr) != Some(addr)
        {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    info!(%addr, "API listening");
                    let own = stop.child_token();
                    let app_router = kawaii_api::router(app.api.clone());
                    let done = own.clone();
                    let task = tokio::spawn(async move {
                        let _ = axum::serve(listener, app_router)
                            .with_graceful_shutdown(done.cancelled_owned())
                            .await;
                    });
                    let next = Serving {
                        addr,
                        stop: own,
                        task,
                    };
                    if let Some(old) = current.replace(next) {
                        info!(old = %old.addr, "API moved; closing the old listener");
                        old.stop.cancel();
                    }
                }
                Err(e) => error!(%addr, %e, "API cannot listen; keeping the previous listener"),
            }
        }
        tokio::select! {
            r = revisions.changed() => if r.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    if let Some(s) = current {
        s.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.task).await;
    }
}
