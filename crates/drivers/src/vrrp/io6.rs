//! The IPv6 side of the VRRP speaker's sockets: a raw IPv6 socket (next header 112) hands over
//! the payload only, so the destination and the hop limit that RFC 5798 §7.1 checks come as
//! ancillary data (`IPV6_PKTINFO`, `IPV6_HOPLIMIT`), read with `recvmsg`; and the speaker waits
//! on its IPv4 and IPv6 sockets at once with `poll`. libc has no safe wrapper for either: every
//! call below checks its return value, and the buffers it fills outlive it.
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Asks the kernel for the destination address and hop limit of every datagram received on
/// `sock`.
pub fn want_pktinfo(sock: &impl AsRawFd) -> io::Result<()> {
    for opt in [libc::IPV6_RECVPKTINFO, libc::IPV6_RECVHOPLIMIT] {
        let on: libc::c_int = 1;
        // SAFETY: plain setsockopt with a c_int option value of the size given.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One datagram from a raw IPv6 socket: payload length, source, destination, hop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram6 {
    pub len: usize,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
}

/// Reads one datagram without blocking (`WouldBlock` when none is queued). A datagram without
/// the ancillary data asked for by [`want_pktinfo`] is an error (it cannot be checked).
pub fn recv(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Datagram6> {
    // SAFETY: zeroed sockaddr_in6 and msghdr are valid values; every pointer stored in `msg`
    // points into a local or into `buf`, all of which outlive the recvmsg call; CMSG_* walk the
    // control buffer within the length the kernel reported, and the data is read unaligned.
    unsafe {
        let mut from: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 32];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::other("datagram truncated"));
        }
        let (mut dst, mut hop_limit) = (None, None);
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == libc::IPPROTO_IPV6 {
                let data = libc::CMSG_DATA(c);
                if h.cmsg_type == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                } else if h.cmsg_type == libc::IPV6_HOPLIMIT {
                    let hops: libc::c_int = std::ptr::read_unaligned(data.cast());
                    hop_limit = u8::try_from(hops).ok();
                }
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
        match (dst, hop_limit) {
            (Some(dst), Some(hop_limit)) => Ok(Datagram6 {
                len: usize::try_from(n).unwrap_or(0),
                src: Ipv6Addr::from(from.sin6_addr.s6_addr),
                dst,
                hop_limit,
            }),
            _ => Err(io::Error::other("no destination or hop limit reported")),
        }
    }
}

pub use kawaii_vrrp::packet6::is_link_local;

/// Waits up to `timeout` until one of `fds` is readable; returns which are.
pub fn wait(fds: &[RawFd], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: `polled` is a live array of `polled.len()` pollfds; `ts` outlives the call; no
    // signal mask is given.
    let r = unsafe {
        libc::ppoll(
            polled.as_mut_ptr(),
            polled.len() as libc::nfds_t,
            &raw const ts,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(polled
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR) != 0)
        .collect())
}

/// The link-local addresses of `dev` from `/proc/net/if_inet6`, permanent ones (DAD done)
/// first: `(address, tentative)`.
pub fn link_locals(dev: &str) -> io::Result<Vec<(Ipv6Addr, bool)>> {
    let text = std::fs::read_to_string("/proc/net/if_inet6")?;
    Ok(parse_if_inet6(&text, dev))
}

/// `/proc/net/if_inet6` lines: address (32 hex digits), ifindex, prefix length, scope, flags,
/// name. Scope 0x20 is link-local; flag 0x40 is tentative.
fn parse_if_inet6(text: &str, dev: &str) -> Vec<(Ipv6Addr, bool)> {
    let mut out: Vec<(Ipv6Addr, bool)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [hex, _, _, scope, flags, name] = f.as_slice() else {
                return None;
            };
            if *name != dev || *scope != "20" {
                return None;
            }
            let bits = u128::from_str_radix(hex, 16).ok()?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            Some((Ipv6Addr::from(bits), flags & 0x40 != 0))
        })
        .collect();
    out.sort_by_key(|(_, tentative)| *tentative);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_locals_of_one_interface_settled_first() {
        let text = "\
20010db8000100000000000000000001 03 40 00 80     lan0
fe800000000000000000000000000001 03 40 20 c0     lan0
fe8000000000000000000000000000aa 03 40 20 80     lan0
fe8000000000000000000000000000bb 04 40 20 80     wan0
00000000000000000000000000000001 01 80 10 80       lo
";
        assert_eq!(
            parse_if_inet6(text, "lan0"),
            vec![
                ("fe80::aa".parse().expect("ip"), false),
                ("fe80::1".parse().expect("ip"), true),
            ]
        );
        assert!(parse_if_inet6(text, "eth9").is_empty());
    }
}
