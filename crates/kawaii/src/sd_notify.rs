//! The systemd notification protocol (`sd_notify(3)`), spoken directly: one datagram per state
//! change to the unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). `READY=1` goes once, after the first reconcile pass applied; `WATCHDOG=1` every
//! half `WATCHDOG_USEC` while the runtime is responsive; `STOPPING=1` on the way out. Without
//! `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Where to notify, and how often the watchdog wants a ping.
#[derive(Debug)]
pub struct Systemd {
    socket: Option<SocketAddr>,
    watchdog: Option<Duration>,
    ready_sent: AtomicBool,
}

impl Systemd {
    /// From the environment systemd sets: `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`
    /// (a watchdog meant for another process is ignored).
    pub fn from_env() -> Systemd {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Systemd::new(socket.as_deref(), usec.as_deref(), pid.as_deref())
    }

    /// From the variables' values (None: unset).
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Systemd {
        let socket = socket.and_then(|s| match address(s) {
            Ok(a) => Some(a),
            Err(e) => {
                warn!(%e, socket = s, "NOTIFY_SOCKET is unusable; not notifying systemd");
                None
            }
        });
        let ours = watchdog_pid.is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Systemd {
            socket,
            watchdog,
            ready_sent: AtomicBool::new(false),
        }
    }

    /// `READY=1`, the first time only.
    pub fn ready(&self) {
        if !self.ready_sent.swap(true, Ordering::SeqCst) {
            self.send("READY=1\nSTATUS=first reconcile applied");
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Pings the watchdog every half period until `stop` (returns at once without a watchdog).
    pub async fn watchdog(&self, stop: CancellationToken) {
        let Some(period) = self.watchdog else { return };
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tokio::select! {
                _ = tick.tick() => self.send("WATCHDOG=1"),
                _ = stop.cancelled() => return,
            }
        }
    }

    fn send(&self, message: &str) {
        let Some(addr) = &self.socket else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), addr));
        match sent {
            Ok(_) => debug!(message, "notified systemd"),
            Err(e) => warn!(%e, message, "notifying systemd failed"),
        }
    }
}

/// `/path` or `@abstract-name`.
fn address(socket: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    // Multi-threaded: the test blocks on the socket while the pinger runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_once_then_watchdog_pings_then_stopping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let pid = std::process::id().to_string();
        let sd = Systemd::new(path.to_str(), Some("40000"), Some(&pid));
        sd.ready();
        sd.ready();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=first reconcile applied");
        let stop = CancellationToken::new();
        let pinger = {
            let stop = stop.clone();
            tokio::spawn(async move {
                sd.watchdog(stop).await;
                sd
            })
        };
        // Only pings follow: the second ready() sent nothing.
        for _ in 0..3 {
            assert_eq!(recv(&sock), "WATCHDOG=1");
        }
        stop.cancel();
        let sd = pinger.await.expect("watchdog task");
        // Pings sent before the cancellation may still be queued; then STOPPING=1.
        sd.stopping();
        loop {
            match recv(&sock).as_str() {
                "WATCHDOG=1" => continue,
                last => break assert_eq!(last, "STOPPING=1"),
            }
        }
    }

    #[test]
    fn abstract_sockets_work_and_a_foreign_watchdog_is_ignored() {
        let name = format!("kawaii-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let sd = Systemd::new(Some(&format!("@{name}")), Some("1000000"), Some("1"));
        assert_eq!(sd.watchdog, None, "WATCHDOG_PID names another process");
        sd.ready();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=first reconcile applied");
        // Not under systemd: nothing to do, nothing fails.
        let none = Systemd::new(None, None, None);
        none.ready();
        none.stopping();
        assert!(Systemd::new(Some("relative"), None, None).socket.is_none());
    }
}
