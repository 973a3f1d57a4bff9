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
            one_way(
                Way {
                    src: client,
                    dst: backend,
                    count: &count_up,
                    activity: &activity,
                },
                pool
            ),
            one_way(
                Way {
                    src: backend,
                    dst: client,
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
        r = both => if r.is_ok() { End::Closed } else { End::Error },
        () = idle_watch => End::Idle,
        () = stop.cancelled() => End::Stopped,
    };
    (end, up.load(Relaxed), down.load(Relaxed))
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
    count: &'a (dyn Fn(u64) + Sync),
    activity: &'a Activity,
}

/// Small messages (request heads, TLS handshakes, short responses) are cheaper through a
/// userspace buffer: one recv(2) and one send(2), where splice needs two calls and a pipe.
/// A read that fills the buffer is taken as a bulk transfer, and that direction switches to
/// splice(2) on Linux (unless the descriptors refuse it).
async fn one_way(way: Way<'_>, pool: &PipePool) -> io::Result<()> {
    loop {
        let ready = way.src.ready(Interest::READABLE).await?;
        match copy_once(way.src, way.dst, ready.is_read_closed()) {
            Ok(Step::Eof) => {
                // Half-close: the peer sent FIN; pass it on and let the other direction finish.
                way.activity.eof(way.dst);
                return Ok(());
            }
            Ok(Step::Moved { n, rest, last }) => {
                way.activity.touch();
                if let Some(rest) = rest {
                    write_all(way.dst, &rest, way.activity).await?;
                }
                (way.count)(n as u64);
                if last {
                    way.activity.eof(way.dst);
                    return Ok(());
                }
                if n == COPY_BUF {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(target_os = "linux")]
    {
        match splice_one_way(way, pool).await {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
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
fn copy_once(src: &TcpStream, dst: &TcpStream, fin_seen: bool) -> io::Result<Step> {
    COPY.with(|buf| {
        let mut buf = buf.borrow_mut();
        let n = src.try_read(&mut buf)?;
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
            Err(e) => return Err(e),
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
async fn splice_one_way(way: Way<'_>, pool: &PipePool) -> io::Result<()> {
    use crate::splice::splice;
    loop {
        way.src.readable().await?;
        let pipe = pool.get()?;
        let n = match way.src.try_io(Interest::READABLE, || {
            splice(way.src.as_fd(), pipe.write.as_fd(), CHUNK)
        }) {
            Ok(0) => {
                pool.put(pipe);
                // Half-close: the peer sent FIN; pass it on and let the other direction finish.
                way.activity.eof(way.dst);
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
            way.dst.writable().await?;
            match way.dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_fd(), way.dst.as_fd(), left)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    left -= m;
                    way.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The pipe still holds bytes: it is closed (dropped), never pooled.
                Err(e) => return Err(e),
            }
        }
        pool.put(pipe);
        (way.count)(n as u64);
    }
}

/// The portable path for bulk: a per-connection buffer, held only while this direction is
/// busy with a transfer that filled [`COPY_BUF`].
async fn buffered_one_way(way: Way<'_>) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        way.src.readable().await?;
        let n = match way.src.try_read(&mut buf) {
            Ok(0) => {
                way.activity.eof(way.dst);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        write_all(way.dst, &buf[..n], way.activity).await?;
        (way.count)(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    struct NoMeter;
    impl Meter for NoMeter {
        fn to_backend(&self, _: u64) {}
        fn to_client(&self, _: u64) {}
    }

    /// A connected pair whose receiving end has the smallest buffers the kernel allows, so
    /// writes towards it stall quickly.
    async fn tight_pair() -> (TcpStream, TcpStream) {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(1).unwrap();
        s.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        s.listen(1).unwrap();
        s.set_nonblocking(true).unwrap();
        let l = TcpListener::from_std(s.into()).unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        socket2::SockRef::from(&c).set_send_buffer_size(1).unwrap();
        let (d, _) = l.accept().await.unwrap();
        (c, d)
    }

    /// (client, the proxy's end of it, the proxy's end towards a tight far end, that far end).
    async fn two_connections() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (src, _) = l.accept().await.unwrap();
        let (dst, far) = tight_pair().await;
        (client, src, dst, far)
    }

    fn start_forward(src: TcpStream, dst: TcpStream) -> tokio::task::JoinHandle<(End, u64, u64)> {
        tokio::spawn(async move {
            let (pool, stop) = (PipePool::default(), CancellationToken::new());
            forward(&src, &dst, &pool, Duration::from_secs(10), &stop, &NoMeter).await
        })
    }

    async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .expect("EOF passed on in time")
            .unwrap();
        got
    }

    /// Small writes towards a reader that stalls: the copy path meets a full socket and keeps
    /// what the destination did not take, and every byte arrives in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_a_full_destination_did_not_take_are_kept() {
        let (mut client, src, dst, mut far) = two_connections().await;
        let fwd = start_forward(src, dst);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        for chunk in sent.chunks(1000) {
            client.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
        client.shutdown().await.unwrap();
        let got = read_to_eof(&mut far).await;
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "in order, nothing lost");
        far.shutdown().await.unwrap();
        let (end, up, _) = fwd.await.unwrap();
        assert_eq!(end, End::Closed);
        assert_eq!(up, sent.len() as u64);
    }

    /// Bytes and FIN already queued together: they are passed on as the last bytes, then EOF,
    /// while the other direction keeps working until it ends too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_bytes_and_fin_pass_on_together() {
        let (mut client, src, dst, mut far) = two_connections().await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fwd = start_forward(src, dst);
        assert_eq!(read_to_eof(&mut far).await, b"last words");
        // The other way still works after the half-close.
        far.write_all(b"reply").await.unwrap();
        far.shutdown().await.unwrap();
        assert_eq!(read_to_eof(&mut client).await, b"reply");
        let (end, up, down) = fwd.await.unwrap();
        assert_eq!((end, up, down), (End::Closed, 10, 5));
    }
}
