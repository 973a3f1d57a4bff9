//! Gratuitous ARP through an `AF_PACKET` socket, and real-time scheduling for the VRRP thread.
//! Unsafe code (as in `io6.rs`): libc has no safe `sockaddr_ll` sendto nor
//! `sched_setscheduler`; every call below checks its return value and owns its fd.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn sys(path: String) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// The interface's index and MAC address, from sysfs.
pub fn link(ifname: &str) -> std::io::Result<(i32, [u8; 6])> {
    let index: i32 = sys(format!("/sys/class/net/{ifname}/ifindex"))?
        .parse()
        .map_err(|_| std::io::Error::other("bad ifindex"))?;
    let text = sys(format!("/sys/class/net/{ifname}/address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(std::io::Error::other(format!("bad MAC {text}")));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| std::io::Error::other("bad MAC"))?;
    }
    Ok((index, mac))
}

/// A send-only `AF_PACKET` socket, opened once: closing a packet socket waits for an RCU grace
/// period (`synchronize_net`, ~10 ms), which must not sit on the takeover path.
#[derive(Debug)]
pub struct Garp {
    fd: OwnedFd,
}

impl Garp {
    pub fn open() -> std::io::Result<Garp> {
        // Protocol 0: never hooked into receive.
        // SAFETY: plain syscall; the result is checked and wrapped in an OwnedFd at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        Ok(Garp {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Broadcasts one gratuitous ARP request for each address on `ifname`, from its own MAC.
    pub fn send(&self, ifname: &str, addresses: &[Ipv4Addr]) -> std::io::Result<()> {
        let (index, mac) = link(ifname)?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sll.sll_ifindex = index;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&kawaii_vrrp::arp::BROADCAST_MAC);
        for ip in addresses {
            let frame = kawaii_vrrp::gratuitous_arp(mac, *ip);
            // SAFETY: frame and sll outlive the call; the lengths passed are theirs.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Best effort: SCHED_FIFO for the calling thread, so adverts keep their timing when every CPU
/// is busy. Fails without CAP_SYS_NICE; the caller only logs that.
pub fn realtime() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; param lives across the call.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
