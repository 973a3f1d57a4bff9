//! VICI messages kawaii exchanges with charon (strongSwan's `vici` plugin README), typed, and
//! the few commands the IPsec driver uses. The PSK travels only inside [`SharedKey`], whose
//! `Debug` redacts it; no error built here ever contains a request body.

use kawaii_plan::ipsec::Connection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `load-conn`: `{ <name> = { ... } }`.
#[derive(Debug, Serialize)]
pub(crate) struct IkeConfig {
    pub version: u32,
    pub local_addrs: Vec<String>,
    pub remote_addrs: Vec<String>,
    pub proposals: Vec<String>,
    pub rekey_time: String,
    pub over_time: String,
    pub dpd_delay: String,
    pub keyingtries: u32,
    pub unique: &'static str,
    pub mobike: bool,
    pub local: AuthConfig,
    pub remote: AuthConfig,
    pub children: BTreeMap<String, ChildConfig>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AuthConfig {
    pub auth: &'static str,
    pub id: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChildConfig {
    pub mode: &'static str,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub esp_proposals: Vec<String>,
    pub rekey_time: String,
    pub life_time: String,
    pub dpd_action: &'static str,
    pub start_action: &'static str,
}

impl IkeConfig {
    /// The connection as charon loads it; `start_action` is what charon itself should do
    /// (the driver initiates on its own where it must).
    pub fn from_plan(c: &Connection, start_action: &'static str) -> BTreeMap<String, IkeConfig> {
        let strs = |v: &[std::net::IpAddr]| v.iter().map(ToString::to_string).collect();
        let nets = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect();
        let child = ChildConfig {
            mode: "tunnel",
            local_ts: nets(&c.local_ts),
            remote_ts: nets(&c.remote_ts),
            esp_proposals: c.esp_proposals.clone(),
            rekey_time: format!("{}s", c.child_rekey_time),
            life_time: format!("{}s", c.child_life_time),
            dpd_action: c.dpd_action,
            start_action,
        };
        let ike = IkeConfig {
            version: 2,
            local_addrs: strs(&c.local_addrs),
            remote_addrs: strs(&c.remote_addrs),
            proposals: c.proposals.clone(),
            rekey_time: format!("{}s", c.rekey_time),
            over_time: format!("{}s", c.over_time),
            dpd_delay: format!("{}s", c.dpd_delay),
            // One try per initiate: the driver retries, so a failure is seen and reported.
            keyingtries: 1,
            unique: "replace",
            mobike: false,
            local: AuthConfig {
                auth: "psk",
                id: c.local_id.clone(),
            },
            remote: AuthConfig {
                auth: "psk",
                id: c.remote_id.clone(),
            },
            children: BTreeMap::from([(c.id.clone(), child)]),
        };
        BTreeMap::from([(c.id.clone(), ike)])
    }
}

/// `load-shared`.
#[derive(Serialize)]
pub(crate) struct SharedKey<'a> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: &'a str,
    pub owners: Vec<String>,
}

impl std::fmt::Debug for SharedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKey")
            .field("id", &self.id)
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ById {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ByName {
    pub name: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Initiate {
    pub child: String,
    pub ike: String,
    /// -1: return at once; the outcome arrives as events.
    pub timeout: i32,
    #[serde(rename = "init-limits")]
    pub init_limits: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Terminate {
    pub ike: String,
    pub force: bool,
    pub timeout: i32,
}

#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// Every command's reply.
#[derive(Debug, Deserialize)]
pub(crate) struct Outcome {
    pub success: Option<bool>,
    pub errmsg: Option<String>,
}

/// `list-sa` event: `{ <ike name> = IkeSa }`.
pub(crate) type ListSa = BTreeMap<String, IkeSa>;

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct IkeSa {
    pub uniqueid: Option<String>,
    pub state: Option<String>,
    pub established: Option<u64>,
    #[serde(rename = "child-sas", default)]
    pub child_sas: BTreeMap<String, ChildSa>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ChildSa {
    pub state: Option<String>,
    #[serde(rename = "encr-alg")]
    pub encr_alg: Option<String>,
    #[serde(rename = "integ-alg")]
    pub integ_alg: Option<String>,
    #[serde(rename = "dh-group")]
    pub dh_group: Option<String>,
    #[serde(rename = "bytes-in")]
    pub bytes_in: Option<u64>,
    #[serde(rename = "packets-in")]
    pub packets_in: Option<u64>,
    #[serde(rename = "bytes-out")]
    pub bytes_out: Option<u64>,
    #[serde(rename = "packets-out")]
    pub packets_out: Option<u64>,
    #[serde(rename = "install-time")]
    pub install_time: Option<u64>,
    #[serde(rename = "remote-ts", default)]
    pub remote_ts: Vec<String>,
}

/// `log` event.
#[derive(Debug, Deserialize)]
pub(crate) struct LogEvent {
    #[serde(rename = "ikesa-name")]
    pub ikesa_name: Option<String>,
    pub msg: Option<String>,
}

/// `ike-updown` / `child-updown` events; only the direction matters, the SA is re-listed.
#[derive(Debug, Deserialize)]
pub(crate) struct Updown {
    pub up: Option<bool>,
}

impl Updown {
    pub fn direction(&self) -> &'static str {
        if self.up == Some(true) { "up" } else { "down" }
    }
}

/// A reason an operator can act on, from one charon log line (None: not an error).
pub(crate) fn classify(msg: &str) -> Option<&'static str> {
    let m = msg;
    if m.contains("AUTHENTICATION_FAILED") || m.contains("MAC mismatched") {
        Some("authentication failed: the pre-shared keys of the two ends do not match")
    } else if m.contains("no shared key found") {
        Some("authentication failed: no pre-shared key for this peer")
    } else if m.contains("NO_PROPOSAL_CHOSEN") || m.contains("no acceptable proposal") {
        Some("no proposal chosen: the two ends' algorithms (encryption, integrity, DH) differ")
    } else if m.contains("TS_UNACCEPTABLE")
        || m.contains("traffic selectors") && m.contains("unacceptable")
    {
        Some("traffic selectors unacceptable: the subnets do not match the peer's")
    } else if m.contains("giving up after") && m.contains("retransmits") {
        Some("peer unreachable: no answer to IKE messages")
    } else if m.contains("INVALID_KE_PAYLOAD") && m.contains("received") {
        None // renegotiated automatically with the group the peer asks for
    } else if m.contains("establishing CHILD_SA") && m.contains("failed") {
        Some("CHILD_SA negotiation failed")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_charon_failures() {
        assert!(
            classify("received AUTHENTICATION_FAILED notify error")
                .is_some_and(|r| r.starts_with("authentication failed"))
        );
        assert!(
            classify("tried 1 shared key for '203.0.113.10' - '198.51.100.8', but MAC mismatched")
                .is_some_and(|r| r.starts_with("authentication failed"))
        );
        assert!(classify("received NO_PROPOSAL_CHOSEN notify error").is_some());
        assert!(classify("giving up after 3 retransmits").is_some());
        assert_eq!(classify("IKE_SA x[1] established between a...b"), None);
    }

    #[test]
    fn shared_key_debug_redacts() {
        let k = SharedKey {
            id: "x".into(),
            kind: "IKE",
            data: "hunter2-hunter2",
            owners: vec![],
        };
        assert!(!format!("{k:?}").contains("hunter2"));
    }

    #[test]
    fn load_conn_encodes() {
        // The golden IPsec case: AES256/SHA512/group 14 in both phases.
        let text = include_str!("../../plan/testdata/render/ipsec-office/config.toml");
        let g = kawaii_model::Gateway::parse(text, kawaii_model::Format::Toml).expect("parses");
        let d = kawaii_model::validate(&g).expect("valid").desired;
        let p = kawaii_plan::plan(&d, None).expect("plan");
        let msg = IkeConfig::from_plan(&p.ipsec[0], "none");
        let bytes = serde_vici::to_vec(&msg).expect("encodes");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("aes256-sha512-modp2048"));
        assert!(text.contains("172.16.1.0/24"));
        assert!(!text.contains("never-renders"));
    }

    #[test]
    fn load_conn_encodes_ipv6_addresses_and_both_families() {
        let text = include_str!("../../plan/testdata/render/ipsec-ipv6/config.toml");
        let g = kawaii_model::Gateway::parse(text, kawaii_model::Format::Toml).expect("parses");
        let d = kawaii_model::validate(&g).expect("valid").desired;
        let p = kawaii_plan::plan(&d, None).expect("plan");
        let dual = p
            .ipsec
            .iter()
            .find(|c| c.name == "Dual office")
            .expect("conn");
        let msg = IkeConfig::from_plan(dual, "none");
        let ike = &msg[&dual.id];
        assert_eq!(ike.local_addrs, ["2001:db8:ff::10"]);
        assert_eq!(ike.remote_addrs, ["2001:db8:5::9"]);
        assert_eq!(ike.remote.id, "2001:db8:5::9");
        let child = &ike.children[&dual.id];
        assert_eq!(child.local_ts, ["10.1.0.0/24", "2001:db8:1::/64"]);
        assert_eq!(child.remote_ts, ["172.16.2.0/24", "2001:db8:a2::/64"]);
        assert!(serde_vici::to_vec(&msg).is_ok());
    }
}
