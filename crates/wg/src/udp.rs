//! The UDP side of the device: gotatun's socket (recvmmsg with UDP GRO on receive), plus UDP
//! GSO on send. A batch of encrypted packets to one endpoint, all of one size but the last,
//! goes out as one `sendmsg` with `UDP_SEGMENT` (the packets as an iovec, no copy); the
//! kernel carries it as one buffer as far as it can (a veth, a GRO socket) and cuts it into
//! datagrams only where it must. If the kernel refuses GSO (no checksum offload on the route,
//! a path MTU below the segment size), GSO is turned off for the socket and everything goes
//! through gotatun's `sendmmsg`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gotatun::packet::Packet;
use gotatun::udp::socket::{UdpSocket, UdpSocketFactory};
use gotatun::udp::{UdpSend, UdpTransportFactory, UdpTransportFactoryParams};
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use tokio::io::Interest;
use tracing::warn;

/// Most segments in one GSO send (`UDP_MAX_SEGMENTS` on older kernels).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: the UDP length and the IPv4 total length are 16 bits.
const MAX_GSO_BYTES: usize = 65535 - 8 - 40;
/// Packets gotatun hands over per call (its own `sendmmsg` takes at most 100).
const MAX_BATCH: usize = 100;

/// Binds gotatun's UDP sockets and wraps the sending half in [`GsoSend`].
#[derive(Debug)]
pub(crate) struct UdpFactory {
    pub inner: UdpSocketFactory,
    /// Try UDP GSO at all.
    pub gso: bool,
}

impl UdpTransportFactory for UdpFactory {
    type Send = GsoSend;
    type Recv = UdpSocket;

    async fn bind(
        &mut self,
        params: &UdpTransportFactoryParams,
    ) -> io::Result<(Self::Send, Self::Recv)> {
        let (send, recv) = self.inner.bind(params).await?;
        let send = GsoSend {
            sock: send,
            gso: Arc::new(AtomicBool::new(self.gso)),
        };
        Ok((send, recv))
    }
}

/// The sending half: GSO batches where possible, gotatun's socket otherwise.
#[derive(Clone)]
pub(crate) struct GsoSend {
    sock: UdpSocket,
    gso: Arc<AtomicBool>,
}

/// End (exclusive) of the GSO group starting at `start`: same destination, the first
/// packet's length for all but the last, which may be shorter.
fn group_end(packets: &[(Packet, SocketAddr)], start: usize) -> usize {
    let (first, dst) = &packets[start];
    let seg = first.len();
    let mut total = seg;
    let mut end = start + 1;
    while end < packets.len() && end - start < MAX_SEGMENTS {
        let (p, d) = &packets[end];
        if d != dst || p.len() > seg || p.is_empty() || total + p.len() > MAX_GSO_BYTES {
            break;
        }
        total += p.len();
        end += 1;
        if p.len() < seg {
            break;
        }
    }
    end
}

/// Errors that mean "this socket/route cannot do GSO", not "the network is down".
fn gso_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

impl GsoSend {
    async fn send_gso(&self, group: &[(Packet, SocketAddr)]) -> io::Result<()> {
        let seg = u16::try_from(group[0].0.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EMSGSIZE))?;
        let slices: Vec<IoSlice<'_>> = group.iter().map(|(p, _)| IoSlice::new(&p[..])).collect();
        let dst = SockaddrStorage::from(group[0].1);
        let socket = self.sock.socket();
        let fd = socket.as_fd().as_raw_fd();
        socket
            .async_io(Interest::WRITABLE, || {
                sendmsg(
                    fd,
                    &slices,
                    &[ControlMessage::UdpGsoSegments(&seg)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&dst),
                )
                .map_err(io::Error::from)
            })
            .await?;
        Ok(())
    }
}

impl UdpSend for GsoSend {
    type SendManyBuf = <UdpSocket as UdpSend>::SendManyBuf;

    async fn send_to(&self, packet: Packet, destination: SocketAddr) -> io::Result<()> {
        self.sock.send_to(packet, destination).await
    }

    fn max_number_of_packets_to_send(&self) -> usize {
        MAX_BATCH
    }

    async fn send_many_to(
        &self,
        send_buf: &mut Self::SendManyBuf,
        packets: &mut Vec<(Packet, SocketAddr)>,
    ) -> io::Result<()> {
        if !self.gso.load(Ordering::Relaxed) {
            return self.sock.send_many_to(send_buf, packets).await;
        }
        let mut start = 0;
        while start < packets.len() {
            let end = group_end(packets, start);
            let group = &packets[start..end];
            if group.len() == 1 {
                let (p, dst) = &group[0];
                self.sock.socket().send_to(p, *dst).await?;
            } else if let Err(error) = self.send_gso(group).await {
                if !gso_unsupported(&error) {
                    return Err(error);
                }
                warn!(%error, "UDP GSO refused; sending datagrams one by one from now on");
                self.gso.store(false, Ordering::Relaxed);
                let mut rest: Vec<(Packet, SocketAddr)> = packets.drain(start..).collect();
                packets.clear();
                return self.sock.send_many_to(send_buf, &mut rest).await;
            }
            start = end;
        }
        packets.clear();
        Ok(())
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        UdpSend::local_addr(&self.sock)
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.sock.set_fwmark(mark)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use gotatun::packet::PacketBufPool;

    use super::*;

    fn packets(lens: &[usize], dst: SocketAddr, pool: &PacketBufPool) -> Vec<(Packet, SocketAddr)> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut p = pool.get();
                p.truncate(len);
                p.iter_mut()
                    .enumerate()
                    .for_each(|(j, b)| *b = (i * 7 + j) as u8);
                (p, dst)
            })
            .collect()
    }

    #[test]
    fn groups_equal_sizes_to_one_destination() {
        let pool = PacketBufPool::new(256);
        let a: SocketAddr = "192.0.2.1:1".parse().expect("addr");
        let b: SocketAddr = "192.0.2.2:1".parse().expect("addr");
        let groups = |ps: &[(Packet, SocketAddr)]| {
            let mut out = Vec::new();
            let mut s = 0;
            while s < ps.len() {
                let e = group_end(ps, s);
                out.push(e - s);
                s = e;
            }
            out
        };
        // A short packet ends a group; a longer one starts a new one.
        let ps = packets(&[1452, 1452, 1452, 100, 1452, 1500, 1500], a, &pool);
        assert_eq!(groups(&ps), [4, 1, 2]);
        // Another destination starts a new group.
        let mut ps = packets(&[1452; 4], a, &pool);
        ps[2].1 = b;
        assert_eq!(groups(&ps), [2, 1, 1]);
        // At most 64 segments and 64 KB per send.
        let ps = packets(&[1000; 100], a, &pool);
        assert_eq!(groups(&ps), [64, 36]);
        let ps = packets(&[1452; 100], a, &pool);
        assert_eq!(groups(&ps), [45, 45, 10]);
    }

    /// Over loopback (which takes GSO): what arrives is exactly the datagrams we handed over.
    /// `bind` as the device binds (dual-stack, `addr: None`) or on one family.
    async fn gso_round_trip(bind: Option<std::net::IpAddr>, to: std::net::IpAddr) {
        let receiver = std::net::UdpSocket::bind((to, 0)).expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let dst = receiver.local_addr().expect("addr");
        let mut factory = UdpFactory {
            inner: UdpSocketFactory::default(),
            gso: true,
        };
        let params = UdpTransportFactoryParams {
            addr: bind,
            port: 0,
            fwmark: None,
        };
        let (send, _recv) = factory.bind(&params).await.expect("bind");
        let pool = PacketBufPool::new(256);
        let lens = [1200, 1200, 1200, 777, 1200, 1200, 5, 300];
        let mut batch = packets(&lens, dst, &pool);
        let expect: Vec<Vec<u8>> = batch.iter().map(|(p, _)| p.to_vec()).collect();
        let mut buf = Default::default();
        send.send_many_to(&mut buf, &mut batch).await.expect("send");
        assert!(batch.is_empty());
        assert!(send.gso.load(Ordering::Relaxed), "loopback refused GSO");
        let mut got = Vec::new();
        let mut b = [0u8; 2000];
        for _ in 0..lens.len() {
            let n = receiver.recv(&mut b).expect("a datagram per packet");
            got.push(b[..n].to_vec());
        }
        assert_eq!(got, expect);
    }

    #[tokio::test]
    async fn gso_batches_arrive_as_the_original_datagrams() {
        let v4 = std::net::IpAddr::from(Ipv4Addr::LOCALHOST);
        let v6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        gso_round_trip(Some(v4), v4).await;
        gso_round_trip(None, v4).await;
        gso_round_trip(None, v6).await;
    }
}
