//! Pure peer convergence: given the desired peer list, what the device reports, and the
//! endpoints we last asked for, compute the minimal add / update / remove steps. Peers whose
//! settings are unchanged get no step at all, so their sessions are never touched.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::{PeerConfig, PublicKey, SecretKey, WgError};

/// What the device currently holds for one peer (the parts we compare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActualPeer {
    pub public_key: PublicKey,
    pub preshared_key: Option<SecretKey>,
    pub allowed_ips: BTreeSet<IpNet>,
    pub keepalive: Option<u16>,
}

/// A change to one existing peer; `None` means "leave as is".
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerUpdate {
    pub preshared_key: Option<Option<SecretKey>>,
    pub allowed_ips: Option<Vec<IpNet>>,
    pub keepalive: Option<Option<u16>>,
    pub endpoint: Option<SocketAddr>,
}

impl PeerUpdate {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The steps to converge, applied in this order: remove, update, add.
#[derive(Debug, Default)]
pub(crate) struct PeerPlan {
    pub remove: Vec<PublicKey>,
    pub update: Vec<(PublicKey, PeerUpdate)>,
    pub add: Vec<PeerConfig>,
}

/// Normalises a keepalive: 0 means off, as in `wg set ... persistent-keepalive 0`.
fn keepalive(k: Option<u16>) -> Option<u16> {
    k.filter(|&s| s != 0)
}

fn allowed_set(ips: &[IpNet]) -> BTreeSet<IpNet> {
    ips.iter().map(IpNet::trunc).collect()
}

/// Rejects a desired list with a repeated public key; nothing is applied then.
pub(crate) fn validate(desired: &[PeerConfig]) -> Result<(), WgError> {
    let mut seen = BTreeSet::new();
    for peer in desired {
        if !seen.insert(peer.public_key) {
            return Err(WgError::DuplicatePeer(crate::encode_key(&peer.public_key)));
        }
    }
    Ok(())
}

/// Plans the convergence. Endpoints roam (the device learns them from traffic), so an endpoint
/// is only pushed when the desired one differs from the one we last asked for.
pub(crate) fn plan(
    desired: &[PeerConfig],
    actual: &[ActualPeer],
    last_endpoints: &HashMap<PublicKey, Option<SocketAddr>>,
) -> PeerPlan {
    let actual_by_key: HashMap<PublicKey, &ActualPeer> =
        actual.iter().map(|p| (p.public_key, p)).collect();
    let desired_keys: BTreeSet<PublicKey> = desired.iter().map(|p| p.public_key).collect();

    let mut out = PeerPlan {
        remove: actual
            .iter()
            .map(|p| p.public_key)
            .filter(|k| !desired_keys.contains(k))
            .collect(),
        ..PeerPlan::default()
    };

    for want in desired {
        let Some(have) = actual_by_key.get(&want.public_key) else {
            out.add.push(want.clone());
            continue;
        };
        let mut update = PeerUpdate::default();
        if want.preshared_key != have.preshared_key {
            update.preshared_key = Some(want.preshared_key.clone());
        }
        if allowed_set(&want.allowed_ips) != have.allowed_ips {
            update.allowed_ips = Some(allowed_set(&want.allowed_ips).into_iter().collect());
        }
        if keepalive(want.persistent_keepalive) != keepalive(have.keepalive) {
            update.keepalive = Some(keepalive(want.persistent_keepalive));
        }
        if let Some(endpoint) = want.endpoint
            && last_endpoints.get(&want.public_key).copied().flatten() != Some(endpoint)
        {
            update.endpoint = Some(endpoint);
        }
        if !update.is_empty() {
            out.update.push((want.public_key, update));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8, ips: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: [n; 32],
            preshared_key: None,
            allowed_ips: ips.iter().map(|s| s.parse().expect("test net")).collect(),
            endpoint: None,
            persistent_keepalive: None,
        }
    }

    fn actual(p: &PeerConfig) -> ActualPeer {
        ActualPeer {
            public_key: p.public_key,
            preshared_key: p.preshared_key.clone(),
            allowed_ips: allowed_set(&p.allowed_ips),
            keepalive: p.persistent_keepalive,
        }
    }

    #[test]
    fn unchanged_peers_get_no_step() {
        let a = peer(1, &["10.8.0.2/32"]);
        let b = peer(2, &["10.8.0.3/32"]);
        let plan = plan(
            &[a.clone(), b.clone()],
            &[actual(&a), actual(&b)],
            &HashMap::new(),
        );
        assert!(plan.add.is_empty() && plan.remove.is_empty() && plan.update.is_empty());
    }

    #[test]
    fn add_remove_and_update() {
        let a = peer(1, &["10.8.0.2/32"]);
        let b = peer(2, &["10.8.0.3/32"]);
        let c = peer(3, &["10.8.0.4/32"]);
        let mut a2 = a.clone();
        a2.allowed_ips.push("192.0.2.0/24".parse().expect("net"));
        a2.persistent_keepalive = Some(25);
        let plan = plan(&[a2, c.clone()], &[actual(&a), actual(&b)], &HashMap::new());
        assert_eq!(plan.remove, vec![[2; 32]]);
        assert_eq!(plan.add.len(), 1);
        assert_eq!(plan.add[0].public_key, c.public_key);
        assert_eq!(plan.update.len(), 1);
        let (key, update) = &plan.update[0];
        assert_eq!(*key, [1; 32]);
        assert_eq!(update.keepalive, Some(Some(25)));
        assert_eq!(update.allowed_ips.as_ref().map(Vec::len), Some(2));
        assert_eq!(update.preshared_key, None);
    }

    #[test]
    fn host_bits_and_zero_keepalive_are_normalised() {
        let mut a = peer(1, &["10.8.0.0/24"]);
        let have = actual(&a);
        a.allowed_ips = vec!["10.8.0.77/24".parse().expect("net")];
        a.persistent_keepalive = Some(0);
        let plan = plan(&[a], &[have], &HashMap::new());
        assert!(plan.update.is_empty(), "{:?}", plan.update);
    }

    #[test]
    fn endpoint_pushed_only_when_desired_changes() {
        let mut a = peer(1, &["10.8.0.2/32"]);
        let ep: SocketAddr = "192.0.2.2:51820".parse().expect("addr");
        a.endpoint = Some(ep);
        let mut last = HashMap::new();
        last.insert(a.public_key, Some(ep));
        // Same desired endpoint as last time: no step even if the peer roamed since.
        assert!(plan(&[a.clone()], &[actual(&a)], &last).update.is_empty());
        // A new desired endpoint is pushed.
        let ep2: SocketAddr = "192.0.2.3:51820".parse().expect("addr");
        a.endpoint = Some(ep2);
        let p = plan(&[a.clone()], &[actual(&a)], &last);
        assert_eq!(p.update[0].1.endpoint, Some(ep2));
    }

    #[test]
    fn psk_change_is_an_update() {
        let a = peer(1, &["10.8.0.2/32"]);
        let mut a2 = a.clone();
        a2.preshared_key = Some(SecretKey::from_bytes([9; 32]));
        let p = plan(&[a2], &[actual(&a)], &HashMap::new());
        assert!(matches!(p.update[0].1.preshared_key, Some(Some(_))));
    }

    #[test]
    fn duplicates_rejected() {
        let a = peer(1, &[]);
        assert!(matches!(
            validate(&[a.clone(), a]),
            Err(WgError::DuplicatePeer(_))
        ));
    }
}
