//! Gratuitous ARP frames a new master broadcasts for each virtual IPv4 address (RFC 5798 §6.4.1,
//! §6.4.2), built as Ethernet + ARP bytes for the driver to send on an `AF_PACKET` socket.

use std::net::Ipv4Addr;

/// Length of an Ethernet II header plus an Ethernet/IPv4 ARP packet (no FCS, no padding; the NIC
/// pads to the 60-byte minimum).
pub const GARP_LEN: usize = 42;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

const ETHERTYPE_IPV4: u16 = 0x0800;
const HTYPE_ETHERNET: u16 = 1;
const OPER_REQUEST: u16 = 1;

/// The IPv4 virtual router MAC address `00-00-5E-00-01-{VRID}` (RFC 5798 §7.3). Kawaii uses the
/// interface's own MAC by default, as keepalived does, because cloud networks drop unknown MACs.
pub const fn virtual_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// An ARP announcement for `ip` from `sender_mac`: broadcast, ARP request, sender IP = target IP
/// = `ip`, target hardware address zero (RFC 5227 §2.3 "ARP Announcement", RFC 5944 §4.6).
pub fn gratuitous_arp(sender_mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_LEN] {
    gratuitous_arp_with_target_hw(sender_mac, ip, [0; 6])
}

/// Like [`gratuitous_arp`] with a chosen target hardware address, which receivers ignore:
/// keepalived puts the broadcast address there, RFC 5798 §6.4.1 the virtual router MAC.
pub fn gratuitous_arp_with_target_hw(
    sender_mac: [u8; 6],
    ip: Ipv4Addr,
    target_hw: [u8; 6],
) -> [u8; GARP_LEN] {
    let mut frame = [0u8; GARP_LEN];
    let parts: [&[u8]; 12] = [
        // Ethernet II
        &BROADCAST_MAC,
        &sender_mac,
        &ETHERTYPE_ARP.to_be_bytes(),
        // ARP (RFC 826)
        &HTYPE_ETHERNET.to_be_bytes(),
        &ETHERTYPE_IPV4.to_be_bytes(),
        &[6, 4],
        &OPER_REQUEST.to_be_bytes(),
        &sender_mac,
        &ip.octets(),
        &target_hw,
        &ip.octets(),
        &[],
    ];
    let mut at = 0;
    for part in parts {
        frame[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, GARP_LEN);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn announcement_hand_vector() {
        let expected: [u8; GARP_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // source: sender MAC
            0x08, 0x06, // EtherType ARP
            0x00, 0x01, // hardware type Ethernet
            0x08, 0x00, // protocol type IPv4
            0x06, 0x04, // address lengths
            0x00, 0x01, // request
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // sender hardware address
            203, 0, 113, 10, // sender protocol address = VIP
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target hardware address: zero
            203, 0, 113, 10, // target protocol address = VIP
        ];
        assert_eq!(
            gratuitous_arp(MAC, Ipv4Addr::new(203, 0, 113, 10)),
            expected
        );
    }

    #[test]
    fn matches_keepalived_capture() {
        let captured = include_bytes!("../testdata/keepalived-garp.bin");
        let sender: [u8; 6] = captured[6..12].try_into().expect("6 bytes");
        let frame =
            gratuitous_arp_with_target_hw(sender, Ipv4Addr::new(192, 0, 2, 100), BROADCAST_MAC);
        assert_eq!(&frame[..], &captured[..]);
    }

    #[test]
    fn virtual_router_mac() {
        assert_eq!(virtual_mac(51), [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
    }
}
