//! Bidirectional forwarding between the client and the backend, with an idle timeout.
//!
//! Contract: [`forward`] copies both directions until both reach EOF (propagating half-close),
//! one fails, nothing moves for `idle`, or `stop` fires. On Linux it uses splice(2) through pipes
//! taken from a [`PipePool`] only while bytes are in flight, so an idle connection holds no pipe
//! descriptor; elsewhere (or if splice is refused) it copies through a small userspace buffer.

use std::io;
use std::net::Shutdown;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[cfg(target_os = "linux")]
use std::os::fd::AsFd;

/// Bytes per splice call (the pipe's capacity).
#[cfg(target_os = "linux")]
const CHUNK: usize = crate::splice::PIPE_SIZE;
/// Idle pipes kept for reuse; more are closed when released.
const POOL_MAX: usize = 64;

/// Reusable empty pipes.
#[derive(Debug, Default)]
pub(crate) struct PipePool {
    #[cfg(target_os = "linux")]
    idle: Mutex<Vec<crate::splice::Pipe>>,
    #[cfg(not(target_os = "linux"))]
    idle: Mutex<Vec<()>>,
}

impl PipePool {
    #[cfg(target_os = "linux")]
    fn get(&self) -> io::Result<crate::splice::Pipe> {
        if let Ok(mut idle) = self.idle.lock()
            && let Some(p) = idle.pop()
        {
            return Ok(p);
        }
        crate::splice::pipe()
    }

    /// Only empty pipes may be returned.
    #[cfg(target_os = "linux")]
    fn put(&self, p: crate::splice::Pipe) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_MAX
        {
            idle.push(p);
        }
    }

    /// Pipes currently parked in the pool.
    pub(crate) fn idle_len(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// How a forwarded connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Closed,
    Idle,
    Stopped,
    Error,
}

/// Counters updated while bytes move (route and backend stats).
pub(crate) trait Meter: Sync {
    fn to_backend(&self, n: u64);
    fn to_client(&self, n: u64);
}

struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    /// Set by the first direction that reaches EOF.
    one_done: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Relaxed);
    }
    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Relaxed))
    }

    /// `src` reached EOF: pass the half-close on to `dst`, unless the other direction is done
    /// already. Then both sockets are read to EOF and about to be closed, and close(2) sends
    /// the FIN itself: one syscall less per connection.
    fn eof(&self, dst: &TcpStream) {
        if !self.one_done.swap(true, Relaxed) {
            let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
        }
    }
}

/// Returns how it ended and the bytes moved (to backend, to client).
pub(crate) async fn forward(
    client: &TcpStream,
    backend: &TcpStream,
    pool: &PipePool,
    idle: Duration,
    stop: &CancellationToken,
    meter: &dyn Meter,
) -> (End, u64, u64) {
    let activity = Activity {
        origin: Instant::now(),
        last_ms: AtomicU64::new(0),
        one_done: AtomicBool::new(false),
    };
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let count_up = |n: u64| {
        up.fetch_add(n, Relaxed);
        meter.to_backend(n);
        activity.touch();
    };
    let count_down = |n: u64| {
        down.fetch_add(n, Relaxed);
        meter.to_client(n);
        activity.touch();
    };
    let both = async {
        tokio::try_join!(
            one_way(client, backend, pool, &count_up, &activity),
            one_way(backend, client, pool, &count_down, &activity)
        )
    };
    let idle_watch = async {
        loop {
            let due = activity.last() + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    };
    let end = tokio::select! {
        r = both => if r.is_ok() { End::Closed } else { End::Error },
        () = idle_watch => End::Idle,
        () = stop.cancelled() => End::Stopped,
    };
    (end, up.load(Relaxed), down.load(Relaxed))
}

async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    pool: &PipePool,
    count: &(dyn Fn(u64) + Sync),
    activity: &Activity,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match splice_one_way(src, dst, pool, count, activity).await {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => return other,
        }
    }
    let _ = pool;
    buffered_one_way(src, dst, count, activity).await
}

/// splice(2) src → pipe → dst. A pipe is held only while its bytes are not yet written out.
/// Returns EINVAL before moving any byte if the descriptors do not support splice.
#[cfg(target_os = "linux")]
async fn splice_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    pool: &PipePool,
    count: &(dyn Fn(u64) + Sync),
    activity: &Activity,
) -> io::Result<()> {
    use crate::splice::splice;
    loop {
        src.readable().await?;
        let pipe = pool.get()?;
        let n = match src.try_io(Interest::READABLE, || {
            splice(src.as_fd(), pipe.write.as_fd(), CHUNK)
        }) {
            Ok(0) => {
                pool.put(pipe);
                // Half-close: the peer sent FIN; pass it on and let the other direction finish.
                activity.eof(dst);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pool.put(pipe);
                continue;
            }
            Err(e) => {
                pool.put(pipe);
                return Err(e);
            }
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_fd(), dst.as_fd(), left)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    left -= m;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The pipe still holds bytes: it is closed (dropped), never pooled.
                Err(e) => return Err(e),
            }
        }
        pool.put(pipe);
        count(n as u64);
    }
}

async fn buffered_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    count: &(dyn Fn(u64) + Sync),
    activity: &Activity,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => {
                activity.eof(dst);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    off += m;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        count(n as u64);
    }
}
