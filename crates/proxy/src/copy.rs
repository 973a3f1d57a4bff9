//! Bidirectional forwarding between the client and the backend, with an idle timeout.
//!
//! Contract: [`forward`] copies both directions until both reach EOF (propagating half-close),
//! one fails, nothing moves for `idle`, or `stop` fires. Each direction starts on a copy through
//! one buffer per worker thread (cheapest for request heads, handshakes and short answers); a
//! read that fills it marks the direction as bulk, which then moves by splice(2) on Linux through
//! pipes taken from a [`PipePool`] only while bytes are in flight. Either way an idle connection
//! holds no buffer and no pipe descriptor. Elsewhere (or if splice is refused) bulk goes through
//! a per-connection buffer held while the transfer lasts.

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
    /// A peer reset the connection (ECONNRESET, EPIPE) once the exchange was over for the
    /// client, so nothing it asked for was lost. Not an error. The side is the socket that
    /// failed. The connection was over for the client when
    /// - the backend's answer had been passed on whole, its FIN included; or
    /// - part of an answer had reached the client, and then the client reset (it closed with
    ///   bytes unread: a TLS client that does not wait for the backend's close_notify); or
    /// - part of an answer had reached the client, the client then closed its side (its FIN
    ///   passed on), and the backend reset: a TLS backend that had closed already answers the
    ///   client's trailing close_notify so.
    ///
    /// A backend reset while the client still talks, or before any answer, stays an error.
    ResetAfterResponse(Side),
    Idle,
    Stopped,
    /// An I/O error: on which socket (`Side`) and its errno, for the log.
    Error(Side, Option<i32>),
}

/// Which socket of a forwarded connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Backend,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
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
    /// Set once the backend's FIN has been passed on to the client (its answer is whole).
    answered: AtomicBool,
    /// Set once the client's FIN has been passed on to the backend (it has said all it will).
    client_done: AtomicBool,
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
    fn eof(&self, dst: &TcpStream, down: bool) {
        if down {
            self.answered.store(true, Relaxed);
        } else {
            self.client_done.store(true, Relaxed);
        }
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
        answered: AtomicBool::new(false),
        client_done: AtomicBool::new(false),
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
            one_way(
                Way {
                    src: client,
                    dst: backend,
                    down: false,
                    count: &count_up,
                    activity: &activity,
                },
                pool
            ),
            one_way(
                Way {
                    src: backend,
                    dst: client,
                    down: true,
                    count: &count_down,
                    activity: &activity,
                },
                pool
            )
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
        r = both => match r {
            Ok(_) => End::Closed,
            Err(e) => ended_by(&e, &activity, down.load(Relaxed) > 0),
        },
        () = idle_watch => End::Idle,
        () = stop.cancelled() => End::Stopped,
    };
    (end, up.load(Relaxed), down.load(Relaxed))
}

/// How an I/O error `e` of [`one_way`] ends the connection (see [`End::ResetAfterResponse`]);
/// `answer_begun`: some of the backend's bytes had reached the client.
fn ended_by(e: &WayError, activity: &Activity, answer_begun: bool) -> End {
    let reset = matches!(
        e.error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    );
    let over_for_client = activity.answered.load(Relaxed)
        || answer_begun
            && match e.side {
                Side::Client => true,
                Side::Backend => activity.client_done.load(Relaxed),
            };
    if reset && over_for_client {
        End::ResetAfterResponse(e.side)
    } else {
        End::Error(e.side, e.error.raw_os_error())
    }
}

/// An error of one direction, with the socket it came from.
#[derive(Debug)]
struct WayError {
    side: Side,
    error: io::Error,
}

/// Reads smaller than this stay on the copy path; a read that fills it marks the direction as
/// bulk and moves it to splice(2) for the rest of the connection.
const COPY_BUF: usize = 16 * 1024;

std::thread_local! {
    /// One copy buffer per worker thread. It is borrowed only between a read and the write
    /// that follows it in the same poll, never across an await, so an idle connection holds
    /// no buffer at all.
    static COPY: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; COPY_BUF].into_boxed_slice());
}

/// One direction of a connection: where its bytes come from and go, what counts them, and
/// the activity both directions share.
#[derive(Clone, Copy)]
struct Way<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    /// Backend to client.
    down: bool,
    count: &'a (dyn Fn(u64) + Sync),
    activity: &'a Activity,
}

impl Way<'_> {
    /// An error reading from `src`.
    fn at_src(&self, error: io::Error) -> WayError {
        let side = if self.down {
            Side::Backend
        } else {
            Side::Client
        };
        WayError { side, error }
    }
    /// An error writing to `dst`.
    fn at_dst(&self, error: io::Error) -> WayError {
        let side = if self.down {
            Side::Client
        } else {
            Side::Backend
        };
        WayError { side, error }
    }
}

/// Small messages (request heads, TLS handshakes, short responses) are cheaper through a
/// userspace buffer: one recv(2) and one send(2), where splice needs two calls and a pipe.
/// A read that fills the buffer is taken as a bulk transfer, and that direction switches to
/// splice(2) on Linux (unless the descriptors refuse it).
async fn one_way(way: Way<'_>, pool: &PipePool) -> Result<(), WayError> {
    loop {
        let ready = way
            .src
            .ready(Interest::READABLE)
            .await
            .map_err(|e| way.at_src(e))?;
        match copy_once(way.src, way.dst, ready.is_read_closed()) {
            Ok(Step::Eof) => {
                // Half-close: the peer sent FIN; pass it on and let the other direction finish.
                way.activity.eof(way.dst, way.down);
                return Ok(());
            }
            Ok(Step::Moved { n, rest, last }) => {
                way.activity.touch();
                if let Some(rest) = rest {
                    write_all(way.dst, &rest, way.activity)
                        .await
                        .map_err(|e| way.at_dst(e))?;
                }
                (way.count)(n as u64);
                if last {
                    // The poller's "closed" is a reset too: then these bytes were not the
                    // last of an answer, and the reset (still pending) is the end.
                    if let Ok(Some(e)) = way.src.take_error() {
                        return Err(way.at_src(e));
                    }
                    way.activity.eof(way.dst, way.down);
                    return Ok(());
                }
                if n == COPY_BUF {
                    break;
                }
            }
            Err((_, e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err((at_dst, e)) if at_dst => return Err(way.at_dst(e)),
            Err((_, e)) => return Err(way.at_src(e)),
        }
    }
    #[cfg(target_os = "linux")]
    {
        match splice_one_way(way, pool).await {
            Err(e) if e.error.raw_os_error() == Some(libc::EINVAL) => {}
            other => return other,
        }
    }
    let _ = pool;
    buffered_one_way(way).await
}

/// What one [`copy_once`] did.
enum Step {
    /// The peer's FIN, with no byte before it.
    Eof,
    /// `n` bytes read; `rest` is what the destination did not take yet (copied out of the
    /// shared buffer, to be written after waiting); `last` when the peer's FIN follows them.
    Moved {
        n: usize,
        rest: Option<Vec<u8>>,
        last: bool,
    },
}

/// One read from `src` into the thread's buffer and one write of it to `dst`, without waiting.
///
/// `fin_seen` is the poller's word that the peer has sent FIN. A read that then comes back
/// short has drained everything before the FIN, so these bytes are the last: they are sent
/// with MSG_MORE and the half-close that follows leaves in the same segment (one packet and
/// one EOF read fewer per connection for a short answer).
/// An error comes with `true` when it was the write to `dst`.
fn copy_once(src: &TcpStream, dst: &TcpStream, fin_seen: bool) -> Result<Step, (bool, io::Error)> {
    COPY.with(|buf| {
        let mut buf = buf.borrow_mut();
        let n = src.try_read(&mut buf).map_err(|e| (false, e))?;
        if n == 0 {
            return Ok(Step::Eof);
        }
        let last = fin_seen && n < buf.len();
        let sent = if last {
            send_more(dst, &buf[..n])
        } else {
            dst.try_write(&buf[..n])
        };
        let sent = match sent {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err((true, e)),
        };
        Ok(Step::Moved {
            n,
            rest: (sent < n).then(|| buf[sent..n].to_vec()),
            last,
        })
    })
}

/// A write that tells the kernel more (here: the FIN) follows at once.
#[cfg(target_os = "linux")]
fn send_more(dst: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    dst.try_io(Interest::WRITABLE, || {
        socket2::SockRef::from(dst).send_with_flags(bytes, libc::MSG_MORE)
    })
}

#[cfg(not(target_os = "linux"))]
fn send_more(dst: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    dst.try_write(bytes)
}

async fn write_all(dst: &TcpStream, mut bytes: &[u8], activity: &Activity) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => {
                bytes = &bytes[m..];
                activity.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// splice(2) src → pipe → dst. A pipe is held only while its bytes are not yet written out.
/// Returns EINVAL before moving any byte if the descriptors do not support splice.
#[cfg(target_os = "linux")]
async fn splice_one_way(way: Way<'_>, pool: &PipePool) -> Result<(), WayError> {
    use crate::splice::splice;
    loop {
        way.src.readable().await.map_err(|e| way.at_src(e))?;
        let pipe = pool.get().map_err(|e| way.at_src(e))?;
        let n = match way.src.try_io(Interest::READABLE, || {
            splice(way.src.as_fd(), pipe.write.as_fd(), CHUNK)
        }) {
            Ok(0) => {
                pool.put(pipe);
                // Half-close: the peer sent FIN; pass it on and let the other direction finish.
                way.activity.eof(way.dst, way.down);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pool.put(pipe);
                continue;
            }
            Err(e) => {
                pool.put(pipe);
                return Err(way.at_src(e));
            }
        };
        let mut left = n;
        while left > 0 {
            way.dst.writable().await.map_err(|e| way.at_dst(e))?;
            match way.dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_fd(), way.dst.as_fd(), left)
            }) {
                Ok(0) => return Err(way.at_dst(io::ErrorKind::WriteZero.into())),
                Ok(m) => {
                    left -= m;
                    way.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The pipe still holds bytes: it is closed (dropped), never pooled.
                Err(e) => return Err(way.at_dst(e)),
            }
        }
        pool.put(pipe);
        (way.count)(n as u64);
    }
}

/// The portable path for bulk: a per-connection buffer, held only while this direction is
/// busy with a transfer that filled [`COPY_BUF`].
async fn buffered_one_way(way: Way<'_>) -> Result<(), WayError> {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        way.src.readable().await.map_err(|e| way.at_src(e))?;
        let n = match way.src.try_read(&mut buf) {
            Ok(0) => {
                way.activity.eof(way.dst, way.down);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(way.at_src(e)),
        };
        write_all(way.dst, &buf[..n], way.activity)
            .await
            .map_err(|e| way.at_dst(e))?;
        (way.count)(n as u64);
    }
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
