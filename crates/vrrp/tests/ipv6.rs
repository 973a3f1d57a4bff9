//! VRRPv3 over IPv6 end to end on a fake clock: two virtual routers whose adverts go through
//! the wire format (encoded from the link-local source to ff02::12, checked and decoded as the
//! receiver's socket reports them), the configuration rules RFC 5798 adds for IPv6, and keepalived's
//! captured IPv6 advert fed to the state machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use kawaii_vrrp::{
    Action, AdvertInterval, Config, ConfigError, HOP_LIMIT, Input, MULTICAST_GROUP6, Reason, State,
    VirtualRouter, check_ttl, decode_datagram6, decode_payload,
};

const LL_VIP: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

fn node(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0xff, 0xfe00, last)
}

fn config(last: u16, priority: u8) -> Config {
    Config {
        vrid: 51,
        priority,
        primary_address: node(last).into(),
        addresses: vec![LL_VIP.into(), VIP6.into()],
        advert_interval: AdvertInterval::from_centis(5).expect("5 cs"),
        preempt: true,
        preempt_delay: Duration::ZERO,
    }
}

/// Every advert in `actions`, as the bytes that go on the wire from `src` to ff02::12.
fn wire(actions: &[Action], src: Ipv6Addr) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert { advert } => {
                Some(advert.encode(src, MULTICAST_GROUP6).expect("encodable"))
            }
            _ => None,
        })
        .collect()
}

/// Two routers on a fake link; returns (time of the last step, transitions per node).
struct Link {
    nodes: Vec<(Ipv6Addr, VirtualRouter, bool)>,
    /// The link is cut: adverts reach nobody.
    cut: bool,
    now: Instant,
    t0: Instant,
    transitions: Vec<(Duration, usize, State, Reason)>,
}

impl Link {
    fn new(configs: Vec<Config>) -> Link {
        let now = Instant::now();
        let nodes = configs
            .into_iter()
            .map(|c| {
                let IpAddr::V6(src) = c.primary_address else {
                    panic!("IPv6 config")
                };
                (src, VirtualRouter::new(c).expect("valid"), false)
            })
            .collect();
        Link {
            nodes,
            cut: false,
            now,
            t0: now,
            transitions: Vec::new(),
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
        let mut queue = vec![(i, input)];
        while let Some((i, input)) = queue.pop() {
            let actions = self.nodes[i].1.handle(self.now, input);
            for a in &actions {
                if let Action::StateChanged { to, reason, .. } = a {
                    self.transitions.push((self.now - self.t0, i, *to, *reason));
                }
            }
            let src = self.nodes[i].0;
            for bytes in wire(&actions, src) {
                for j in 0..self.nodes.len() {
                    if j == i || !self.nodes[j].2 || self.cut {
                        continue;
                    }
                    let r = decode_payload(&bytes, src, MULTICAST_GROUP6, HOP_LIMIT)
                        .expect("valid on the wire");
                    check_ttl(r.ttl).expect("hop limit 255");
                    queue.push((
                        j,
                        Input::AdvertReceived {
                            src: r.src,
                            advert: r.advert,
                        },
                    ));
                }
            }
        }
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].2 = true;
        self.feed(i, Input::Startup);
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(at) = self
            .nodes
            .iter()
            .filter(|n| n.2)
            .filter_map(|n| n.1.poll_at())
            .min()
            .filter(|at| *at <= end)
        {
            self.now = at;
            for i in 0..self.nodes.len() {
                if self.nodes[i].2 && self.nodes[i].1.poll_at() <= Some(at) {
                    self.feed(i, Input::Timer);
                }
            }
        }
        self.now = end;
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].2 && self.nodes[i].1.state() == State::Master)
            .collect()
    }
}

#[test]
fn higher_priority_wins_and_the_backup_takes_over_within_the_master_down_interval() {
    let mut link = Link::new(vec![config(0xa, 150), config(0xb, 100)]);
    link.start(1);
    link.start(0);
    link.run_for(Duration::from_secs(1));
    assert_eq!(link.masters(), vec![0]);
    assert_eq!(link.nodes[1].1.status().master, Some(IpAddr::V6(node(0xa))));
    // The master goes silent: the backup takes over after 3 * 50 ms + skew (100: ~30 ms).
    link.nodes[0].2 = false;
    let lost = link.now - link.t0;
    link.run_for(Duration::from_secs(1));
    assert_eq!(link.masters(), vec![1]);
    let (at, _, _, reason) = *link
        .transitions
        .iter()
        .rfind(|t| t.1 == 1 && t.2 == State::Master)
        .expect("node 1 took over");
    assert_eq!(reason, Reason::MasterDown);
    let took = at - lost;
    assert!(
        took <= kawaii_vrrp::master_down_interval(100, AdvertInterval::from_centis(5).expect("5")),
        "{took:?}"
    );
}

#[test]
fn equal_priorities_elect_the_higher_link_local_address() {
    // Two masters (the link was cut) hear each other: the lower address steps down.
    let mut link = Link::new(vec![config(0xa, 100), config(0xb, 100)]);
    link.cut = true;
    link.start(0);
    link.start(1);
    link.run_for(Duration::from_secs(1));
    assert_eq!(link.masters(), vec![0, 1]);
    link.cut = false;
    link.run_for(Duration::from_secs(1));
    assert_eq!(link.masters(), vec![1], "fe80::...:b > fe80::...:a");
    assert!(matches!(
        link.transitions.last(),
        Some((_, 0, State::Backup, Reason::HigherAddress { .. }))
    ));
}

#[test]
fn a_keepalived_master_at_150_keeps_a_kawaii_backup_at_100_backing_off() {
    let ip = include_bytes!("../testdata/keepalived-v3-ip6.bin");
    let r = decode_datagram6(ip).expect("keepalived advert");
    let mut vr = VirtualRouter::new(Config {
        vrid: r.advert.vrid,
        ..config(0xb, 100)
    })
    .expect("valid");
    let t0 = Instant::now();
    vr.handle(t0, Input::Startup);
    // As master (nobody heard yet), keepalived's higher priority sends it back to backup.
    vr.handle(t0 + Duration::from_secs(1), Input::Timer);
    assert_eq!(vr.state(), State::Master);
    let actions = vr.handle(
        t0 + Duration::from_secs(1),
        Input::AdvertReceived {
            src: r.src,
            advert: r.advert.clone(),
        },
    );
    assert!(actions.contains(&Action::ReleaseVips {
        addresses: vec![LL_VIP.into(), VIP6.into()]
    }));
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.status().master, Some(r.src));
}

#[test]
fn ipv6_configs_follow_rfc_5798() {
    let bad = |c: Config| VirtualRouter::new(c).err();
    assert_eq!(bad(config(0xa, 100)), None);
    // §5.2.9: the link-local address comes first.
    assert_eq!(
        bad(Config {
            addresses: vec![VIP6.into(), LL_VIP.into()],
            ..config(0xa, 100)
        }),
        Some(ConfigError::FirstNotLinkLocal(VIP6.into()))
    );
    // One family per virtual router.
    let v4: IpAddr = Ipv4Addr::new(10, 1, 0, 1).into();
    assert_eq!(
        bad(Config {
            addresses: vec![LL_VIP.into(), v4],
            ..config(0xa, 100)
        }),
        Some(ConfigError::Family(v4))
    );
    assert_eq!(
        bad(Config {
            primary_address: Ipv6Addr::UNSPECIFIED.into(),
            ..config(0xa, 100)
        }),
        Some(ConfigError::PrimaryAddress(Ipv6Addr::UNSPECIFIED.into()))
    );
    assert_eq!(
        bad(Config {
            primary_address: MULTICAST_GROUP6.into(),
            ..config(0xa, 100)
        }),
        Some(ConfigError::PrimaryAddress(MULTICAST_GROUP6.into()))
    );
}
