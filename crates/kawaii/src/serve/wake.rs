//! Why the reconcile loop runs: every source of change sends a typed [`Wake`] over one channel,
//! and the loop drains what queued up while it worked, so a burst of changes costs one pass and
//! the log says what caused it.

use std::collections::BTreeSet;
use tokio::sync::mpsc;

/// One reason to plan again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// The process started.
    Start,
    /// The config file was applied (a new revision, or the same one after SIGHUP).
    File,
    /// An API write committed a revision.
    ApiWrite,
    /// The store's revision moved (any writer: this instance, another zone's, a restore).
    Store,
    /// HA: the VRRP speaker's set of held zones changed.
    Vrrp,
    /// VPC peering: a peering's consent changed.
    Consent,
    /// HA: the WireGuard endpoint sync moved a VPN peer to or from a sibling.
    EndpointSync,
    /// The conntrack guard engaged or released (the table's fill crossed the public share).
    Conntrack,
    /// The periodic re-check that repairs drift in the kernel.
    Timer,
    /// A failed apply is tried again.
    Retry,
    /// Shutting down: resign the VIPs and take them off this node.
    Shutdown,
}

impl Wake {
    pub fn as_str(self) -> &'static str {
        match self {
            Wake::Start => "start",
            Wake::File => "file",
            Wake::ApiWrite => "api-write",
            Wake::Store => "store",
            Wake::Vrrp => "vrrp",
            Wake::Consent => "consent",
            Wake::EndpointSync => "endpoint-sync",
            Wake::Conntrack => "conntrack",
            Wake::Timer => "timer",
            Wake::Retry => "retry",
            Wake::Shutdown => "shutdown",
        }
    }
}

/// The sending side; cheap to clone, never blocks (the loop coalesces).
#[derive(Debug, Clone)]
pub struct Wakes(mpsc::UnboundedSender<Wake>);

impl Wakes {
    pub fn channel() -> (Wakes, WakeReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Wakes(tx), WakeReceiver(rx))
    }

    pub fn send(&self, why: Wake) {
        // The loop is gone only during shutdown; nothing is left to wake then.
        let _ = self.0.send(why);
    }

    /// A callback that sends `why`, for components that only know "something changed".
    pub fn notifier(&self, why: Wake) -> kawaii_drivers::Changed {
        let me = self.clone();
        std::sync::Arc::new(move || me.send(why))
    }
}

#[derive(Debug)]
pub struct WakeReceiver(mpsc::UnboundedReceiver<Wake>);

impl WakeReceiver {
    /// Waits for the next wake and takes every other one already queued: the reasons for one
    /// pass. `None` once every sender is gone.
    pub async fn next(&mut self) -> Option<BTreeSet<Wake>> {
        let first = self.0.recv().await?;
        let mut why = BTreeSet::from([first]);
        while let Ok(more) = self.0.try_recv() {
            why.insert(more);
        }
        Some(why)
    }
}

/// `file,store` for a log line.
pub fn reasons(why: &BTreeSet<Wake>) -> String {
    why.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_wakes_coalesce_into_one_pass() {
        let (tx, mut rx) = Wakes::channel();
        tx.send(Wake::Store);
        tx.send(Wake::ApiWrite);
        tx.send(Wake::Store);
        (tx.notifier(Wake::Consent))();
        let why = rx.next().await.expect("a pass");
        assert_eq!(reasons(&why), "api-write,store,consent");
        tx.send(Wake::Timer);
        assert_eq!(
            rx.next().await.map(|w| reasons(&w)).as_deref(),
            Some("timer")
        );
        drop(tx);
        assert!(rx.next().await.is_none());
    }
}
