//! One VRRPv3 virtual router: the RFC 5798 §6.4 state machine (Initialize, Backup, Master) as a
//! pure function of inputs and caller-supplied time. `handle` returns the actions to apply, in
//! order; `poll_at` says when to call `handle(now, Input::Timer)` next.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::ConfigError;
use crate::packet::{Advert, AdvertInterval, PRIORITY_OWNER, PRIORITY_RESIGN};

/// Configuration of one virtual router (RFC 5798 §6.1 parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// VRID, 1 to 255.
    pub vrid: u8,
    /// 1 to 254 for a backup-capable router; 255 only if this router owns `addresses`
    /// (it then starts as master and ignores every advert, RFC 5798 §6.4.1, §7.1).
    pub priority: u8,
    /// This router's own address on the link: the advert source and the tie-breaker. Its family
    /// is the virtual router's (RFC 5798 runs one virtual router per family); over IPv6 it is
    /// the interface's link-local address (§5.1.2.1), or a global one for unicast peers.
    pub primary_address: IpAddr,
    /// The virtual addresses (VIPs), in the order they are advertised; over IPv6 the first is
    /// the virtual router's link-local address (§5.2.9).
    pub addresses: Vec<IpAddr>,
    /// Advertisement_Interval.
    pub advert_interval: AdvertInterval,
    /// Preempt_Mode: a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// How long after entering Backup (at startup or after stepping down) this router behaves
    /// as if `preempt` were false. Zero disables the delay. Never delays a takeover from a
    /// master that went silent or resigned.
    pub preempt_delay: Duration,
}

impl Config {
    /// Checks what RFC 5798 and the wire format require.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if self.priority == PRIORITY_RESIGN {
            return Err(ConfigError::Priority);
        }
        if self.addresses.is_empty() || self.addresses.len() > 255 {
            return Err(ConfigError::AddressCount(self.addresses.len()));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = self.addresses.iter().find(|a| !seen.insert(**a)) {
            return Err(ConfigError::DuplicateAddress(*dup));
        }
        let p = self.primary_address;
        let broadcast = matches!(p, IpAddr::V4(v4) if v4.is_broadcast());
        if p.is_unspecified() || p.is_multicast() || broadcast {
            return Err(ConfigError::PrimaryAddress(p));
        }
        if let Some(other) = self.addresses.iter().find(|a| a.is_ipv4() != p.is_ipv4()) {
            return Err(ConfigError::Family(*other));
        }
        match self.addresses.first() {
            Some(IpAddr::V6(first)) if !crate::packet6::is_link_local(first) => {
                Err(ConfigError::FirstNotLinkLocal(IpAddr::V6(*first)))
            }
            _ => Ok(()),
        }
    }
}

/// RFC 5798 §6.4 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Initialize,
    Backup,
    Master,
}

/// What happened to the virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The interface and the configuration are ready.
    Startup,
    /// The router stops (configuration removed, daemon stopping, interface down).
    Shutdown,
    /// A decoded advert that passed the packet checks of RFC 5798 §7.1 (TTL policy, checksum).
    AdvertReceived { src: IpAddr, advert: Advert },
    /// `poll_at()` has been reached; the time is the `now` given to `handle`.
    Timer,
    /// Health tracking changed this router's priority. Clamped to 1..=254; ignored by an
    /// address owner, whose priority is 255 by definition (RFC 5798 §5.2.4).
    PriorityChanged { priority: u8 },
}

/// What the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send from `primary_address` to 224.0.0.18 or ff02::12 (or each unicast peer).
    SendAdvert { advert: Advert },
    /// Add the VIPs to the interface, then announce them (gratuitous ARP for IPv4, unsolicited
    /// neighbour advertisements for IPv6).
    TakeVips { addresses: Vec<IpAddr> },
    /// Remove the VIPs from the interface.
    ReleaseVips { addresses: Vec<IpAddr> },
    /// For status, metrics and logs.
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
}

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Initialize -> Master: priority 255, this router owns the addresses.
    Owner,
    /// Initialize -> Backup.
    Startup,
    /// Backup -> Master: no advert for Master_Down_Interval.
    MasterDown,
    /// Backup -> Master: the master sent priority 0 and Skew_Time passed.
    MasterResigned,
    /// Backup -> Master: preemption; adverts from this lower-priority master were discarded.
    Preempted {
        #[schema(value_type = String)]
        master: IpAddr,
        priority: u8,
    },
    /// Master -> Backup: an advert with a higher priority.
    HigherPriority {
        #[schema(value_type = String)]
        master: IpAddr,
        priority: u8,
    },
    /// Master -> Backup: an advert with the same priority from a higher primary address.
    HigherAddress {
        #[schema(value_type = String)]
        master: IpAddr,
    },
    /// Backup or Master -> Initialize.
    Shutdown,
}

/// Counters in the spirit of the VRRPv3 MIB (RFC 6527).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub master_transitions: u64,
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    /// Adverts for another VRID, looped back from this router, or received by an owner.
    pub adverts_discarded: u64,
    /// Adverts whose address list differs from ours (RFC 5798 §7.1 "MAY verify"; still used).
    pub address_list_mismatches: u64,
}

/// A snapshot for `kawaii status` and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub vrid: u8,
    pub state: State,
    pub priority: u8,
    pub configured_priority: u8,
    /// This router when master; else the source of the last advert accepted or seen.
    pub master: Option<IpAddr>,
    pub master_adver_interval: AdvertInterval,
    pub master_down_interval_ms: u64,
    pub stats: Stats,
}

/// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 (RFC 5798 §6.1), computed in
/// microseconds rather than truncated to centiseconds.
pub fn skew_time(priority: u8, master_adver_interval: AdvertInterval) -> Duration {
    let interval_us = u64::from(master_adver_interval.centis()) * 10_000;
    Duration::from_micros((256 - u64::from(priority)) * interval_us / 256)
}

/// Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_Time (RFC 5798 §6.1).
pub fn master_down_interval(priority: u8, master_adver_interval: AdvertInterval) -> Duration {
    master_adver_interval.as_duration() * 3 + skew_time(priority, master_adver_interval)
}

/// One virtual router. Create it with [`VirtualRouter::new`], feed it [`Input`]s.
#[derive(Debug, Clone)]
pub struct VirtualRouter {
    config: Config,
    priority: u8,
    state: State,
    master_adver_interval: AdvertInterval,
    /// Adver_Timer in Master, Master_Down_Timer in Backup, none in Initialize.
    timer: Option<Instant>,
    /// Preemption is suspended until then (the preempt delay).
    preempt_after: Option<Instant>,
    /// Reason to give if the Master_Down_Timer fires.
    takeover: Reason,
    master: Option<IpAddr>,
    stats: Stats,
}

impl VirtualRouter {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            config,
            state: State::Initialize,
            timer: None,
            preempt_after: None,
            takeover: Reason::MasterDown,
            master: None,
            stats: Stats::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority (after health tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn status(&self) -> Status {
        let down = master_down_interval(self.priority, self.master_adver_interval);
        Status {
            vrid: self.config.vrid,
            state: self.state,
            priority: self.priority,
            configured_priority: self.config.priority,
            master: self.master,
            master_adver_interval: self.master_adver_interval,
            master_down_interval_ms: u64::try_from(down.as_millis()).unwrap_or(u64::MAX),
            stats: self.stats,
        }
    }

    /// When to call `handle(now, Input::Timer)`; `None` in Initialize.
    pub fn poll_at(&self) -> Option<Instant> {
        self.timer
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Startup => self.startup(now, &mut out),
            Input::Shutdown => self.shutdown(&mut out),
            Input::AdvertReceived { src, advert } => self.receive(now, src, &advert, &mut out),
            Input::Timer => self.timer(now, &mut out),
            Input::PriorityChanged { priority } => self.set_priority(now, priority, &mut out),
        }
        out
    }

    fn is_owner(&self) -> bool {
        self.config.priority == PRIORITY_OWNER
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_int: self.config.advert_interval,
            addresses: self.config.addresses.clone(),
        }
    }

    fn send(&mut self, priority: u8, out: &mut Vec<Action>) {
        self.stats.adverts_sent += 1;
        if priority == PRIORITY_RESIGN {
            self.stats.priority_zero_sent += 1;
        }
        out.push(Action::SendAdvert {
            advert: self.advert(priority),
        });
    }

    fn preempting(&self, now: Instant) -> bool {
        self.config.preempt && self.preempt_after.is_none_or(|t| now >= t)
    }

    fn down_interval(&self) -> Duration {
        master_down_interval(self.priority, self.master_adver_interval)
    }

    fn startup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.is_owner() {
            // RFC 5798 §6.4.1: the owner advertises, announces, and becomes master at once.
            self.become_master(now, Reason::Owner, out);
        } else {
            // RFC 5798 §6.4.1: Master_Adver_Interval = Advertisement_Interval, arm the
            // Master_Down_Timer, go to Backup.
            self.master_adver_interval = self.config.advert_interval;
            self.become_backup(now, Reason::Startup, out);
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        let from = self.state;
        match from {
            State::Initialize => return,
            // RFC 5798 §6.4.2: cancel the Master_Down_Timer.
            State::Backup => {}
            // RFC 5798 §6.4.3: cancel the Adver_Timer, send priority 0, go to Initialize.
            State::Master => {
                self.send(PRIORITY_RESIGN, out);
                out.push(Action::ReleaseVips {
                    addresses: self.config.addresses.clone(),
                });
            }
        }
        self.timer = None;
        self.preempt_after = None;
        self.master = None;
        self.state = State::Initialize;
        out.push(Action::StateChanged {
            from,
            to: State::Initialize,
            reason: Reason::Shutdown,
        });
    }

    fn timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(deadline) = self.timer else { return };
        if now < deadline {
            return;
        }
        match self.state {
            State::Initialize => {}
            // RFC 5798 §6.4.2: the Master_Down_Timer fired.
            State::Backup => self.become_master(now, self.takeover, out),
            // RFC 5798 §6.4.3: the Adver_Timer fired; advertise and re-arm.
            State::Master => {
                self.send(self.priority, out);
                self.timer = Some(now + self.config.advert_interval.as_duration());
            }
        }
    }

    fn receive(&mut self, now: Instant, src: IpAddr, advert: &Advert, out: &mut Vec<Action>) {
        if self.state == State::Initialize {
            return;
        }
        // RFC 5798 §7.1: the VRID must be ours and this router must not be the owner; an advert
        // from our own primary address is our multicast looped back.
        if advert.vrid != self.config.vrid || self.is_owner() || src == self.config.primary_address
        {
            self.stats.adverts_discarded += 1;
            return;
        }
        self.stats.adverts_received += 1;
        if advert.priority == PRIORITY_RESIGN {
            self.stats.priority_zero_received += 1;
        }
        // RFC 5798 §7.1 "MAY verify" the address list: counted, not fatal.
        if advert.addresses != self.config.addresses {
            self.stats.address_list_mismatches += 1;
        }
        match self.state {
            State::Initialize => {}
            State::Backup => self.receive_as_backup(now, src, advert),
            State::Master => self.receive_as_master(now, src, advert, out),
        }
    }

    fn receive_as_backup(&mut self, now: Instant, src: IpAddr, advert: &Advert) {
        if advert.priority == PRIORITY_RESIGN {
            // RFC 5798 §6.4.2: the master resigns; take over after Skew_Time only.
            self.master = None;
            self.takeover = Reason::MasterResigned;
            self.timer = Some(now + skew_time(self.priority, self.master_adver_interval));
            return;
        }
        self.master = Some(src);
        if !self.preempting(now) || advert.priority >= self.priority {
            // RFC 5798 §6.4.2: adopt the master's interval, recompute Master_Down_Interval and
            // reset the Master_Down_Timer.
            self.master_adver_interval = advert.max_advert_int;
            self.takeover = Reason::MasterDown;
            self.timer = Some(now + self.down_interval());
        } else {
            // RFC 5798 §6.4.2: preempt is on and the master has a lower priority: discard, so
            // the Master_Down_Timer fires and this router takes over.
            self.takeover = Reason::Preempted {
                master: src,
                priority: advert.priority,
            };
        }
    }

    fn receive_as_master(
        &mut self,
        now: Instant,
        src: IpAddr,
        advert: &Advert,
        out: &mut Vec<Action>,
    ) {
        if advert.priority == PRIORITY_RESIGN {
            // RFC 5798 §6.4.3: another master resigned; assert mastership at once.
            self.send(self.priority, out);
            self.timer = Some(now + self.config.advert_interval.as_duration());
            return;
        }
        let reason = if advert.priority > self.priority {
            Reason::HigherPriority {
                master: src,
                priority: advert.priority,
            }
        } else if advert.priority == self.priority && src > self.config.primary_address {
            Reason::HigherAddress { master: src }
        } else {
            // RFC 5798 §6.4.3: a lower priority (or equal, lower address) master: discard.
            return;
        };
        // RFC 5798 §6.4.3: cancel the Adver_Timer, adopt the new master's interval, arm the
        // Master_Down_Timer, go to Backup.
        out.push(Action::ReleaseVips {
            addresses: self.config.addresses.clone(),
        });
        self.master_adver_interval = advert.max_advert_int;
        self.become_backup(now, reason, out);
        self.master = Some(src);
    }

    fn set_priority(&mut self, now: Instant, priority: u8, out: &mut Vec<Action>) {
        if self.is_owner() {
            return;
        }
        let priority = priority.clamp(1, PRIORITY_OWNER - 1);
        if priority == self.priority {
            return;
        }
        self.priority = priority;
        if self.state == State::Master {
            // Not in RFC 5798: advertise the new priority now so that a better backup preempts
            // within one interval instead of two.
            self.send(self.priority, out);
            self.timer = Some(now + self.config.advert_interval.as_duration());
        }
        // In Backup the new Skew_Time applies from the next advert (RFC 5798 §6.4.2 recomputes
        // Master_Down_Interval only there).
    }

    fn become_master(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.send(self.priority, out);
        out.push(Action::TakeVips {
            addresses: self.config.addresses.clone(),
        });
        self.timer = Some(now + self.config.advert_interval.as_duration());
        self.master_adver_interval = self.config.advert_interval;
        self.preempt_after = None;
        self.master = Some(self.config.primary_address);
        self.state = State::Master;
        self.stats.master_transitions += 1;
        out.push(Action::StateChanged {
            from,
            to: State::Master,
            reason,
        });
    }

    fn become_backup(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.timer = Some(now + self.down_interval());
        self.takeover = Reason::MasterDown;
        // The preempt delay runs from every entry into Backup (see `Config::preempt_delay`).
        self.preempt_after =
            (!self.config.preempt_delay.is_zero()).then(|| now + self.config.preempt_delay);
        self.state = State::Backup;
        out.push(Action::StateChanged {
            from,
            to: State::Backup,
            reason,
        });
    }
}
