//! Tests of [`super`] (`copy.rs`): forwarding, half-close, and how resets are counted.

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

/// A client and a backend with [`forward`] between them (default buffers): (client, backend,
/// the forward's task).
async fn proxied() -> (
    TcpStream,
    TcpStream,
    tokio::task::JoinHandle<(End, u64, u64)>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (src, _) = l.accept().await.unwrap();
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dst = TcpStream::connect(b.local_addr().unwrap()).await.unwrap();
    let (backend, _) = b.accept().await.unwrap();
    (client, backend, start_forward(src, dst))
}

/// Resets `s` at once: close(2) with a zero linger sends RST, not FIN.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// How the forward `fwd` ended, within 10 s.
async fn ended(fwd: tokio::task::JoinHandle<(End, u64, u64)>) -> (End, u64, u64) {
    tokio::time::timeout(Duration::from_secs(10), fwd)
        .await
        .expect("ended")
        .unwrap()
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

/// The soak's `io` errors (issue 17): a TLS client's close_notify, sent after it read the
/// whole answer, is relayed to a backend that has closed already; the backend resets, and
/// the next bytes towards it fail. The answer was whole: counted apart, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_after_its_whole_answer_is_not_an_error() {
    let (mut client, mut backend, fwd) = proxied().await;
    client.write_all(b"request").await.unwrap();
    let mut req = [0u8; 7];
    backend.read_exact(&mut req).await.unwrap();
    backend.write_all(b"answer").await.unwrap();
    drop(backend);
    assert_eq!(read_to_eof(&mut client).await, b"answer");
    // The client's trailing bytes reach a closed socket: reset.
    client.write_all(b"close_notify").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = client.write_all(b"more").await;
    let (end, _, down) = ended(fwd).await;
    assert_eq!(end, End::ResetAfterResponse(Side::Backend));
    assert_eq!(down, 6);
}

/// What the soak's `io` errors were (wrk over TLS through the crate's router, 476 of 2 531
/// connections here): the client read the whole answer, then closed with bytes unread (the
/// backend's close_notify), which resets. Counted apart, on the client's side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_after_the_whole_answer_is_not_an_error() {
    let (mut client, mut backend, fwd) = proxied().await;
    backend.write_all(b"answer").await.unwrap();
    backend.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut client).await, b"answer");
    reset(client);
    let (end, _, _) = ended(fwd).await;
    assert_eq!(end, End::ResetAfterResponse(Side::Client));
    drop(backend);
}

/// The soak's remaining `io` errors (nginx over TLS, about 1 in 200 connections): the client
/// read part of the answer (all it wanted) and reset while the backend was still sending.
/// The client walked away: counted apart, on the client's side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_during_the_answer_is_not_an_error() {
    let (mut client, mut backend, fwd) = proxied().await;
    backend.write_all(b"answer").await.unwrap();
    let mut got = [0u8; 6];
    client.read_exact(&mut got).await.unwrap();
    reset(client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = backend.write_all(b"close_notify").await;
    let (end, _, down) = ended(fwd).await;
    assert_eq!(end, End::ResetAfterResponse(Side::Client));
    assert!(down >= 6);
    drop(backend);
}

/// The other half of them: the client read the answer and closed its side (its close_notify
/// and FIN passed on); the backend, closed already, reset instead of sending its FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_after_the_client_closed_is_not_an_error() {
    let (mut client, mut backend, fwd) = proxied().await;
    backend.write_all(b"answer").await.unwrap();
    let mut got = [0u8; 6];
    client.read_exact(&mut got).await.unwrap();
    client.write_all(b"close_notify").await.unwrap();
    client.shutdown().await.unwrap();
    let mut trailing = Vec::new();
    backend.read_to_end(&mut trailing).await.unwrap();
    assert_eq!(trailing, b"close_notify", "the client's FIN passed on");
    reset(backend);
    let (end, _, _) = ended(fwd).await;
    assert_eq!(end, End::ResetAfterResponse(Side::Backend));
}

/// A backend that resets before answering anything is an error even after the client has
/// closed its side (a request sent, then shutdown(2), is a valid way to ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_before_any_answer_is_an_io_error() {
    let (mut client, mut backend, fwd) = proxied().await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let mut req = Vec::new();
    backend.read_to_end(&mut req).await.unwrap();
    reset(backend);
    let (end, _, down) = ended(fwd).await;
    assert_eq!(end, End::Error(Side::Backend, Some(libc::ECONNRESET)));
    assert_eq!(down, 0);
}

/// A reset before the backend's answer is whole stays an I/O error, with its side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_before_its_answer_ends_is_an_io_error() {
    let (mut client, mut backend, fwd) = proxied().await;
    backend.write_all(b"half an ans").await.unwrap();
    reset(backend);
    let mut got = vec![0u8; 11];
    client.read_exact(&mut got).await.unwrap();
    let (end, _, _) = ended(fwd).await;
    assert_eq!(end, End::Error(Side::Backend, Some(libc::ECONNRESET)));
}
