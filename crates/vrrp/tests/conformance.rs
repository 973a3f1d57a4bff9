//! RFC 5798 §6 state-machine conformance on a fake clock: single-router tables, and a simulated
//! LAN where adverts reach every other running router instantly.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kawaii_vrrp::{
    Action, Advert, AdvertInterval, Config, ConfigError, Input, Reason, State, VirtualRouter,
    master_down_interval, skew_time,
};

const VRID: u8 = 51;
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
const VIP_PRIVATE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn interval(centis: u16) -> AdvertInterval {
    AdvertInterval::from_centis(centis).expect("valid interval")
}

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn config(last: u8, priority: u8) -> Config {
    Config {
        vrid: VRID,
        priority,
        primary_address: addr(last),
        addresses: vec![VIP, VIP_PRIVATE],
        advert_interval: AdvertInterval::DEFAULT,
        preempt: true,
        preempt_delay: Duration::ZERO,
    }
}

fn router(config: Config) -> VirtualRouter {
    VirtualRouter::new(config).expect("valid config")
}

fn advert(priority: u8) -> Advert {
    Advert {
        vrid: VRID,
        priority,
        max_advert_int: AdvertInterval::DEFAULT,
        addresses: vec![VIP, VIP_PRIVATE],
    }
}

fn heard(src: u8, priority: u8) -> Input {
    Input::AdvertReceived {
        src: addr(src),
        advert: advert(priority),
    }
}

fn state_change(actions: &[Action]) -> Option<(State, State, Reason)> {
    actions.iter().find_map(|a| match a {
        Action::StateChanged { from, to, reason } => Some((*from, *to, *reason)),
        _ => None,
    })
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert { advert } => Some(advert.priority),
            _ => None,
        })
        .collect()
}

/// A router started at `t0`, checked to be in Backup.
fn started_backup(cfg: Config, t0: Instant) -> VirtualRouter {
    let mut vr = router(cfg);
    let actions = vr.handle(t0, Input::Startup);
    assert_eq!(
        state_change(&actions),
        Some((State::Initialize, State::Backup, Reason::Startup))
    );
    vr
}

/// A router that became master by the down timer at `t0 + down`; returns it and that instant.
fn started_master(cfg: Config, t0: Instant) -> (VirtualRouter, Instant) {
    let mut vr = started_backup(cfg, t0);
    let at = vr.poll_at().expect("backup has a down timer");
    let actions = vr.handle(at, Input::Timer);
    assert_eq!(vr.state(), State::Master, "{actions:?}");
    (vr, at)
}

#[test]
fn rfc_timer_arithmetic() {
    // RFC 5798 §6.1 with Master_Adver_Interval = 1 s.
    let one_second = AdvertInterval::DEFAULT;
    assert_eq!(skew_time(100, one_second), us(609_375)); // 156/256 s
    assert_eq!(master_down_interval(100, one_second), us(3_609_375));
    assert_eq!(skew_time(150, one_second), us(414_062)); // 106/256 s, truncated to µs
    assert_eq!(skew_time(255, one_second), us(3_906)); // 1/256 s
    assert_eq!(skew_time(1, one_second), us(996_093));
    // advert_int 0.1 s, as keepalived's `advert_int 0.1` and the captures use.
    assert_eq!(master_down_interval(150, interval(10)), us(341_406));
}

#[test]
fn startup_backup_then_master_when_down_timer_fires() {
    let t0 = Instant::now();
    let mut vr = started_backup(config(1, 100), t0);
    // RFC 5798 §6.4.1: Master_Down_Timer = Master_Down_Interval.
    assert_eq!(vr.poll_at(), Some(t0 + us(3_609_375)));
    assert!(
        vr.handle(t0 + ms(3_609), Input::Timer).is_empty(),
        "early timer is a no-op"
    );
    let at = t0 + us(3_609_375);
    let actions = vr.handle(at, Input::Timer);
    // RFC 5798 §6.4.2: advertise, announce the addresses, become master.
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert {
                advert: advert(100)
            },
            Action::TakeVips {
                addresses: vec![VIP, VIP_PRIVATE]
            },
            Action::StateChanged {
                from: State::Backup,
                to: State::Master,
                reason: Reason::MasterDown
            },
        ]
    );
    assert_eq!(vr.poll_at(), Some(at + ms(1_000)));
    // RFC 5798 §6.4.3: the Adver_Timer re-arms after every advert.
    let actions = vr.handle(at + ms(1_000), Input::Timer);
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert_eq!(vr.poll_at(), Some(at + ms(2_000)));
    assert_eq!(vr.status().master, Some(addr(1)));
}

#[test]
fn owner_starts_as_master_and_ignores_adverts() {
    let t0 = Instant::now();
    let mut vr = router(config(1, 255));
    let actions = vr.handle(t0, Input::Startup);
    assert_eq!(sent_priorities(&actions), vec![255]);
    assert_eq!(
        state_change(&actions),
        Some((State::Initialize, State::Master, Reason::Owner))
    );
    // RFC 5798 §7.1: the owner discards every advert.
    assert!(vr.handle(t0 + ms(10), heard(2, 254)).is_empty());
    assert_eq!(vr.state(), State::Master);
    assert_eq!(vr.stats().adverts_discarded, 1);
    // Health tracking cannot make an owner something else.
    assert!(
        vr.handle(t0, Input::PriorityChanged { priority: 10 })
            .is_empty()
    );
    assert_eq!(vr.priority(), 255);
}

#[test]
fn adverts_reset_the_down_timer_and_set_the_master_interval() {
    let t0 = Instant::now();
    let mut vr = started_backup(config(1, 100), t0);
    let slow = Advert {
        max_advert_int: interval(200),
        ..advert(200)
    };
    let t1 = t0 + ms(500);
    let actions = vr.handle(
        t1,
        Input::AdvertReceived {
            src: addr(9),
            advert: slow,
        },
    );
    assert!(actions.is_empty());
    // RFC 5798 §6.4.2: Master_Adver_Interval comes from the advert (2 s).
    assert_eq!(
        vr.poll_at(),
        Some(t1 + master_down_interval(100, interval(200)))
    );
    assert_eq!(vr.status().master_adver_interval, interval(200));
    assert_eq!(vr.status().master, Some(addr(9)));
}

#[test]
fn lower_priority_backup_waits_longer() {
    let t0 = Instant::now();
    let mut high = started_backup(config(2, 100), t0);
    let mut low = started_backup(config(3, 50), t0);
    let t1 = t0 + ms(200);
    high.handle(t1, heard(1, 150));
    low.handle(t1, heard(1, 150));
    let high_at = high.poll_at().expect("armed");
    let low_at = low.poll_at().expect("armed");
    assert_eq!(high_at, t1 + us(3_609_375));
    assert_eq!(low_at, t1 + us(3_804_687));
    assert!(low_at > high_at);
    // The higher-priority backup takes over first and its advert holds the other back.
    let actions = high.handle(high_at, Input::Timer);
    assert_eq!(high.state(), State::Master);
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert!(low.handle(high_at, heard(2, 100)).is_empty());
    assert_eq!(low.state(), State::Backup);
    assert_eq!(low.poll_at(), Some(high_at + us(3_804_687)));
}

#[test]
fn priority_zero_handover_takes_skew_time_not_down_interval() {
    let t0 = Instant::now();
    let (mut master, t1) = started_master(config(1, 150), t0);
    let mut backup = started_backup(config(2, 100), t0);
    backup.handle(t1, heard(1, 150));
    // RFC 5798 §6.4.3: on Shutdown the master sends priority 0 and lets go of the VIPs.
    let t2 = t1 + ms(700);
    let actions = master.handle(t2, Input::Shutdown);
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { advert: advert(0) },
            Action::ReleaseVips {
                addresses: vec![VIP, VIP_PRIVATE]
            },
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::Shutdown
            },
        ]
    );
    assert_eq!(master.poll_at(), None);
    assert_eq!(master.stats().priority_zero_sent, 1);
    // RFC 5798 §6.4.2: Master_Down_Timer = Skew_Time.
    assert!(backup.handle(t2, heard(1, 0)).is_empty());
    assert_eq!(backup.poll_at(), Some(t2 + us(609_375)));
    let actions = backup.handle(t2 + us(609_375), Input::Timer);
    assert_eq!(
        state_change(&actions),
        Some((State::Backup, State::Master, Reason::MasterResigned))
    );
}

#[test]
fn higher_priority_advert_makes_master_step_down() {
    let t0 = Instant::now();
    let (mut vr, t1) = started_master(config(1, 100), t0);
    assert!(
        vr.handle(t1, heard(2, 99)).is_empty(),
        "lower priority: discard"
    );
    let t2 = t1 + ms(300);
    let faster = Advert {
        max_advert_int: interval(50),
        ..advert(150)
    };
    let actions = vr.handle(
        t2,
        Input::AdvertReceived {
            src: addr(2),
            advert: faster,
        },
    );
    assert_eq!(
        actions,
        vec![
            Action::ReleaseVips {
                addresses: vec![VIP, VIP_PRIVATE]
            },
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                reason: Reason::HigherPriority {
                    master: addr(2),
                    priority: 150
                }
            },
        ]
    );
    // RFC 5798 §6.4.3: Master_Down_Timer from the new master's interval (0.5 s).
    assert_eq!(
        vr.poll_at(),
        Some(t2 + master_down_interval(100, interval(50)))
    );
    assert_eq!(vr.status().master, Some(addr(2)));
}

#[test]
fn master_answers_a_resigning_master_at_once() {
    let t0 = Instant::now();
    let (mut vr, t1) = started_master(config(1, 100), t0);
    let t2 = t1 + ms(400);
    let actions = vr.handle(t2, heard(2, 0));
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert_eq!(vr.poll_at(), Some(t2 + ms(1_000)));
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn equal_priority_tie_is_broken_by_primary_address() {
    let t0 = Instant::now();
    let (mut low_addr, t1) = started_master(config(1, 100), t0);
    let (mut high_addr, _) = started_master(config(2, 100), t0);
    // RFC 5798 §6.4.3: equal priority and a greater sender address: step down.
    let actions = low_addr.handle(t1, heard(2, 100));
    assert_eq!(
        state_change(&actions),
        Some((
            State::Master,
            State::Backup,
            Reason::HigherAddress { master: addr(2) }
        ))
    );
    // Equal priority, smaller sender address: discard.
    assert!(high_addr.handle(t1, heard(1, 100)).is_empty());
    assert_eq!(high_addr.state(), State::Master);
    // The address comparison is numeric, not textual: 192.0.2.10 > 192.0.2.9.
    let (mut nine, t9) = started_master(config(9, 100), t0);
    assert!(!nine.handle(t9, heard(10, 100)).is_empty());
    assert_eq!(nine.state(), State::Backup);
}

#[test]
fn preemption_discards_lower_priority_adverts() {
    let t0 = Instant::now();
    let mut vr = started_backup(config(1, 150), t0);
    // A lower-priority master keeps advertising; RFC 5798 §6.4.2 discards its adverts.
    let mut t = t0;
    while t < t0 + ms(3_000) {
        t += ms(1_000);
        assert!(vr.handle(t, heard(2, 100)).is_empty());
        assert_eq!(vr.poll_at(), Some(t0 + us(3_414_062)), "not reset");
    }
    let actions = vr.handle(t0 + us(3_414_062), Input::Timer);
    assert_preempted_from_2(&actions);
}

#[test]
fn non_preempt_mode_keeps_the_current_master() {
    let t0 = Instant::now();
    let mut vr = started_backup(
        Config {
            preempt: false,
            ..config(1, 150)
        },
        t0,
    );
    for n in 1..=20 {
        let t = t0 + ms(1_000 * n);
        assert!(vr.handle(t, heard(2, 100)).is_empty());
        assert_eq!(
            vr.poll_at(),
            Some(t + us(3_414_062)),
            "reset by every advert"
        );
    }
    assert_eq!(vr.state(), State::Backup);
    // Without adverts it still takes over.
    let at = vr.poll_at().expect("armed");
    vr.handle(at, Input::Timer);
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn preempt_delay_runs_from_entering_backup() {
    let t0 = Instant::now();
    let delay = ms(10_000);
    let mut vr = started_backup(
        Config {
            preempt_delay: delay,
            ..config(1, 150)
        },
        t0,
    );
    // Inside the delay a lower-priority master is accepted, as if preempt were off.
    for n in 1..=9 {
        let t = t0 + ms(1_000 * n);
        vr.handle(t, heard(2, 100));
        assert_eq!(vr.poll_at(), Some(t + us(3_414_062)));
    }
    // From the end of the delay its adverts are discarded: takeover one down interval after
    // the last accepted advert (t0 + 9 s).
    for n in 10..=12 {
        vr.handle(t0 + ms(1_000 * n), heard(2, 100));
    }
    let at = vr.poll_at().expect("armed");
    assert_eq!(at, t0 + ms(9_000) + us(3_414_062));
    let actions = vr.handle(at, Input::Timer);
    assert_preempted_from_2(&actions);
}

#[test]
fn preempt_delay_never_delays_a_takeover_from_a_silent_master() {
    let t0 = Instant::now();
    let mut vr = started_backup(
        Config {
            preempt_delay: ms(60_000),
            ..config(1, 150)
        },
        t0,
    );
    vr.handle(t0 + ms(500), heard(2, 100));
    let at = vr.poll_at().expect("armed");
    assert_eq!(at, t0 + ms(500) + us(3_414_062));
    vr.handle(at, Input::Timer);
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn preempt_delay_applies_again_after_stepping_down() {
    let t0 = Instant::now();
    let (mut vr, t1) = started_master(
        Config {
            preempt_delay: ms(5_000),
            ..config(1, 100)
        },
        t0,
    );
    vr.handle(t1, heard(2, 200));
    assert_eq!(vr.state(), State::Backup);
    // The other router's health drops below ours two seconds later: still accepted.
    let t2 = t1 + ms(2_000);
    vr.handle(t2, heard(2, 50));
    assert_eq!(vr.poll_at(), Some(t2 + us(3_609_375)));
    // After the delay, discarded.
    let t3 = t1 + ms(5_000);
    vr.handle(t3, heard(2, 50));
    assert_eq!(vr.poll_at(), Some(t2 + us(3_609_375)));
}

#[test]
fn shutdown_from_backup_and_restart() {
    let t0 = Instant::now();
    let mut vr = started_backup(config(1, 100), t0);
    let actions = vr.handle(t0 + ms(1), Input::Shutdown);
    assert_eq!(
        actions,
        vec![Action::StateChanged {
            from: State::Backup,
            to: State::Initialize,
            reason: Reason::Shutdown
        }]
    );
    assert_eq!(vr.poll_at(), None);
    assert!(vr.handle(t0 + ms(2), Input::Shutdown).is_empty());
    assert!(
        vr.handle(t0 + ms(2), heard(2, 100)).is_empty(),
        "ignored in Initialize"
    );
    assert!(vr.handle(t0 + ms(2), Input::Timer).is_empty());
    let actions = vr.handle(t0 + ms(3), Input::Startup);
    assert_eq!(
        state_change(&actions),
        Some((State::Initialize, State::Backup, Reason::Startup))
    );
    assert!(
        vr.handle(t0 + ms(4), Input::Startup).is_empty(),
        "already started"
    );
}

#[test]
fn foreign_vrid_and_own_adverts_are_discarded() {
    let t0 = Instant::now();
    let mut vr = started_backup(config(1, 100), t0);
    let before = vr.poll_at();
    let other_vrid = Advert {
        vrid: 52,
        ..advert(200)
    };
    vr.handle(
        t0 + ms(100),
        Input::AdvertReceived {
            src: addr(2),
            advert: other_vrid,
        },
    );
    vr.handle(t0 + ms(100), heard(1, 100));
    assert_eq!(vr.poll_at(), before);
    assert_eq!(vr.stats().adverts_discarded, 2);
    assert_eq!(vr.stats().adverts_received, 0);
    // A different address list is counted, and the advert is still used.
    let mismatched = Advert {
        addresses: vec![VIP],
        ..advert(200)
    };
    vr.handle(
        t0 + ms(200),
        Input::AdvertReceived {
            src: addr(2),
            advert: mismatched,
        },
    );
    assert_eq!(vr.stats().address_list_mismatches, 1);
    assert_eq!(vr.poll_at(), Some(t0 + ms(200) + us(3_609_375)));
}

#[test]
fn priority_change_is_advertised_by_a_master() {
    let t0 = Instant::now();
    let (mut vr, t1) = started_master(config(1, 150), t0);
    let t2 = t1 + ms(250);
    let actions = vr.handle(t2, Input::PriorityChanged { priority: 90 });
    assert_eq!(sent_priorities(&actions), vec![90]);
    assert_eq!(vr.poll_at(), Some(t2 + ms(1_000)));
    assert!(
        vr.handle(t2, Input::PriorityChanged { priority: 90 })
            .is_empty()
    );
    // Clamped: tracking never yields 0 (resign) or 255 (owner).
    vr.handle(t2, Input::PriorityChanged { priority: 0 });
    assert_eq!(vr.priority(), 1);
    vr.handle(t2, Input::PriorityChanged { priority: 255 });
    assert_eq!(vr.priority(), 254);
    assert_eq!(vr.status().configured_priority, 150);
}

#[test]
fn config_is_validated() {
    let bad = |c: Config| VirtualRouter::new(c).err();
    assert_eq!(
        bad(Config {
            vrid: 0,
            ..config(1, 100)
        }),
        Some(ConfigError::Vrid)
    );
    assert_eq!(bad(config(1, 0)), Some(ConfigError::Priority));
    assert_eq!(
        bad(Config {
            addresses: vec![],
            ..config(1, 100)
        }),
        Some(ConfigError::AddressCount(0))
    );
    assert_eq!(
        bad(Config {
            addresses: vec![VIP, VIP],
            ..config(1, 100)
        }),
        Some(ConfigError::DuplicateAddress(VIP))
    );
    assert_eq!(
        bad(Config {
            primary_address: Ipv4Addr::UNSPECIFIED.into(),
            ..config(1, 100)
        }),
        Some(ConfigError::PrimaryAddress(Ipv4Addr::UNSPECIFIED.into()))
    );
}

/// Routers on one simulated link; adverts reach every other running router after `latency`.
struct Lan {
    nodes: Vec<(IpAddr, VirtualRouter, bool)>,
    latency: Duration,
    in_flight: Vec<(Instant, usize, Input)>,
    t0: Instant,
    now: Instant,
    /// (time since t0, node, from, to, reason)
    transitions: Vec<(Duration, usize, State, State, Reason)>,
}

impl Lan {
    fn new(configs: Vec<Config>) -> Self {
        let t0 = Instant::now();
        let nodes = configs
            .into_iter()
            .map(|c| (c.primary_address, router(c), false))
            .collect();
        Self {
            nodes,
            latency: Duration::ZERO,
            in_flight: Vec::new(),
            t0,
            now: t0,
            transitions: Vec::new(),
        }
    }

    fn input(&mut self, node: usize, input: Input) {
        let mut queue = VecDeque::from([(node, input)]);
        while let Some((i, input)) = queue.pop_front() {
            let now = self.now;
            let actions = self.nodes[i].1.handle(now, input);
            for action in actions {
                match action {
                    Action::SendAdvert { advert } => {
                        let src = self.nodes[i].0;
                        for (j, node) in self.nodes.iter().enumerate() {
                            if j != i && node.2 {
                                let advert = advert.clone();
                                let input = Input::AdvertReceived { src, advert };
                                if self.latency.is_zero() {
                                    queue.push_back((j, input));
                                } else {
                                    self.in_flight.push((now + self.latency, j, input));
                                }
                            }
                        }
                    }
                    Action::StateChanged { from, to, reason } => {
                        self.transitions.push((now - self.t0, i, from, to, reason));
                    }
                    Action::TakeVips { .. } | Action::ReleaseVips { .. } => {}
                }
            }
        }
    }

    fn start(&mut self, node: usize) {
        self.nodes[node].2 = true;
        self.input(node, Input::Startup);
    }

    /// Graceful stop: priority 0 goes out.
    fn stop(&mut self, node: usize) {
        self.input(node, Input::Shutdown);
        self.nodes[node].2 = false;
    }

    /// Crash: silence, and the router forgets everything.
    fn crash(&mut self, node: usize) {
        self.nodes[node].2 = false;
        let config = self.nodes[node].1.config().clone();
        self.nodes[node].1 = router(config);
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            let next = self
                .nodes
                .iter()
                .filter(|n| n.2)
                .filter_map(|n| n.1.poll_at())
                .chain(self.in_flight.iter().map(|m| m.0))
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = at;
                    let (due, later) = std::mem::take(&mut self.in_flight)
                        .into_iter()
                        .partition(|m| m.0 <= at);
                    self.in_flight = later;
                    for (_, j, input) in due {
                        if self.nodes[j].2 {
                            self.input(j, input);
                        }
                    }
                    for i in 0..self.nodes.len() {
                        let due = self.nodes[i].2 && self.nodes[i].1.poll_at() <= Some(at);
                        if due {
                            self.input(i, Input::Timer);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].2 && self.nodes[i].1.state() == State::Master)
            .collect()
    }

    fn became_master_after(&self, node: usize, since: Duration) -> Option<(Duration, Reason)> {
        self.transitions
            .iter()
            .find(|t| t.1 == node && t.3 == State::Master && t.0 >= since)
            .map(|t| (t.0, t.4))
    }
}

fn zone(last: u8, priority: u8) -> Config {
    Config {
        advert_interval: interval(10),
        ..config(last, priority)
    }
}

#[test]
fn lan_home_zone_wins_and_fails_over_in_order() {
    // Three zones, stable order: home 150, then 100, then 50; advert interval 0.1 s.
    let mut lan = Lan::new(vec![zone(1, 150), zone(2, 100), zone(3, 50)]);
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_for(ms(2_000));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(
        lan.became_master_after(0, Duration::ZERO),
        Some((us(341_406), Reason::MasterDown))
    );

    // Crash of the home zone: zone 2 takes over after its Master_Down_Interval (0.36 s).
    let crash_at = lan.now - lan.t0;
    // Zone 1 advertised at 0.341406 s and every 0.1 s after: last at 1.941406 s.
    let last_advert = us(1_941_406);
    lan.crash(0);
    lan.run_for(ms(2_000));
    assert_eq!(lan.masters(), vec![1]);
    let (at, reason) = lan
        .became_master_after(1, crash_at)
        .expect("zone 2 took over");
    assert_eq!(reason, Reason::MasterDown);
    assert_eq!(at, last_advert + master_down_interval(100, interval(10)));
    assert!(lan.became_master_after(2, Duration::ZERO).is_none());

    // The home zone comes back and preempts one down interval after its startup.
    let back_at = lan.now - lan.t0;
    lan.start(0);
    lan.run_for(ms(2_000));
    assert_eq!(lan.masters(), vec![0]);
    let (at, reason) = lan
        .became_master_after(0, back_at)
        .expect("home zone is back");
    assert_eq!(
        reason,
        Reason::Preempted {
            master: addr(2),
            priority: 100
        }
    );
    assert_eq!(at, back_at + master_down_interval(150, interval(10)));

    // Graceful stop of the home zone: handover after zone 2's Skew_Time (61 ms), not 0.36 s.
    let stop_at = lan.now - lan.t0;
    lan.stop(0);
    lan.run_for(ms(1_000));
    assert_eq!(lan.masters(), vec![1]);
    let (at, reason) = lan.became_master_after(1, stop_at).expect("handover");
    assert_eq!(reason, Reason::MasterResigned);
    assert_eq!(at, stop_at + skew_time(100, interval(10)));
}

#[test]
fn lan_equal_priorities_converge_on_the_highest_address() {
    let mut lan = Lan::new(vec![zone(1, 100), zone(2, 100)]);
    lan.latency = ms(1);
    lan.start(0);
    lan.start(1);
    lan.run_for(ms(1_000));
    // Both fire at the same instant and become master; 1 ms later the lower address hears the
    // higher one and steps down (RFC 5798 §6.4.3), the higher one discards the other's advert.
    assert_eq!(
        lan.became_master_after(0, Duration::ZERO).map(|m| m.0),
        Some(us(360_937))
    );
    assert_eq!(
        lan.became_master_after(1, Duration::ZERO).map(|m| m.0),
        Some(us(360_937))
    );
    assert_eq!(lan.masters(), vec![1]);
    assert!(lan.transitions.iter().any(|t| t.0 == us(361_937)
        && t.1 == 0
        && t.2 == State::Master
        && t.4 == Reason::HigherAddress { master: addr(2) }));
}

#[test]
fn lan_health_tracking_hands_over_to_the_next_zone() {
    let mut lan = Lan::new(vec![zone(1, 150), zone(2, 100)]);
    lan.start(0);
    lan.start(1);
    lan.run_for(ms(1_000));
    assert_eq!(lan.masters(), vec![0]);
    let at = lan.now - lan.t0;
    lan.input(0, Input::PriorityChanged { priority: 90 });
    lan.run_for(ms(1_000));
    assert_eq!(lan.masters(), vec![1]);
    let (when, reason) = lan.became_master_after(1, at).expect("zone 2 preempted");
    assert_eq!(
        reason,
        Reason::Preempted {
            master: addr(1),
            priority: 90
        }
    );
    assert!(when <= at + master_down_interval(100, interval(10)));
}

/// The actions are the takeover from router 2 (priority 100), preempted (RFC 5798 §6.4.2).
fn assert_preempted_from_2(actions: &[Action]) {
    assert_eq!(
        state_change(actions),
        Some((
            State::Backup,
            State::Master,
            Reason::Preempted {
                master: addr(2),
                priority: 100
            }
        ))
    );
}
