//! The TUN side of the device: creates the named interface (up, with the given MTU) and gives
//! gotatun its packet source ([`TunRx`]) and sink ([`TunTx`]).
//!
//! With offload (the default) the interface is opened with `IFF_VNET_HDR` and
//! `TUNSETOFFLOAD(CSUM | TSO4 | TSO6)`: one read returns a TCP super-packet of up to 64 KB that
//! is cut into MTU-sized segments, and decrypted segments are coalesced into GRO writes
//! (`offload.rs`), so the kernel sees a few large packets instead of many small ones. Without
//! (`KAWAII_WG_OFFLOAD=off`), one packet per read and write, as gotatun's own `TunDevice`.
//!
//! The only unsafe code in kawaii-wg is the `TUNSETOFFLOAD` ioctl below: neither libc nor the
//! tun crate wraps it safely.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use gotatun::packet::{Ip, Packet, PacketBufPool};
use gotatun::tun::tun;
use gotatun::tun::{IpRecv, IpSend, MtuWatcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::WgError;
use crate::offload::{
    F_NEEDS_CSUM, GSO_NONE, Gro, MAX_IP_PACKET, OffloadError, Tso, VNET_HDR_LEN, VnetHdr,
    complete_checksum,
};

/// Environment variable that turns TUN offload and UDP GSO off (`off`, `0` or `false`).
pub const OFFLOAD_ENV: &str = "KAWAII_WG_OFFLOAD";

/// Packets queued between gotatun's decrypt loop and our TUN writer.
const WRITE_QUEUE: usize = 1024;
/// Packets the writer takes per wake-up (and may coalesce).
const WRITE_BATCH: usize = 128;

/// TUN offload and UDP GSO are on unless [`OFFLOAD_ENV`] turns them off.
pub(crate) fn offload_wanted() -> bool {
    !matches!(
        std::env::var(OFFLOAD_ENV).as_deref(),
        Ok("off" | "0" | "false")
    )
}

/// Creates (and brings up) the TUN interface `ifname`. The interface lives as long as the
/// returned halves (and the writer task): closing the last fd deletes it. With offload it
/// spawns the writer task, so it must run inside the device's runtime.
pub(crate) fn create_tun(ifname: &str, mtu: u16) -> Result<(TunTx, TunRx), WgError> {
    let err = |reason: String| WgError::Tun {
        ifname: ifname.to_owned(),
        reason,
    };
    let want_offload = offload_wanted();
    let mut config = tun::Configuration::default();
    config.tun_name(ifname).mtu(mtu).up();
    config.platform_config(|p| {
        p.vnet_hdr(want_offload);
    });
    let dev = tun::create_as_async(&config).map_err(|e| err(e.to_string()))?;
    if want_offload && let Err(error) = set_offload(&dev) {
        // The fd still carries virtio headers; reads just never bring GSO packets.
        warn!(%error, ifname, "TUNSETOFFLOAD failed: no TSO on the TUN device");
    }
    let offload = want_offload;
    debug!(ifname, offload, "TUN device created");
    let dev = Arc::new(dev);
    let rx = TunRx {
        dev: Arc::clone(&dev),
        vnet: offload,
        buf: vec![0; VNET_HDR_LEN + MAX_IP_PACKET + 1],
        out: Vec::with_capacity(64),
        mtu: MtuWatcher::new(mtu),
    };
    let tx = if offload {
        let (queue, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(Arc::clone(&dev), rx));
        TunTx::Offload(queue)
    } else {
        TunTx::Plain(dev)
    };
    Ok((tx, rx))
}

/// Enables checksum offload and TSO for IPv4 and IPv6 on the TUN fd.
fn set_offload(dev: &tun::AsyncDevice) -> io::Result<()> {
    let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int of TUN_F_* flags) and
    // touches no memory of ours; the fd is open for the duration of the call.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Packets from the TUN device (to be encrypted).
pub(crate) struct TunRx {
    dev: Arc<tun::AsyncDevice>,
    /// Reads start with a `virtio_net_hdr`.
    vnet: bool,
    /// One read: header + up to 64 KB.
    buf: Vec<u8>,
    /// Segments of the last read, handed out by `recv`.
    out: Vec<Packet<Ip>>,
    mtu: MtuWatcher,
}

/// Turns one offload read (`virtio_net_hdr` + packet) into IP packets in `out`.
fn split_read(
    read: &[u8],
    pool: &PacketBufPool,
    out: &mut Vec<Packet<Ip>>,
) -> Result<(), OffloadError> {
    let hdr = VnetHdr::decode(read)?;
    let pkt = &read[VNET_HDR_LEN..];
    if hdr.gso_type == GSO_NONE {
        let mut p = pool.get();
        p.buf_mut().clear();
        p.buf_mut().extend_from_slice(pkt);
        if hdr.flags & F_NEEDS_CSUM != 0 {
            complete_checksum(&hdr, &mut p)?;
        }
        out.push(p.try_into_ip().map_err(|_| OffloadError::Truncated)?);
        return Ok(());
    }
    let tso = Tso::new(&hdr, pkt)?;
    for i in 0..tso.count() {
        let mut p = pool.get();
        p.buf_mut().resize(tso.segment_len(i), 0);
        tso.write_segment(i, &mut p);
        out.push(p.try_into_ip().map_err(|_| OffloadError::Truncated)?);
    }
    Ok(())
}

impl IpRecv for TunRx {
    async fn recv<'a>(
        &'a mut self,
        pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        self.out.clear();
        if !self.vnet {
            let mut p = pool.get();
            let n = self.dev.recv(&mut p).await?;
            p.truncate(n);
            let p = p
                .try_into_ip()
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.out.push(p);
            return Ok(self.out.drain(..));
        }
        loop {
            let n = self.dev.recv(&mut self.buf).await?;
            if n == self.buf.len() {
                // Longer than any packet we offered to take (BIG TCP?): cut off, unusable.
                debug!(n, "dropping an oversized TUN read");
                continue;
            }
            match split_read(&self.buf[..n], pool, &mut self.out) {
                Ok(()) => break,
                Err(error) => {
                    self.out.clear();
                    debug!(%error, "dropping a TUN read");
                }
            }
        }
        Ok(self.out.drain(..))
    }

    fn mtu(&self) -> MtuWatcher {
        self.mtu.clone()
    }
}

/// Packets to the TUN device (decrypted).
pub(crate) enum TunTx {
    /// One write per packet.
    Plain(Arc<tun::AsyncDevice>),
    /// Queued to [`write_loop`], which coalesces.
    Offload(mpsc::Sender<Packet<Ip>>),
}

impl IpSend for TunTx {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        match self {
            Self::Plain(dev) => {
                dev.send(&packet.into_bytes()).await?;
            }
            Self::Offload(queue) => queue
                .send(packet)
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?,
        }
        Ok(())
    }
}

/// Takes whatever decrypted packets are queued, coalesces them and writes them. Ends when the
/// device drops its sender.
async fn write_loop(dev: Arc<tun::AsyncDevice>, mut queue: mpsc::Receiver<Packet<Ip>>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut gro = Gro::default();
    let mut dropped = 0u64;
    loop {
        if queue.recv_many(&mut batch, WRITE_BATCH).await == 0 {
            return;
        }
        for p in batch.drain(..) {
            let p = p.into_bytes();
            let _ = gro.push(&p, &mut |b| write_now(&dev, b, &mut dropped));
        }
        let _ = gro.flush(&mut |b| write_now(&dev, b, &mut dropped));
    }
}

/// A non-blocking TUN write. TUN writes only fail when the kernel cannot take the packet
/// (memory, a full backlog); the packet is dropped then, as a router would.
fn write_now(dev: &tun::AsyncDevice, buf: &[u8], dropped: &mut u64) -> Result<(), ()> {
    match tun::Device::send(dev, buf) {
        Ok(_) => Ok(()),
        Err(error) => {
            *dropped += 1;
            if dropped.is_power_of_two() {
                warn!(%error, dropped = *dropped, "TUN write failed; packet dropped");
            }
            Err(())
        }
    }
}
