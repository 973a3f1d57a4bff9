//! Serves the API on the desired listen address (over TLS when `[api]` says so), and moves it
//! when the address, the TLS files or the listener's limits change. The handlers' policy
//! (`metrics_auth`, the rate and body limits) follows every revision.

use super::app::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// What a listener is built from: a change to any of it rebinds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    addr: SocketAddr,
    tls: Option<kawaii_model::valid::ApiTls>,
    limits: kawaii_model::valid::ApiLimits,
}

/// A listener that is serving: what it was built from and its own stop.
struct Serving {
    want: Want,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Runs until `stop`; then the listener stops and open requests get up to 5 s.
pub async fn run(app: Arc<App>, stop: CancellationToken) {
    let mut revisions = app.store.watch();
    let mut current: Option<Serving> = None;
    loop {
        let api = app
            .store
            .current()
            .ok()
            .and_then(|s| kawaii_model::validate(&s.gateway).ok())
            .map(|r| r.desired.api);
        if let Some(api) = &api {
            app.api.set_policy(api.metrics_auth, api.limits);
        }
        let want = api.map(|a| Want {
            addr: a.listen,
            tls: a.tls,
            limits: a.limits,
        });
        if let Some(want) = want
            && current.as_ref().map(|c| &c.want) != Some(&want)
        {
            // Same address, new TLS or limits: the old listener must let go of it first.
            if current.as_ref().is_some_and(|c| c.want.addr == want.addr)
                && let Some(old) = current.take()
            {
                info!(addr = %want.addr, "API settings changed; rebinding");
                old.stop.cancel();
            }
            if let Some(next) = listen(&app, &want, &stop).await
                && let Some(old) = current.replace(next)
            {
                info!(old = %old.want.addr, "API moved; closing the old listener");
                old.stop.cancel();
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

/// Binds and serves `want`; None (logged, the previous listener stays) when it cannot.
async fn listen(app: &Arc<App>, want: &Want, stop: &CancellationToken) -> Option<Serving> {
    let addr = want.addr;
    let tls = match want.tls.as_ref().map(kawaii_api::tls_acceptor).transpose() {
        Ok(t) => t,
        Err(e) => {
            error!(%addr, %e, "API cannot serve TLS; keeping the previous listener");
            return None;
        }
    };
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            // A listener just told to stop may hold the address a moment longer.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                error!(%addr, %e, "API cannot listen; keeping the previous listener");
                return None;
            }
        }
    };
    info!(%addr, tls = tls.is_some(), "API listening");
    let own = stop.child_token();
    let router = kawaii_api::router(app.api.clone());
    let state = app.api.clone();
    let done = own.clone();
    let task = tokio::spawn(kawaii_api::serve(
        listener,
        router,
        state,
        tls,
        done.cancelled_owned(),
    ));
    Some(Serving {
        want: want.clone(),
        stop: own,
        task,
    })
}
