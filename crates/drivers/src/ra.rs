//! The router advertisement sender: one task per planned [`Advertiser`], on a raw ICMPv6 socket
//! bound to the private interface and the zone's link-local VIP. It advertises at once (a
//! takeover), then a few times quickly, then every interval, and answers router solicitations.
//! When the plan drops it (the VIP went to a sibling) or on shutdown it sends a final
//! advertisement with router lifetime 0 (RFC 4861 §6.2.5), so hosts drop it as their router
//! (without HA; with HA the link-local VIP moves on to a sibling, see [`Advertiser::withdraw`]).
//! Starting to hold a zone is announced by unsolicited neighbour advertisements of its IPv6
//! VIPs (RFC 4861 §7.2.6), with each of the first advertisements.

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName};
use kawaii_plan::Plan;
use kawaii_plan::ra::{Advertiser, PREFERRED_LIFETIME_S, RouterPreference, VALID_LIFETIME_S};
use kawaii_vrrp::ra::{
    ALL_NODES, ALL_ROUTERS, HOP_LIMIT, NeighborAdvert, Preference, PrefixInfo, RouterAdvert,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Advertisements sent quickly after a start (RFC 4861 §6.2.4 MAX_INITIAL_RTR_ADVERTISEMENTS),
/// and how far apart.
const INITIAL: u32 = 3;
const INITIAL_INTERVAL: Duration = Duration::from_secs(2);
/// Solicited advertisements are at least this far apart.
const MIN_SOLICITED_GAP: Duration = Duration::from_millis(300);
/// How often a sender checks whether it must stop or send.
const POLL: Duration = Duration::from_millis(50);

struct Running {
    plan: Advertiser,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Stops the sender (it withdraws) and waits for its final advertisement.
    async fn end(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// The driver: the running advertisers by (interface, source).
#[derive(Default)]
pub struct RouterAdverts {
    running: Mutex<BTreeMap<(String, Ipv6Addr), Running>>,
}

impl std::fmt::Debug for RouterAdverts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running: Vec<Advertiser> = self
            .running
            .lock()
            .map(|r| r.values().map(|r| r.plan.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("RouterAdverts")
            .field("running", &running)
            .finish()
    }
}

impl RouterAdverts {
    pub fn new() -> RouterAdverts {
        RouterAdverts::default()
    }

    /// Withdraws every advertiser (final advertisement with router lifetime 0) and waits for
    /// them to end.
    pub async fn shutdown(&self) {
        let all: Vec<Running> = match self.running.lock() {
            Ok(mut r) => std::mem::take(&mut *r).into_values().collect(),
            Err(_) => Vec::new(),
        };
        for r in all {
            r.end().await;
        }
    }
}

/// The advertisement `a` sends; `lifetime` 0 withdraws it.
pub fn advert(a: &Advertiser, mac: Option<[u8; 6]>, lifetime: u16) -> RouterAdvert {
    RouterAdvert {
        cur_hop_limit: 64,
        router_lifetime: lifetime,
        preference: match a.preference {
            RouterPreference::High => Preference::High,
            RouterPreference::Medium => Preference::Medium,
            RouterPreference::Low => Preference::Low,
        },
        source_link_layer: mac,
        prefixes: vec![PrefixInfo {
            prefix: a.prefix.network(),
            prefix_len: a.prefix.prefix_len(),
            on_link: true,
            autonomous: a.slaac,
            valid_lifetime: VALID_LIFETIME_S,
            preferred_lifetime: PREFERRED_LIFETIME_S,
        }],
        ..RouterAdvert::default()
    }
}

fn ifindex(dev: &str) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("{dev}: unreadable ifindex {text:?}")))
}

fn mac(dev: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).ok()?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    bytes.try_into().ok()
}

/// A raw ICMPv6 socket on `dev` with source `source`. Bound with IP_FREEBIND: the final
/// advertisement may leave after the link-local VIP was taken off the interface.
fn open(dev: &str, source: Ipv6Addr) -> std::io::Result<(Socket, u32)> {
    let index = ifindex(dev)?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(dev.as_bytes()))?;
    s.set_freebind_v6(true)?;
    s.bind(&SockAddr::from(SocketAddrV6::new(source, 0, 0, index)))?;
    s.set_multicast_hops_v6(u32::from(HOP_LIMIT))?;
    s.set_unicast_hops_v6(u32::from(HOP_LIMIT))?;
    s.set_multicast_if_v6(index)?;
    s.set_multicast_loop_v6(false)?;
    // Router solicitations go to all-routers; a forwarding interface is in it already.
    if let Err(e) = s.join_multicast_v6(&ALL_ROUTERS, index)
        && e.raw_os_error() != Some(libc::EADDRINUSE)
    {
        return Err(e);
    }
    s.set_read_timeout(Some(POLL))?;
    Ok((s, index))
}

fn send(sock: &Socket, ra: &RouterAdvert, source: Ipv6Addr, index: u32) {
    let bytes = match ra.encode_checked(source, ALL_NODES) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(%e, "router advertisement does not encode");
            return;
        }
    };
    let to = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, index));
    if let Err(e) = sock.send_to(&bytes, &to) {
        tracing::warn!(error = %e, %source, lifetime = ra.router_lifetime, "router advertisement not sent");
    }
}

/// Unsolicited neighbour advertisements of `a`'s VIPs: on the private interface through `lan`
/// (from the link-local VIP), elsewhere from a socket of that interface bound to the VIP.
fn announce(a: &Advertiser, lan: &Socket, index: u32) {
    for (dev, target) in &a.neighbours {
        let na = NeighborAdvert::takeover(*target, mac(dev), true);
        let sent = if *dev == a.interface {
            let to = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, index));
            lan.send_to(&na.encode_checked(a.source, ALL_NODES), &to)
        } else {
            open(dev, *target).and_then(|(s, i)| {
                let to = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, i));
                s.send_to(&na.encode_checked(*target, ALL_NODES), &to)
            })
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, interface = %dev, %target, "neighbour advertisement not sent");
        }
    }
}

/// Unsolicited neighbour advertisements of `targets` (interface, VIP) at once, each from a
/// socket of its interface bound to the VIP itself (FREEBIND: the VIP may not be on the
/// interface yet). The VRRP speaker sends them the moment a zone's IPv6 virtual router takes
/// over from a master that went silent or resigned (not on preemption, see
/// `vrrp::announce_at_once`), before the reconcile pass has put the VIPs on: hosts and the upstream forward to this
/// node a pass earlier (it forwards what is not addressed to the VIPs themselves already). The
/// advertiser sends them again once it runs.
pub fn announce_takeover(targets: &[(String, Ipv6Addr)]) {
    for (dev, target) in targets {
        let na = NeighborAdvert::takeover(*target, mac(dev), true);
        let sent = open(dev, *target).and_then(|(s, i)| {
            let to = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, i));
            s.send_to(&na.encode_checked(*target, ALL_NODES), &to)
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, interface = %dev, %target, "neighbour advertisement not sent");
        }
    }
}

/// One advertiser's life (a blocking thread, like the VRRP speaker's) on its open socket:
/// advertise until `stop`, then withdraw.
fn run(a: Advertiser, sock: Socket, index: u32, stop: Arc<AtomicBool>) {
    let hw = mac(&a.interface);
    let live = advert(&a, hw, a.router_lifetime_s);
    tracing::info!(zone = %a.zone, interface = %a.interface, source = %a.source, prefix = %a.prefix, slaac = a.slaac, "advertising as IPv6 router");
    let mut sent = 0u32;
    let mut next = Instant::now();
    let mut last_solicited: Option<Instant> = None;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            send(&sock, &live, a.source, index);
            if sent <= INITIAL {
                announce(&a, &sock, index);
            }
            sent += 1;
            next += if sent <= INITIAL {
                INITIAL_INTERVAL
            } else {
                Duration::from_secs(u64::from(a.interval_s))
            };
        }
        // The read times out every POLL: the stop flag and the timer are checked that often.
        if let Ok(n) = (&sock).read(&mut buf)
            && kawaii_vrrp::ra::is_router_solicit(&buf[..n])
            && last_solicited.is_none_or(|t| t.elapsed() >= MIN_SOLICITED_GAP)
        {
            last_solicited = Some(Instant::now());
            send(&sock, &live, a.source, index);
        }
    }
    if a.withdraw {
        // RFC 4861 §6.2.5: no longer a router here.
        send(&sock, &advert(&a, hw, 0), a.source, index);
        tracing::info!(zone = %a.zone, source = %a.source, "withdrew IPv6 router (lifetime 0)");
    } else {
        tracing::info!(zone = %a.zone, source = %a.source, "stopped advertising (the VIP moves on)");
    }
}

impl Driver for RouterAdverts {
    fn name(&self) -> DriverName {
        DriverName::RouterAdverts
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move {
            let wanted: BTreeMap<(String, Ipv6Addr), &Advertiser> = plan
                .ra
                .iter()
                .map(|a| ((a.interface.clone(), a.source), a))
                .collect();
            let poisoned = || DriverError::transient("router advertisement state poisoned");
            // Those no longer planned (or planned otherwise) stop first.
            let gone: Vec<Running> = {
                let mut running = self.running.lock().map_err(|_| poisoned())?;
                let stale: Vec<(String, Ipv6Addr)> = running
                    .iter()
                    .filter(|(k, r)| wanted.get(*k).is_none_or(|w| **w != r.plan))
                    .map(|(k, _)| k.clone())
                    .collect();
                stale.iter().filter_map(|k| running.remove(k)).collect()
            };
            for r in gone {
                r.end().await;
            }
            // Then the new ones: a socket that cannot be opened (the interface is not there
            // yet) fails the apply, which the reconcile loop retries.
            let mut running = self.running.lock().map_err(|_| poisoned())?;
            for (k, a) in &wanted {
                if running.contains_key(k) {
                    continue;
                }
                let (sock, index) = open(&a.interface, a.source).map_err(|e| {
                    DriverError::transient_from(
                        format!("router advertisements on {} from {}", a.interface, a.source),
                        e,
                    )
                })?;
                let stop = Arc::new(AtomicBool::new(false));
                let (plan, flag) = ((*a).clone(), stop.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("ra-{}", a.interface))
                    .spawn(move || run(plan, sock, index, flag))
                    .map_err(|e| DriverError::transient_from("starting a router advertiser", e))?;
                running.insert(
                    k.clone(),
                    Running {
                        plan: (*a).clone(),
                        stop,
                        thread,
                    },
                );
            }
            Ok(Applied::quiet())
        })
    }
}
