//! A remote office for IPsec tests, added to the gateway lab on its internet side:
//!
//! ```text
//!  router eth2 ── office eth0 198.51.100.8/32 (own charon, kernel-libipsec)
//!                 office eth1 172.16.1.1/24, 172.16.2.1/24 ── ohost 172.16.1.10, 172.16.2.10
//! ```
//! [`build_at`] puts an office elsewhere (several offices, overlapping LANs). [`build_dual`]
//! builds the same office dual-stack (for a gateway lab that is dual-stack too):
//!
//! ```text
//!  router eth2 2001:db8:5::1/64 ── office eth0 2001:db8:5::8/64
//!                                  office eth1 2001:db8:a1::1/64 ── ohost 2001:db8:a1::10/64
//! ```
//! The office's charon is independent of kawaii: its own `strongswan.conf`, VICI socket and
//! private `/run`, configured with a hand-written `swanctl.conf` loaded by `swanctl`.

use crate::{Host, KitError, Result, Topology, wait_for};
use std::path::PathBuf;
use std::time::Duration;

pub const OFFICE_PUBLIC: &str = "198.51.100.8";
pub const OFFICE_HOST: &str = "172.16.1.10";
/// The office host's address in the second office subnet (for remote-subnet changes).
pub const OFFICE_HOST_2: &str = "172.16.2.10";
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// The dual-stack office ([`build_dual`]): its public IPv6 address, LAN prefix and host.
pub const OFFICE_PUBLIC6: &str = "2001:db8:5::8";
pub const OFFICE_SUBNET6: &str = "2001:db8:a1::/64";
pub const OFFICE_HOST6: &str = "2001:db8:a1::10";

/// What the office's side of the tunnel looks like.
#[derive(Debug, Clone)]
pub struct OfficeConn {
    pub psk: String,
    /// The gateway's public address.
    pub remote_peer: String,
    /// What the office offers: narrowed by the gateway's proposal.
    pub local_ts: String,
    pub remote_ts: String,
    pub ike_proposal: String,
    pub esp_proposal: String,
}

#[derive(Debug, Clone)]
pub struct Office {
    pub office: Host,
    pub host: Host,
    /// The office's public address (its IKE identity).
    pub public: String,
    /// Its public IPv6 address (the IKE identity towards an IPv6 `remote_peer`), if dual-stack.
    pub public6: Option<String>,
    pub dir: PathBuf,
    /// Index of the office charon in the topology.
    pub charon: usize,
    pub svc: String,
}

fn io(cmd: &str) -> impl FnOnce(std::io::Error) -> KitError + '_ {
    move |error| KitError::Spawn {
        cmd: cmd.to_string(),
        error,
    }
}

/// One phase of an `[[ipsec]]` connection: DH group number, integrity, encryption (the
/// gateway's spelling, e.g. `(14, "SHA256", "AES256")`).
pub type Phase<'a> = (u32, &'a str, &'a str);

/// What [`build`]'s charon accepts by default: MODP2048, SHA256, AES256.
pub const DEFAULT_PHASE: Phase<'static> = (14, "SHA256", "AES256");

/// The ingress rule the site-to-site tests give a connection: tcp/22 only.
pub const SSH_ONLY: &str = r#"ingress_rules = [{ protocol = "tcp", ports = "22" }]"#;

/// The gateway's `[[ipsec]]` table for the office: connection `ACME Office` to
/// [`OFFICE_PUBLIC`] for `172.16.1.0/24` with `psk`, [`DEFAULT_PHASE`] in both phases.
pub fn ipsec_toml(psk: &str) -> String {
    ipsec_conn_toml(
        "ACME Office",
        OFFICE_PUBLIC,
        "172.16.1.0/24",
        psk,
        (DEFAULT_PHASE, DEFAULT_PHASE),
        "",
    )
}

/// A gateway `[[ipsec]]` table: connection `name` to `peer` for the office's `subnet` with
/// `psk`, phases 1 and 2 as given, and `extra` lines (e.g. [`SSH_ONLY`]) at the end.
pub fn ipsec_conn_toml(
    name: &str,
    peer: &str,
    subnet: &str,
    psk: &str,
    (p1, p2): (Phase, Phase),
    extra: &str,
) -> String {
    format!(
        r#"
[[ipsec]]
name = "{name}"
remote_peer = "{peer}"
remote_subnet = "{subnet}"
pre_shared_key = "{psk}"
phase1_dh_group_number = {}
phase1_integrity_algorithm = "{}"
phase1_encryption_algorithm = "{}"
phase2_dh_group_number = {}
phase2_integrity_algorithm = "{}"
phase2_encryption_algorithm = "{}"
{extra}
"#,
        p1.0, p1.1, p1.2, p2.0, p2.1, p2.2,
    )
}

/// The gateway's `[[ipsec]]` table for the dual-stack office over IPv6 ([`OFFICE_DUAL`]):
/// connection `Office v6` to [`OFFICE_PUBLIC6`] for [`OFFICE_SUBNET6`] with `psk`,
/// [`DEFAULT_PHASE`] in both phases, `extra` lines at the end.
pub fn ipsec6_toml(psk: &str, extra: &str) -> String {
    ipsec_conn_toml(
        "Office v6",
        OFFICE_PUBLIC6,
        OFFICE_SUBNET6,
        psk,
        (DEFAULT_PHASE, DEFAULT_PHASE),
        extra,
    )
}

/// Where an office sits: the names of its two namespaces (office, host), its public address,
/// the router interface that reaches it, and its LAN (the office's address and its host's, with
/// their prefix; the first pair is the host's default route).
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub public: &'a str,
    pub router_if: &'a str,
    pub lan: &'a [(&'a str, &'a str)],
    /// IPv6 (None: an IPv4-only office): the router's and the office's public addresses on
    /// their link, with prefix.
    pub public6: Option<(&'a str, &'a str)>,
    /// The IPv6 LAN, like `lan`.
    pub lan6: &'a [(&'a str, &'a str)],
}

/// The office of the IPsec tests: 198.51.100.8 behind the router's eth2, two subnets.
pub const OFFICE: Place<'static> = Place {
    name: "office",
    host: "ohost",
    public: OFFICE_PUBLIC,
    router_if: "eth2",
    lan: &[
        ("172.16.1.1/24", "172.16.1.10/24"),
        ("172.16.2.1/24", "172.16.2.10/24"),
    ],
    public6: None,
    lan6: &[],
};

/// [`OFFICE`], dual-stack: also 2001:db8:5::8 (on the router's eth2 link) and the LAN
/// 2001:db8:a1::/64.
pub const OFFICE_DUAL: Place<'static> = Place {
    public6: Some(("2001:db8:5::1/64", "2001:db8:5::8/64")),
    lan6: &[("2001:db8:a1::1/64", "2001:db8:a1::10/64")],
    ..OFFICE
};

/// Adds the office and its host behind `router`, starts the office charon (no connection yet)
/// and an HTTP service on the host (port 8080).
pub fn build(t: &mut Topology, router: &Host, svc: &str) -> Result<Office> {
    build_at(t, router, svc, &OFFICE)
}

/// [`build`], dual-stack ([`OFFICE_DUAL`]); the router must forward IPv6 (a dual-stack lab's
/// does).
pub fn build_dual(t: &mut Topology, router: &Host, svc: &str) -> Result<Office> {
    build_at(t, router, svc, &OFFICE_DUAL)
}

fn host_part(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// [`build`] at `place`: its host's HTTP service answers as `place.host`.
pub fn build_at(t: &mut Topology, router: &Host, svc: &str, place: &Place) -> Result<Office> {
    let office = t.host(place.name)?;
    let host = t.host(place.host)?;
    if place.public6.is_none() {
        for h in [&office, &host] {
            h.ipv4_only()?;
        }
    }
    t.link(router, place.router_if, &office, "eth0")?;
    t.link(&office, "eth1", &host, "eth0")?;
    let public = format!("{}/32", place.public);
    router.run(&["ip", "route", "add", &public, "dev", place.router_if])?;
    office.addr("eth0", &public)?;
    office.run(&["ip", "route", "add", "198.51.100.1", "dev", "eth0"])?;
    office.default_via("198.51.100.1")?;
    for (gw, h) in place.lan {
        office.addr("eth1", gw)?;
        host.addr("eth0", h)?;
    }
    office.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    if let Some((gw, _)) = place.lan.first() {
        host.default_via(host_part(gw))?;
    }
    if let Some((router6, office6)) = place.public6 {
        router.addr6(place.router_if, router6)?;
        office.addr6("eth0", office6)?;
        office.route6("default", host_part(router6))?;
        office.run(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        for (gw, h) in place.lan6 {
            office.addr6("eth1", gw)?;
            host.addr6("eth0", h)?;
        }
        if let Some((gw, _)) = place.lan6.first() {
            host.run(&["ip", "-6", "route", "add", "default", "via", host_part(gw)])?;
        }
    }
    t.spawn(
        &host,
        &format!("{}-http", place.host),
        &["python3", svc, "http", place.host, "8080"],
    )?;

    let dir = t.dir().join(place.name);
    std::fs::create_dir_all(&dir).map_err(io("mkdir office"))?;
    let conf = dir.join("strongswan.conf");
    std::fs::write(
        &conf,
        format!(
            "charon {{\n  load_modular = no\n  load = random nonce openssl aes sha1 sha2 hmac gmp kdf \
             pem pkcs1 x509 pubkey socket-default kernel-libipsec kernel-netlink vici\n  \
             install_virtual_ip = no\n  filelog {{\n    office {{\n      path = {d}/charon.log\n      \
             default = 1\n      ike_name = yes\n      flush_line = yes\n    }}\n  }}\n  \
             syslog {{\n    daemon {{\n      default = -1\n    }}\n  }}\n  plugins {{\n    vici {{\n      \
             socket = unix://{d}/charon.vici\n    }}\n  }}\n}}\n",
            d = dir.display()
        ),
    )
    .map_err(io("write office strongswan.conf"))?;
    let env = format!("STRONGSWAN_CONF={}", conf.display());
    let here = format!("KAWAII_CHARON_DIR={}", dir.display());
    // A fresh /run (charon's pid file), keeping the office's directory if it lies there (the
    // lab's does), as kawaii's own charon does.
    let charon = t.spawn(
        &office,
        &format!("{}-charon", place.name),
        &[
            "env",
            &env,
            &here,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            "cd \"$KAWAII_CHARON_DIR\" && mount -t tmpfs office-run /run && mkdir -p \"$KAWAII_CHARON_DIR\" && mount --no-canonicalize --bind . \"$KAWAII_CHARON_DIR\" && exec \"$0\"",
            CHARON,
        ],
    )?;
    let sock = dir.join("charon.vici");
    wait_for(Duration::from_secs(10), "office charon VICI socket", || {
        sock.exists().then_some(())
    })?;
    Ok(Office {
        office,
        host,
        public: place.public.to_string(),
        public6: place.public6.map(|(_, o)| host_part(o).to_string()),
        dir,
        charon,
        svc: svc.to_string(),
    })
}

impl Office {
    fn uri(&self) -> String {
        format!("unix://{}", self.dir.join("charon.vici").display())
    }

    /// Writes the office's `swanctl.conf` and loads it (connections and secrets replaced). The
    /// office talks IKE from its address of `c.remote_peer`'s family.
    pub fn load(&self, c: &OfficeConn) -> Result<()> {
        let file = self.dir.join("swanctl.conf");
        let me = match (c.remote_peer.contains(':'), &self.public6) {
            (true, Some(v6)) => v6,
            _ => &self.public,
        };
        let text = format!(
            r#"connections {{
    kawaii {{
        version = 2
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = {ike}
        unique = replace
        local {{
            auth = psk
            id = {me}
        }}
        remote {{
            auth = psk
            id = {peer}
        }}
        children {{
            kawaii {{
                local_ts = {lts}
                remote_ts = {rts}
                esp_proposals = {esp}
                start_action = none
            }}
        }}
    }}
}}
secrets {{
    ike-kawaii {{
        id-1 = {me}
        id-2 = {peer}
        secret = "{psk}"
    }}
}}
"#,
            peer = c.remote_peer,
            ike = c.ike_proposal,
            esp = c.esp_proposal,
            lts = c.local_ts,
            rts = c.remote_ts,
            psk = c.psk,
        );
        std::fs::write(&file, text).map_err(io("write swanctl.conf"))?;
        let f = file.to_string_lossy().into_owned();
        self.office.run(&[
            "swanctl",
            "--load-all",
            "--noprompt",
            "--file",
            &f,
            "--uri",
            &self.uri(),
        ])?;
        Ok(())
    }

    /// Tears the office's SAs down (the gateway re-initiates).
    pub fn terminate(&self) -> Result<String> {
        self.office.run(&[
            "swanctl",
            "--terminate",
            "--ike",
            "kawaii",
            "--force",
            "--uri",
            &self.uri(),
        ])
    }

    /// `swanctl --list-sas` on the office.
    pub fn sas(&self) -> String {
        self.office
            .run(&["swanctl", "--list-sas", "--uri", &self.uri()])
            .unwrap_or_default()
    }

    /// Everything the office's charon logged.
    pub fn log(&self) -> String {
        crate::slurp(&self.dir.join("charon.log"))
    }
}
