//! The API listener: HTTP/1.1, over TLS when `[api]` names a certificate (and, with a client
//! CA, only for clients holding a certificate it signed), within the `[api]` limits: open
//! connections (more are closed at accept), the request head's size, the TLS handshake and the
//! request head's deadline (slowloris), and an idle timeout. Every refusal is counted in
//! `kawaii_api_limited_total{limit}`. Body size and the per-token rate are the router's.

use crate::error::ApiError;
use crate::state::ApiState;
use kawaii_model::valid::{ApiLimits, ApiTls};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// A TLS acceptor from `[api]`'s PEM files. The key file is refused when others may read it.
pub fn tls_acceptor(tls: &ApiTls) -> Result<TlsAcceptor, ApiError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let setup = |field: &str, path: &str, e: &dyn std::fmt::Display| {
        ApiError::Setup(format!("api.{field} {path}: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setup("tls_cert_file", &tls.cert_file, &e))?;
    if certs.is_empty() {
        return Err(setup(
            "tls_cert_file",
            &tls.cert_file,
            &"no certificate in it",
        ));
    }
    let key_pem = kawaii_drivers::secret_file::read("api.tls_key_file", &tls.key_file)
        .map_err(ApiError::Setup)?;
    // The parser's message could quote the file: say only that it is not a key.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| setup("tls_key_file", &tls.key_file, &"no PEM private key in it"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Setup(format!("TLS: {e}")))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| setup("client_ca_file", ca, &e))?
            {
                let cert = cert.map_err(|e| setup("client_ca_file", ca, &e))?;
                roots
                    .add(cert)
                    .map_err(|e| setup("client_ca_file", ca, &e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| setup("client_ca_file", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| setup("tls_key_file", &tls.key_file, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `stop` completes; then open connections finish their
/// request and close (given up to 5 s).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    state: ApiState,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) {
    let limits = state.limits();
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    // One warning per run of refusals, not one per connection.
    let mut refusing = false;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: the listener stays, the next accept may succeed.
                    warn!(%error, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.count_limited("connections");
            if !refusing {
                warn!(max_connections = limits.max_connections, %peer,
                    "API connection limit reached; closing new connections");
            }
            refusing = true;
            drop(stream);
            continue;
        };
        refusing = false;
        let conn = Conn {
            router: router.clone(),
            state: state.clone(),
            tls: tls.clone(),
            limits,
            closing: closing.subscribe(),
        };
        tokio::spawn(async move {
            conn.run(stream, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let all = slots.acquire_many(limits.max_connections);
    let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    info!("API listener closed");
}

/// One accepted connection and what it needs.
struct Conn {
    router: axum::Router,
    state: ApiState,
    tls: Option<TlsAcceptor>,
    limits: ApiLimits,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    async fn run(self, stream: TcpStream, peer: std::net::SocketAddr) {
        let _ = stream.set_nodelay(true);
        let io = Idle::new(stream, self.limits.idle_timeout, self.state.clone());
        match self.tls.clone() {
            None => self.http(io, peer).await,
            Some(acceptor) => {
                match tokio::time::timeout(self.limits.header_timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => self.http(tls, peer).await,
                    Ok(Err(error)) => debug!(%peer, %error, "API TLS handshake failed"),
                    Err(_) => {
                        self.state.count_limited("header_timeout");
                        debug!(%peer, "API TLS handshake timed out");
                    }
                }
            }
        }
    }

    async fn http<I>(self, io: I, peer: std::net::SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size((self.limits.max_header_bytes as usize).max(8192))
            .max_header_size(self.limits.max_header_bytes as usize);
        let conn = builder
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let mut closing = self.closing.clone();
        let closing = async move {
            let _ = closing.wait_for(|c| *c).await;
        };
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = closing => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            let idle = std::error::Error::source(&error)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
            if error.is_timeout() && !idle {
                self.state.count_limited("header_timeout");
            }
            debug!(%peer, %error, "API connection closed");
        }
    }
}

/// A stream that fails with `TimedOut` when neither direction moved a byte for `limit`
/// (counted once, as `idle_timeout`).
struct Idle<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Counts the expiry; None once counted.
    state: Option<ApiState>,
}

impl<S> Idle<S> {
    fn new(inner: S, limit: Duration, state: ApiState) -> Idle<S> {
        Idle {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            state: Some(state),
        }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(next);
    }

    /// Pending I/O: an error once the deadline passed, else pending (woken by either).
    fn expired<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if let Some(state) = self.state.take() {
                    state.count_limited("idle_timeout");
                }
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.expired(cx),
            ready => {
                this.moved();
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Pending => this.expired(cx),
            ready => {
                this.moved();
                ready
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
