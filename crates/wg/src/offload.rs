//! TUN offload, pure: the `virtio_net_hdr` that prefixes every packet on an `IFF_VNET_HDR` TUN
//! device, splitting a kernel TSO super-packet into MTU-sized TCP segments (outgoing), and
//! coalescing decrypted in-order TCP segments of one flow into one GRO super-packet (incoming).
//! No I/O here; `tun.rs` does the reads and writes.

use std::fmt;

/// Length of `struct virtio_net_hdr` (the default `TUNSETVNETHDRSZ`).
pub(crate) const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the rest must be summed from `csum_start` to the end.
pub(crate) const F_NEEDS_CSUM: u8 = 1;

/// `VIRTIO_NET_HDR_GSO_*` values of `gso_type`.
pub(crate) const GSO_NONE: u8 = 0;
pub(crate) const GSO_TCPV4: u8 = 1;
pub(crate) const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into `gso_type` (we do not offer `TUN_F_TSO_ECN`).
const GSO_ECN: u8 = 0x80;

/// Largest IP packet (IPv4 total length / IPv6 payload length are 16 bits).
pub(crate) const MAX_IP_PACKET: usize = 65535;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_ECE: u8 = 0x40;
const TCP_CWR: u8 = 0x80;

/// Why a packet read from the TUN device could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffloadError {
    /// Shorter than the virtio header, or than the headers it announces.
    Truncated,
    /// A GSO type we did not enable (UDP fragmentation offload, USO).
    UnsupportedGso(u8),
    /// A TSO packet whose IP/TCP headers do not parse (wrong version, not TCP, bad lengths).
    BadHeaders,
    /// `csum_start`/`csum_offset` point outside the packet.
    BadChecksumOffsets,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated packet"),
            Self::UnsupportedGso(t) => write!(f, "unsupported GSO type {t}"),
            Self::BadHeaders => f.write_str("bad IP/TCP headers in a TSO packet"),
            Self::BadChecksumOffsets => f.write_str("checksum offsets outside the packet"),
        }
    }
}

/// `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h), native byte order (a TUN device
/// without `TUNSETVNETLE`/`BE` on a little-endian host):
///
/// ```text
///  0        1          2            4            6              8               10
/// +--------+----------+------------+------------+--------------+---------------+
/// | flags  | gso_type |  hdr_len   |  gso_size  |  csum_start  |  csum_offset  |
/// +--------+----------+------------+------------+--------------+---------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, OffloadError> {
        let b = buf.get(..VNET_HDR_LEN).ok_or(OffloadError::Truncated)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    pub(crate) fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

// ---- Internet checksum (RFC 1071) ----

/// Adds `data` to a ones' complement running sum. Summing 32-bit big-endian words into a u64
/// gives the same folded result as summing 16-bit words (RFC 1071 §2(B), byte-order and
/// word-size independence); an odd trailing byte is padded with zero.
pub(crate) fn csum_add(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = sum.overflowing_add(w);
        sum = s + u64::from(carry);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let w = u64::from_be_bytes(tail);
    let (s, carry) = sum.overflowing_add(w);
    s + u64::from(carry)
}

/// Folds a running sum to 16 bits (not complemented).
pub(crate) fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Sum of the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 8200 §8.1) for an IP packet `ip`
/// whose transport part is `l4_len` bytes of protocol `proto`.
fn pseudo_sum(ip: &[u8], proto: u8, l4_len: usize) -> u64 {
    let sum = if ip[0] >> 4 == 4 {
        csum_add(0, &ip[12..20])
    } else {
        csum_add(0, &ip[8..40])
    };
    csum_add(sum, &[0, 0, 0, proto]) + l4_len as u64
}

/// IPv4 header checksum over `hdr` (whose checksum field is set to zero first).
fn ipv4_header_checksum(hdr: &mut [u8]) {
    hdr[10..12].copy_from_slice(&[0, 0]);
    let c = !csum_fold(csum_add(0, hdr));
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Completes a `F_NEEDS_CSUM` packet: sums from `csum_start` to the end (the field already
/// holds the pseudo-header sum) and stores the complement at `csum_start + csum_offset`. A
/// result of 0 is stored as 0xffff, as the kernel does: for UDP 0 means "no checksum"
/// (RFC 768), for TCP both are the same ones' complement zero.
pub(crate) fn complete_checksum(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if start >= pkt.len() || field + 2 > pkt.len() {
        return Err(OffloadError::BadChecksumOffsets);
    }
    let c = match !csum_fold(csum_add(0, &pkt[start..])) {
        0 => 0xffff,
        c => c,
    };
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

// ---- Outgoing: TSO split ----

/// A TSO super-packet (IP + TCP headers, then up to 64 KB of payload) and how to cut it into
/// segments of at most `mss` payload bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tso<'a> {
    pkt: &'a [u8],
    /// Offset of the TCP header (the IP header, with IPv4 options or IPv6 extension headers).
    l4_off: usize,
    /// Offset of the payload.
    payload_off: usize,
    mss: usize,
    v6: bool,
}

impl<'a> Tso<'a> {
    /// Parses a packet that came with `gso_type` TCPv4/TCPv6.
    pub(crate) fn new(hdr: &VnetHdr, pkt: &'a [u8]) -> Result<Self, OffloadError> {
        let v6 = match hdr.gso_type & !GSO_ECN {
            GSO_TCPV4 => false,
            GSO_TCPV6 => true,
            other => return Err(OffloadError::UnsupportedGso(other)),
        };
        let version = pkt.first().ok_or(OffloadError::Truncated)? >> 4;
        let l4_off = match (v6, version) {
            (false, 4) => {
                if pkt.len() < 20 || pkt[9] != PROTO_TCP {
                    return Err(OffloadError::BadHeaders);
                }
                usize::from(pkt[0] & 0x0f) * 4
            }
            // With extension headers only csum_start says where TCP begins.
            (true, 6) if pkt.len() >= 40 && pkt[6] == PROTO_TCP => 40,
            (true, 6) if hdr.flags & F_NEEDS_CSUM != 0 && usize::from(hdr.csum_start) >= 40 => {
                usize::from(hdr.csum_start)
            }
            _ => return Err(OffloadError::BadHeaders),
        };
        if l4_off < 20 || pkt.len() < l4_off + 20 {
            return Err(OffloadError::Truncated);
        }
        let tcp_len = usize::from(pkt[l4_off + 12] >> 4) * 4;
        let payload_off = l4_off + tcp_len;
        if tcp_len < 20 || pkt.len() < payload_off {
            return Err(OffloadError::Truncated);
        }
        let mss = usize::from(hdr.gso_size);
        if mss == 0 {
            return Err(OffloadError::BadHeaders);
        }
        Ok(Self {
            pkt,
            l4_off,
            payload_off,
            mss,
            v6,
        })
    }

    fn payload_len(&self) -> usize {
        self.pkt.len() - self.payload_off
    }

    /// Number of segments (at least one, also for an empty payload).
    pub(crate) fn count(&self) -> usize {
        self.payload_len().div_ceil(self.mss).max(1)
    }

    /// Length of segment `i`.
    pub(crate) fn segment_len(&self, i: usize) -> usize {
        let start = i * self.mss;
        let len = self.mss.min(self.payload_len().saturating_sub(start));
        self.payload_off + len
    }

    /// Writes segment `i` into `out` (exactly [`Self::segment_len`] bytes): the headers with
    /// lengths, IPv4 id and header checksum, TCP sequence number, flags (FIN/PSH only on the
    /// last segment, CWR only on the first) and a complete TCP checksum.
    pub(crate) fn write_segment(&self, i: usize, out: &mut [u8]) {
        let n = self.count();
        let start = i * self.mss;
        let len = self.segment_len(i) - self.payload_off;
        let total = self.payload_off + len;
        let out = &mut out[..total];
        out[..self.payload_off].copy_from_slice(&self.pkt[..self.payload_off]);
        out[self.payload_off..]
            .copy_from_slice(&self.pkt[self.payload_off + start..self.payload_off + start + len]);

        if self.v6 {
            let plen = (total - 40) as u16;
            out[4..6].copy_from_slice(&plen.to_be_bytes());
        } else {
            out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            let id = u16::from_be_bytes([out[4], out[5]]).wrapping_add(i as u16);
            out[4..6].copy_from_slice(&id.to_be_bytes());
            ipv4_header_checksum(&mut out[..self.l4_off]);
        }

        let tcp = self.l4_off;
        let seq = u32::from_be_bytes([out[tcp + 4], out[tcp + 5], out[tcp + 6], out[tcp + 7]])
            .wrapping_add(start as u32);
        out[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < n {
            out[tcp + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            out[tcp + 13] &= !TCP_CWR;
        }
        out[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
        let l4_len = total - tcp;
        let sum = csum_add(pseudo_sum(out, PROTO_TCP, l4_len), &out[tcp..]);
        out[tcp + 16..tcp + 18].copy_from_slice(&(!csum_fold(sum)).to_be_bytes());
    }
}

// ---- Incoming: GRO coalescing ----

/// The parsed headers of a TCP segment that may join a GRO batch.
#[derive(Debug, Clone, Copy)]
struct TcpSeg {
    v6: bool,
    /// Offset of the TCP header (20 for IPv4 without options, 40 for IPv6).
    l4_off: usize,
    payload_off: usize,
    seq: u32,
    flags: u8,
}

/// What a decrypted packet is, for coalescing.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A TCP segment that may join a batch.
    Seg(TcpSeg),
    /// Some other TCP packet (pure ACK, SYN, FIN, RST, ...): goes out after its flow's batch.
    OtherTcp { v6: bool, l4_off: usize },
    /// Not TCP (UDP, ICMP, ...): independent of every batch.
    NotTcp,
    /// Fragments, IPv6 extension headers, garbage: goes out after every batch.
    Unknown,
}

/// IPv4 without options, not fragmented, or IPv6 with TCP as the first next header; a TCP
/// segment with payload whose flags are ACK and maybe PSH is a [`Kind::Seg`].
fn classify(p: &[u8]) -> Kind {
    let (v6, l4_off) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            if p[9] != PROTO_TCP {
                return Kind::NotTcp;
            }
            let plain = p.len() >= 40
                && p[0] == 0x45
                && usize::from(u16::from_be_bytes([p[2], p[3]])) == p.len()
                // MF clear and fragment offset 0 (DF may be set).
                && u16::from_be_bytes([p[6], p[7]]) & 0x3fff == 0;
            if !plain {
                return Kind::Unknown;
            }
            (false, 20)
        }
        Some(6) if p.len() >= 40 => {
            match p[6] {
                PROTO_TCP => {}
                PROTO_UDP | PROTO_ICMPV6 => return Kind::NotTcp,
                _ => return Kind::Unknown,
            }
            if p.len() < 60 || usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 != p.len() {
                return Kind::Unknown;
            }
            (true, 40)
        }
        _ => return Kind::Unknown,
    };
    let tcp_len = usize::from(p[l4_off + 12] >> 4) * 4;
    let payload_off = l4_off + tcp_len;
    let flags = p[l4_off + 13];
    let bad = TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_ECE | TCP_CWR;
    if tcp_len < 20 || payload_off >= p.len() || flags & bad != 0 || flags & TCP_ACK == 0 {
        return Kind::OtherTcp { v6, l4_off };
    }
    let seq = u32::from_be_bytes([p[l4_off + 4], p[l4_off + 5], p[l4_off + 6], p[l4_off + 7]]);
    Kind::Seg(TcpSeg {
        v6,
        l4_off,
        payload_off,
        seq,
        flags,
    })
}

/// One open batch: `virtio_net_hdr` + the first segment's headers + all payloads so far.
#[derive(Debug)]
struct Batch {
    buf: Vec<u8>,
    seg: TcpSeg,
    /// Payload size of the first segment: every segment but the last has exactly this size.
    mss: usize,
    next_seq: u32,
    count: u16,
    /// A short or PSH segment ended the batch.
    closed: bool,
}

impl Batch {
    fn ip(&self) -> &[u8] {
        &self.buf[VNET_HDR_LEN..]
    }

    /// Same addresses and ports (the flow) as the TCP packet `pkt`.
    fn same_flow(&self, v6: bool, l4_off: usize, pkt: &[u8]) -> bool {
        let first = self.ip();
        let t = l4_off;
        let addrs = if v6 { 8..40 } else { 12..20 };
        v6 == self.seg.v6
            && first[addrs.clone()] == pkt[addrs]
            && first[self.seg.l4_off..self.seg.l4_off + 4] == pkt[t..t + 4]
    }

    /// `seg` (of the same flow) continues this batch exactly.
    fn can_join(&self, seg: &TcpSeg, pkt: &[u8]) -> bool {
        let first = self.ip();
        let payload = pkt.len() - seg.payload_off;
        if self.closed
            || seg.payload_off != self.seg.payload_off
            || seg.seq != self.next_seq
            || payload > self.mss
            || first.len() + payload > MAX_IP_PACKET + if seg.v6 { 40 } else { 0 }
        {
            return false;
        }
        let t = seg.l4_off;
        let same_ip = if seg.v6 {
            // version/traffic class/flow label, next header + hop limit.
            first[0..4] == pkt[0..4] && first[6..8] == pkt[6..8]
        } else {
            let id0 = u16::from_be_bytes([first[4], first[5]]);
            let id = u16::from_be_bytes([pkt[4], pkt[5]]);
            first[0..2] == pkt[0..2]
                && id == id0.wrapping_add(self.count)
                && first[6..10] == pkt[6..10]
        };
        // ACK number; data offset, flags except PSH, window; options.
        same_ip
            && first[t + 8..t + 13] == pkt[t + 8..t + 13]
            && (first[t + 13] & !TCP_PSH) == (pkt[t + 13] & !TCP_PSH)
            && first[t + 14..t + 16] == pkt[t + 14..t + 16]
            && first[t + 20..seg.payload_off] == pkt[t + 20..seg.payload_off]
    }

    fn append(&mut self, seg: &TcpSeg, pkt: &[u8]) {
        let payload = &pkt[seg.payload_off..];
        self.buf.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(payload.len() as u32);
        self.count += 1;
        if payload.len() < self.mss || seg.flags & TCP_PSH != 0 {
            self.closed = true;
        }
        if seg.flags & TCP_PSH != 0 {
            let at = VNET_HDR_LEN + self.seg.l4_off + 13;
            self.buf[at] |= TCP_PSH;
        }
    }

    /// Fixes lengths and checksums and the `virtio_net_hdr`: one segment stays a plain packet,
    /// several become a GSO packet with a partial (pseudo-header) TCP checksum.
    fn finish(&mut self) -> &[u8] {
        if self.count > 1 {
            let t = self.seg.l4_off;
            let ip = &mut self.buf[VNET_HDR_LEN..];
            let total = ip.len();
            if self.seg.v6 {
                ip[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            } else {
                ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                ipv4_header_checksum(&mut ip[..20]);
            }
            let partial = csum_fold(pseudo_sum(ip, PROTO_TCP, total - t));
            ip[t + 16..t + 18].copy_from_slice(&partial.to_be_bytes());
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if self.seg.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: self.seg.payload_off as u16,
                gso_size: self.mss as u16,
                csum_start: t as u16,
                csum_offset: 16,
            };
            self.buf[..VNET_HDR_LEN].copy_from_slice(&hdr.encode());
        }
        &self.buf
    }
}

/// Most flows with an open batch at once; a new flow beyond that flushes the oldest.
const MAX_FLOWS: usize = 8;

/// Coalesces consecutive TCP segments of each flow (as Linux GRO does) and writes everything
/// through a callback, each buffer prefixed with its `virtio_net_hdr`.
///
/// Up to [`MAX_FLOWS`] flows have an open batch at once. A segment joins its flow's batch only
/// if it continues it exactly: same IP TOS/TTL (traffic class, flow label, hop limit), the
/// next IPv4 id, same ACK, window and TCP options, sequence number = end of the batch, payload
/// no larger than the first one; otherwise that batch is written and the segment starts a new
/// one. A shorter segment or one with PSH joins and then closes the batch. Other TCP packets
/// (pure ACKs, FIN, SYN, RST, URG, ECE, CWR) are written on their own right after their flow's
/// batch; non-TCP packets at once; IPv4 fragments, IPv6 extension headers and anything
/// unparsable after every open batch. So order within a flow is always kept (flows may
/// overtake each other, which is harmless).
///
/// Checksums of the coalesced segments are not verified: the packets were authenticated by
/// WireGuard (the Linux implementation marks them `CHECKSUM_UNNECESSARY` for the same reason).
#[derive(Debug, Default)]
pub(crate) struct Gro {
    /// Open batches, oldest first.
    open: Vec<Batch>,
    /// Buffers of written batches, for reuse.
    spare: Vec<Vec<u8>>,
}

impl Gro {
    /// Offers one packet; whatever must go out before it is written first.
    pub(crate) fn push<E>(
        &mut self,
        pkt: &[u8],
        write: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let seg = match classify(pkt) {
            Kind::Seg(seg) => seg,
            other => {
                let mut r = match other {
                    Kind::OtherTcp { v6, l4_off } => {
                        match self.open.iter().position(|b| b.same_flow(v6, l4_off, pkt)) {
                            Some(i) => self.write_batch(i, write),
                            None => Ok(()),
                        }
                    }
                    Kind::NotTcp => Ok(()),
                    Kind::Unknown | Kind::Seg(_) => self.flush(write),
                };
                let mut buf = self.take_buf();
                buf.extend_from_slice(&VnetHdr::default().encode());
                buf.extend_from_slice(pkt);
                let w = write(&buf);
                self.spare.push(buf);
                if r.is_ok() {
                    r = w;
                }
                return r;
            }
        };
        let mut r = Ok(());
        let flow = |b: &Batch| b.same_flow(seg.v6, seg.l4_off, pkt);
        if let Some(i) = self.open.iter().position(flow) {
            if self.open[i].can_join(&seg, pkt) {
                self.open[i].append(&seg, pkt);
                return Ok(());
            }
            r = self.write_batch(i, write);
        } else if self.open.len() == MAX_FLOWS {
            r = self.write_batch(0, write);
        }
        let mss = pkt.len() - seg.payload_off;
        let mut buf = self.take_buf();
        buf.extend_from_slice(&[0; VNET_HDR_LEN]);
        buf.extend_from_slice(pkt);
        self.open.push(Batch {
            buf,
            seg,
            mss,
            next_seq: seg.seq.wrapping_add(mss as u32),
            count: 1,
            closed: seg.flags & TCP_PSH != 0,
        });
        r
    }

    fn take_buf(&mut self) -> Vec<u8> {
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(VNET_HDR_LEN + MAX_IP_PACKET));
        buf.clear();
        buf
    }

    fn write_batch<E>(
        &mut self,
        i: usize,
        write: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut b = self.open.remove(i);
        let r = write(b.finish());
        self.spare.push(b.buf);
        r
    }

    /// Writes every open batch, oldest first. The first error is returned after all were
    /// tried.
    pub(crate) fn flush<E>(
        &mut self,
        write: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut r = Ok(());
        while !self.open.is_empty() {
            let w = self.write_batch(0, write);
            if r.is_ok() {
                r = w;
            }
        }
        r
    }
}

/// Fuzzing entry: `data` is a `virtio_net_hdr` and a packet as read from the TUN device (each
/// TSO segment is cut and the checksum completed), then, split at 2-byte length prefixes, a run
/// of decrypted packets handed to GRO. Panics only on a bug (an out-of-bounds cut, a segment
/// that does not re-parse).
pub fn fuzz_offload(data: &[u8]) {
    let Ok(hdr) = VnetHdr::decode(data) else {
        return;
    };
    let pkt = &data[VNET_HDR_LEN..];
    if hdr.gso_type != GSO_NONE {
        if let Ok(tso) = Tso::new(&hdr, pkt) {
            let n = tso.count();
            // The first segments and the last: enough to reach every branch, bounded work.
            for i in (0..n.min(16)).chain(std::iter::once(n - 1)) {
                let mut out = vec![0u8; tso.segment_len(i)];
                tso.write_segment(i, &mut out);
                assert!(
                    out.len() <= pkt.len(),
                    "a segment is longer than its packet"
                );
            }
        }
    } else if hdr.flags & F_NEEDS_CSUM != 0 {
        let mut p = pkt.to_vec();
        let _ = complete_checksum(&hdr, &mut p);
    }
    let mut gro = Gro::default();
    let mut written = 0usize;
    let mut write = |b: &[u8]| -> Result<(), ()> {
        let h = VnetHdr::decode(b).map_err(|_| ())?;
        assert!(b.len() - VNET_HDR_LEN <= MAX_IP_PACKET + VNET_HDR_LEN);
        written += usize::from(h.hdr_len > 0);
        Ok(())
    };
    let mut rest = pkt;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 2048;
        let end = (2 + n).min(rest.len());
        let _ = gro.push(&rest[2..end], &mut write);
        rest = &rest[end..];
    }
    let _ = gro.flush(&mut write);
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- reference computations, written independently of the code under test ----

    /// RFC 1071 the slow way: 16-bit big-endian words, odd byte padded, carries folded.
    fn ref_checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            let w = (u32::from(c[0]) << 8) | u32::from(c.get(1).copied().unwrap_or(0));
            sum += w;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn ref_pseudo(ip: &[u8], l4_len: usize) -> Vec<u8> {
        let mut p = Vec::new();
        if ip[0] >> 4 == 4 {
            p.extend_from_slice(&ip[12..20]);
            p.extend_from_slice(&[0, PROTO_TCP]);
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            p.extend_from_slice(&ip[8..40]);
            p.extend_from_slice(&(l4_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, PROTO_TCP]);
        }
        p
    }

    /// A correct TCP checksum sums (with pseudo-header) to 0xffff, i.e. checksums to 0.
    fn tcp_checksum_ok(ip: &[u8], l4_off: usize) -> bool {
        let mut all = ref_pseudo(ip, ip.len() - l4_off);
        all.extend_from_slice(&ip[l4_off..]);
        ref_checksum(&all) == 0
    }

    fn ipv4_header_ok(ip: &[u8]) -> bool {
        ref_checksum(&ip[..usize::from(ip[0] & 0x0f) * 4]) == 0
    }

    /// Deterministic bytes (xorshift), no rand dependency.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    struct Tcp<'a> {
        v6: bool,
        ip_opts: &'a [u8],
        id: u16,
        seq: u32,
        flags: u8,
        tcp_opts: &'a [u8],
        payload: &'a [u8],
    }

    impl Default for Tcp<'_> {
        fn default() -> Self {
            Self {
                v6: false,
                ip_opts: &[],
                id: 0x1234,
                seq: 0xffff_f000, // wraps within a 64 KB super-packet
                flags: TCP_ACK,
                // NOP NOP timestamps, as Linux sends them
                tcp_opts: &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
                payload: b"",
            }
        }
    }

    /// Builds an IPv4/IPv6 TCP packet with correct lengths and checksums (reference code).
    fn build(t: &Tcp) -> Vec<u8> {
        let tcp_len = 20 + t.tcp_opts.len();
        let mut tcp = vec![0u8; tcp_len];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&t.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        tcp[12] = ((tcp_len / 4) as u8) << 4;
        tcp[13] = t.flags;
        tcp[14..16].copy_from_slice(&501u16.to_be_bytes());
        tcp[20..].copy_from_slice(t.tcp_opts);
        tcp.extend_from_slice(t.payload);
        let mut ip = if t.v6 {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[1] = 0x0a; // traffic class / flow label bits
            h[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
            h[6] = PROTO_TCP;
            h[7] = 64;
            h[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            h[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            h
        } else {
            let ihl = 20 + t.ip_opts.len();
            let mut h = vec![0u8; ihl];
            h[0] = 0x40 | (ihl / 4) as u8;
            h[2..4].copy_from_slice(&((ihl + tcp.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&t.id.to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = 64;
            h[9] = PROTO_TCP;
            h[12..16].copy_from_slice(&[10, 8, 0, 1]);
            h[16..20].copy_from_slice(&[10, 8, 0, 2]);
            h[20..].copy_from_slice(t.ip_opts);
            let c = ref_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        };
        let l4_off = ip.len();
        ip.extend_from_slice(&tcp);
        let mut all = ref_pseudo(&ip, ip.len() - l4_off);
        all.extend_from_slice(&ip[l4_off..]);
        let c = ref_checksum(&all);
        ip[l4_off + 16..l4_off + 18].copy_from_slice(&c.to_be_bytes());
        ip
    }

    /// A kernel-style TSO super-packet: full headers, TCP checksum field = pseudo-header sum.
    fn super_packet(t: &Tcp, mss: u16) -> (VnetHdr, Vec<u8>) {
        let mut p = build(t);
        let l4_off = if t.v6 { 40 } else { 20 + t.ip_opts.len() };
        let partial = {
            let pseudo = ref_pseudo(&p, p.len() - l4_off);
            !ref_checksum(&pseudo)
        };
        p[l4_off + 16..l4_off + 18].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if t.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: (l4_off + 20 + t.tcp_opts.len()) as u16,
            gso_size: mss,
            csum_start: l4_off as u16,
            csum_offset: 16,
        };
        (hdr, p)
    }

    fn split_all(hdr: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
        let tso = Tso::new(hdr, p).expect("valid TSO packet");
        (0..tso.count())
            .map(|i| {
                let mut out = vec![0; tso.segment_len(i)];
                tso.write_segment(i, &mut out);
                out
            })
            .collect()
    }

    fn coalesce(pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut gro = Gro::default();
        let mut out = Vec::new();
        let mut w = |b: &[u8]| -> Result<(), ()> {
            out.push(b.to_vec());
            Ok(())
        };
        for p in pkts {
            gro.push(p, &mut w).expect("collecting never fails");
        }
        gro.flush(&mut w).expect("collecting never fails");
        out
    }

    // ---- checksum and header ----

    #[test]
    fn checksum_matches_reference_for_every_length_and_alignment() {
        let data = bytes(300, 7);
        for start in 0..9 {
            for end in start..data.len() {
                let d = &data[start..end];
                assert_eq!(
                    !csum_fold(csum_add(0, d)),
                    ref_checksum(d),
                    "{start}..{end}"
                );
            }
        }
        // Worst case for carries: all ones.
        let ff = vec![0xff; 65535];
        assert_eq!(!csum_fold(csum_add(0, &ff)), ref_checksum(&ff));
    }

    #[test]
    fn vnet_hdr_round_trips_and_rejects_short_input() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 86,
            gso_size: 1368,
            csum_start: 40,
            csum_offset: 16,
        };
        let b = h.encode();
        assert_eq!(VnetHdr::decode(&b), Ok(h));
        assert_eq!(b[..2], [1, 4]);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 1368);
        for n in 0..VNET_HDR_LEN {
            assert_eq!(VnetHdr::decode(&b[..n]), Err(OffloadError::Truncated));
        }
    }

    #[test]
    fn completes_a_partial_checksum() {
        let payload = bytes(999, 3);
        let (mut hdr, mut p) = super_packet(
            &Tcp {
                payload: &payload,
                ..Tcp::default()
            },
            1448,
        );
        hdr.gso_type = GSO_NONE;
        assert!(!tcp_checksum_ok(&p, 20));
        complete_checksum(&hdr, &mut p).expect("offsets inside the packet");
        assert!(tcp_checksum_ok(&p, 20));
        assert_eq!(
            p,
            build(&Tcp {
                payload: &payload,
                ..Tcp::default()
            })
        );
        hdr.csum_start = p.len() as u16;
        assert_eq!(
            complete_checksum(&hdr, &mut p),
            Err(OffloadError::BadChecksumOffsets)
        );
        hdr.csum_start = (p.len() - 10) as u16;
        assert_eq!(
            complete_checksum(&hdr, &mut p),
            Err(OffloadError::BadChecksumOffsets)
        );
    }

    #[test]
    fn a_udp_checksum_of_zero_is_sent_as_ffff() {
        // IPv4/UDP, 20 + 8 + 10 bytes; the UDP checksum field holds the pseudo-header sum.
        let mut p = vec![0u8; 38];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&38u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 8, 0, 1]);
        p[16..20].copy_from_slice(&[10, 8, 0, 2]);
        p[20..22].copy_from_slice(&53u16.to_be_bytes());
        p[22..24].copy_from_slice(&5353u16.to_be_bytes());
        p[24..26].copy_from_slice(&18u16.to_be_bytes());
        p[28..36].copy_from_slice(b"kawaii!!");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17, 0, 18]);
        let partial = !ref_checksum(&pseudo);
        p[26..28].copy_from_slice(&partial.to_be_bytes());
        // Choose the last payload word so that the full sum is 0xffff (checksum 0).
        let s0 = !ref_checksum(&p[20..]);
        p[36..38].copy_from_slice(&(!s0).to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        complete_checksum(&hdr, &mut p).expect("offsets inside the packet");
        assert_eq!(p[26..28], [0xff, 0xff]);
        let mut all = pseudo;
        all.extend_from_slice(&p[20..]);
        assert_eq!(ref_checksum(&all), 0, "0xffff verifies");
    }

    // ---- TSO split ----

    fn check_split(t: &Tcp, mss: u16) {
        let (hdr, p) = super_packet(t, mss);
        let l4 = usize::from(hdr.csum_start);
        let hl = usize::from(hdr.hdr_len);
        let segs = split_all(&hdr, &p);
        let mss = usize::from(mss);
        assert_eq!(segs.len(), t.payload.len().div_ceil(mss).max(1));
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let payload = &s[hl..];
            assert!(payload.len() == mss || (last && payload.len() <= mss));
            joined.extend_from_slice(payload);
            // Each segment equals the packet a stack would have built for it.
            let mut flags = t.flags;
            if !last {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                flags &= !TCP_CWR;
            }
            let expect = build(&Tcp {
                id: t.id.wrapping_add(i as u16),
                seq: t.seq.wrapping_add((i * mss) as u32),
                flags,
                payload,
                ..*t
            });
            assert_eq!(s, &expect, "segment {i}");
            assert!(tcp_checksum_ok(s, l4), "segment {i} TCP checksum");
            if !t.v6 {
                assert!(ipv4_header_ok(s), "segment {i} IPv4 header checksum");
            }
        }
        assert_eq!(joined, t.payload);
    }

    /// An IPv4 segment with ACK and PSH carrying `payload`.
    fn pushed(payload: &[u8]) -> Tcp<'_> {
        Tcp {
            payload,
            flags: TCP_ACK | TCP_PSH,
            ..Tcp::default()
        }
    }

    #[test]
    fn splits_ipv4_tso_with_odd_tail() {
        let payload = bytes(64_000 - 53, 11); // odd length, short last segment
        check_split(&pushed(&payload), 1368);
    }

    #[test]
    fn splits_ipv6_tso() {
        let payload = bytes(1368 * 7, 12); // exact multiple
        check_split(
            &Tcp {
                v6: true,
                payload: &payload,
                flags: TCP_ACK | TCP_PSH | TCP_FIN,
                ..Tcp::default()
            },
            1368,
        );
    }

    #[test]
    fn splits_ipv4_with_ip_options_and_no_tcp_options_and_cwr() {
        let payload = bytes(5001, 13);
        check_split(
            &Tcp {
                ip_opts: &[1, 1, 1, 0], // NOPs + end of options
                tcp_opts: &[],
                flags: TCP_ACK | TCP_CWR,
                id: 0xfffe, // wraps
                payload: &payload,
                ..Tcp::default()
            },
            1000,
        );
    }

    #[test]
    fn splits_a_tiny_tso_packet_into_one_segment() {
        let payload = bytes(7, 14);
        check_split(
            &Tcp {
                payload: &payload,
                ..Tcp::default()
            },
            1368,
        );
    }

    #[test]
    fn tso_rejects_garbage_and_every_truncated_prefix_is_safe() {
        let payload = bytes(3000, 15);
        for v6 in [false, true] {
            let (hdr, p) = super_packet(
                &Tcp {
                    v6,
                    payload: &payload,
                    ..Tcp::default()
                },
                1368,
            );
            for n in 0..p.len() {
                if let Ok(tso) = Tso::new(&hdr, &p[..n]) {
                    for i in 0..tso.count() {
                        let mut out = vec![0; tso.segment_len(i)];
                        tso.write_segment(i, &mut out);
                    }
                }
            }
            let hl = usize::from(hdr.hdr_len);
            assert!(Tso::new(&hdr, &p[..hl - 1]).is_err());
            let mut udp = hdr;
            udp.gso_type = 5; // GSO_UDP_L4: not offered
            assert_eq!(Tso::new(&udp, &p), Err(OffloadError::UnsupportedGso(5)));
            let mut zero = hdr;
            zero.gso_size = 0;
            assert!(Tso::new(&zero, &p).is_err());
        }
        let hdr = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let mut not_tcp = build(&Tcp::default());
        not_tcp[9] = 17;
        assert_eq!(Tso::new(&hdr, &not_tcp), Err(OffloadError::BadHeaders));
        assert_eq!(Tso::new(&hdr, &[]), Err(OffloadError::Truncated));
    }

    // ---- GRO ----

    /// What the kernel does with a GRO write: complete the partial checksum (or trust it) and
    /// re-segment; re-splitting our output must give back the original segments exactly.
    fn check_round_trip(t: &Tcp, mss: u16) {
        let (hdr, p) = super_packet(t, mss);
        let segs = split_all(&hdr, &p);
        let out = coalesce(&segs);
        assert_eq!(out.len(), 1, "one flow, in order: one write");
        let gro_hdr = VnetHdr::decode(&out[0]).expect("header");
        let gro_pkt = &out[0][VNET_HDR_LEN..];
        assert_eq!(gro_hdr.gso_type, hdr.gso_type);
        assert_eq!(gro_hdr.gso_size, mss);
        assert_eq!(gro_hdr.flags, F_NEEDS_CSUM);
        assert_eq!(gro_hdr.csum_start, hdr.csum_start);
        assert_eq!(gro_hdr.csum_offset, 16);
        assert_eq!(gro_hdr.hdr_len, hdr.hdr_len);
        if t.v6 {
            assert_eq!(
                usize::from(u16::from_be_bytes([gro_pkt[4], gro_pkt[5]])) + 40,
                gro_pkt.len()
            );
        } else {
            assert_eq!(
                usize::from(u16::from_be_bytes([gro_pkt[2], gro_pkt[3]])),
                gro_pkt.len()
            );
            assert!(ipv4_header_ok(gro_pkt));
        }
        let mut full = gro_pkt.to_vec();
        complete_checksum(&gro_hdr, &mut full).expect("offsets inside");
        assert!(tcp_checksum_ok(&full, usize::from(gro_hdr.csum_start)));
        assert_eq!(split_all(&gro_hdr, gro_pkt), segs);
    }

    #[test]
    fn coalesces_ipv4_segments_and_round_trips() {
        let payload = bytes(40_001, 21);
        check_round_trip(&pushed(&payload), 1368);
    }

    #[test]
    fn coalesces_ipv6_segments_and_round_trips() {
        let payload = bytes(1380 * 20, 22);
        check_round_trip(
            &Tcp {
                v6: true,
                tcp_opts: &[],
                payload: &payload,
                ..Tcp::default()
            },
            1380,
        );
    }

    /// Segment `i` of a flow: seq/id advance by `mss` and 1.
    fn seg(i: usize, mss: usize, flags: u8, len: usize, v6: bool) -> Vec<u8> {
        let payload = bytes(len, 100 + i as u64);
        build(&Tcp {
            v6,
            id: 100u16.wrapping_add(i as u16),
            seq: 5000u32.wrapping_add((i * mss) as u32),
            flags,
            payload: &payload,
            ..Tcp::default()
        })
    }

    fn gso(b: &[u8]) -> bool {
        VnetHdr::decode(b).expect("header").gso_type != GSO_NONE
    }

    #[test]
    fn psh_and_fin_end_a_batch() {
        let a = TCP_ACK;
        let pkts = vec![
            seg(0, 1000, a, 1000, false),
            seg(1, 1000, a | TCP_PSH, 1000, false),
            seg(2, 1000, a, 1000, false),
            seg(3, 1000, a, 1000, false),
            seg(4, 1000, a | TCP_FIN, 1000, false),
            seg(5, 1000, a, 1000, false),
        ];
        let out = coalesce(&pkts);
        assert_eq!(out.len(), 4, "[0+1 (PSH)] [2+3] [4 FIN] [5]");
        assert!(gso(&out[0]) && gso(&out[1]) && !gso(&out[2]) && !gso(&out[3]));
        // The PSH of the last member is kept on the coalesced header.
        assert_eq!(out[0][VNET_HDR_LEN + 33] & TCP_PSH, TCP_PSH);
        assert_eq!(out[1][VNET_HDR_LEN + 33] & TCP_PSH, 0);
        // Plain packets go out unchanged behind a zero header.
        assert_eq!(out[2][..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
        assert_eq!(out[2][VNET_HDR_LEN..], pkts[4][..]);
        assert_eq!(out[3][VNET_HDR_LEN..], pkts[5][..]);
    }

    #[test]
    fn a_short_segment_closes_the_batch() {
        let a = TCP_ACK;
        let pkts = vec![
            seg(0, 1000, a, 1000, true),
            seg(1, 1000, a, 999, true),
            // Continues the byte stream exactly, but after a short segment.
            build(&Tcp {
                v6: true,
                seq: 5000 + 1999,
                payload: &bytes(1000, 9),
                ..Tcp::default()
            }),
        ];
        let out = coalesce(&pkts);
        assert_eq!(out.len(), 2);
        assert!(gso(&out[0]) && !gso(&out[1]));
        assert_eq!(out[0].len(), VNET_HDR_LEN + pkts[0].len() + 999);
    }

    #[test]
    fn does_not_coalesce_gaps_other_flows_or_other_packets() {
        let a = TCP_ACK;
        let mut other_port = seg(1, 1000, a, 1000, false);
        other_port[20] ^= 1; // source port
        let mut udp = seg(9, 1000, a, 200, false);
        udp[9] = 17;
        let mut bad_id = seg(1, 1000, a, 1000, false);
        bad_id[5] ^= 0x10;
        let mut other_ack = seg(1, 1000, a, 1000, false);
        other_ack[28] ^= 1;
        let mut other_window = seg(1, 1000, a, 1000, false);
        other_window[34] ^= 1;
        let mut other_ts = seg(1, 1000, a, 1000, false);
        other_ts[48] ^= 1;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("gap in sequence", seg(2, 1000, a, 1000, false)),
            ("other flow", other_port),
            ("IPv4 id not consecutive", bad_id),
            ("other ACK", other_ack),
            ("other window", other_window),
            ("other timestamp", other_ts),
            ("IPv6 after IPv4", seg(1, 1000, a, 1000, true)),
            ("larger than the first", seg(1, 1000, a, 1001, false)),
            ("SYN", seg(1, 1000, a | TCP_SYN, 1000, false)),
            ("no payload", seg(1, 1000, a, 0, false)),
        ];
        for (what, p) in cases {
            let first = seg(0, 1000, a, 1000, false);
            let out = coalesce(&[first.clone(), p.clone()]);
            assert_eq!(out.len(), 2, "{what}");
            assert_eq!(out[0][VNET_HDR_LEN..], first[..], "{what}");
            assert_eq!(out[1][VNET_HDR_LEN..], p[..], "{what}");
        }
        // Not TCP: independent of the open batch, so it goes out at once.
        let first = seg(0, 1000, a, 1000, false);
        let out = coalesce(&[first.clone(), udp.clone()]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][VNET_HDR_LEN..], udp[..]);
        assert_eq!(out[1][VNET_HDR_LEN..], first[..]);
    }

    /// Segment `i` of flow `port` (source port 40000 + port).
    fn flow_seg(port: u16, i: usize) -> Vec<u8> {
        let mut p = seg(i, 1000, TCP_ACK, 1000, false);
        let sport = 40000 + port;
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        // Source port is in the checksum: rebuild it the reference way.
        p[36..38].copy_from_slice(&[0, 0]);
        let mut all = ref_pseudo(&p, p.len() - 20);
        all.extend_from_slice(&p[20..]);
        let c = ref_checksum(&all);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn interleaved_flows_coalesce_separately_and_keep_their_order() {
        let mut pkts = Vec::new();
        for i in 0..5 {
            for port in 0..3 {
                pkts.push(flow_seg(port, i));
            }
        }
        let out = coalesce(&pkts);
        assert_eq!(out.len(), 3, "one write per flow");
        for (port, o) in out.iter().enumerate() {
            let hdr = VnetHdr::decode(o).expect("header");
            let want: Vec<Vec<u8>> = (0..5).map(|i| flow_seg(port as u16, i)).collect();
            assert_eq!(split_all(&hdr, &o[VNET_HDR_LEN..]), want, "flow {port}");
        }
    }

    #[test]
    fn more_flows_than_the_table_still_deliver_everything_in_flow_order() {
        let flows = MAX_FLOWS as u16 + 3;
        let mut pkts = Vec::new();
        for i in 0..4 {
            for port in 0..flows {
                pkts.push(flow_seg(port, i));
            }
        }
        let out = coalesce(&pkts);
        // Re-split everything and check each flow's segments come out complete and in order.
        let mut per_flow: Vec<Vec<Vec<u8>>> = vec![Vec::new(); usize::from(flows)];
        for o in &out {
            let hdr = VnetHdr::decode(o).expect("header");
            let segs = if hdr.gso_type == GSO_NONE {
                vec![o[VNET_HDR_LEN..].to_vec()]
            } else {
                split_all(&hdr, &o[VNET_HDR_LEN..])
            };
            for sg in segs {
                let port = u16::from_be_bytes([sg[20], sg[21]]) - 40000;
                per_flow[usize::from(port)].push(sg);
            }
        }
        for port in 0..flows {
            let want: Vec<Vec<u8>> = (0..4).map(|i| flow_seg(port, i)).collect();
            assert_eq!(per_flow[usize::from(port)], want, "flow {port}");
        }
    }

    #[test]
    fn a_fin_comes_right_after_its_flows_coalesced_data() {
        let fin = seg(2, 1000, TCP_ACK | TCP_FIN, 1000, false);
        let pkts = vec![flow_seg(0, 0), flow_seg(1, 0), flow_seg(0, 1), fin.clone()];
        let out = coalesce(&pkts);
        assert_eq!(out.len(), 3, "[flow 0: 0+1] [FIN] [flow 1: 0]");
        assert!(gso(&out[0]));
        let hdr = VnetHdr::decode(&out[0]).expect("header");
        assert_eq!(
            split_all(&hdr, &out[0][VNET_HDR_LEN..]),
            [flow_seg(0, 0), flow_seg(0, 1)]
        );
        assert_eq!(
            out[1][VNET_HDR_LEN..],
            fin[..],
            "the FIN follows its flow's data"
        );
        assert_eq!(out[2][VNET_HDR_LEN..], flow_seg(1, 0)[..]);
    }

    #[test]
    fn a_pure_ack_of_another_flow_does_not_break_a_batch() {
        // The ACK of the reverse direction: ports swapped, no payload.
        let mut ack = seg(0, 1000, TCP_ACK, 0, false);
        ack[20..22].copy_from_slice(&5201u16.to_be_bytes());
        ack[22..24].copy_from_slice(&40000u16.to_be_bytes());
        let pkts = vec![flow_seg(0, 0), ack.clone(), flow_seg(0, 1), flow_seg(0, 2)];
        let out = coalesce(&pkts);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][VNET_HDR_LEN..], ack[..]);
        let hdr = VnetHdr::decode(&out[1]).expect("header");
        let want: Vec<Vec<u8>> = (0..3).map(|i| flow_seg(0, i)).collect();
        assert_eq!(split_all(&hdr, &out[1][VNET_HDR_LEN..]), want);
    }

    #[test]
    fn a_fragment_or_extension_header_flushes_everything_first() {
        let mut frag = seg(7, 1000, TCP_ACK, 100, false);
        frag[6] |= 0x20; // MF
        let mut ext = seg(7, 1000, TCP_ACK, 100, true);
        ext[6] = 0; // hop-by-hop options first
        for odd in [frag, ext] {
            let pkts = vec![flow_seg(0, 0), flow_seg(1, 0), odd.clone()];
            let out = coalesce(&pkts);
            assert_eq!(out.len(), 3);
            assert_eq!(out[2][VNET_HDR_LEN..], odd[..]);
        }
    }

    #[test]
    fn stops_at_64k() {
        let pkts: Vec<Vec<u8>> = (0..60)
            .map(|i| seg(i, 1400, TCP_ACK, 1400, false))
            .collect();
        let out = coalesce(&pkts);
        assert!(out.len() >= 2);
        let mut total = 0;
        for o in &out {
            assert!(o.len() - VNET_HDR_LEN <= MAX_IP_PACKET);
            total += o.len() - VNET_HDR_LEN - 52;
        }
        assert_eq!(total, 60 * 1400);
    }

    #[test]
    fn every_truncated_prefix_is_written_as_is() {
        let p = seg(0, 1000, TCP_ACK, 300, false);
        for n in 0..p.len() {
            let out = coalesce(&[p[..n].to_vec()]);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0][VNET_HDR_LEN..], p[..n]);
        }
    }
}
