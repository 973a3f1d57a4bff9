//! Drop-in formats of the anchors, converted to native documents.
//!
//! kiagateway's `servers.toml`: `[backends]` maps a domain to one backend that receives both its
//! TLS (443) and its plain HTTP (80) traffic; or `[https_backends]` + `[http_backends]` give them
//! separately. It runs as an edge node: the domain router alone, on all addresses, :80 and :443.

use crate::error::{FieldError, ModelError};
use crate::secret::Secret;
use crate::spec::{Gateway, Pipe, Route, RouterSettings, WgPeer, WireGuard};
use serde::{Deserialize, Serialize};

/// Some(..) when `text` is a kiagateway `servers.toml` (its tables and nothing else).
pub fn kiagateway(text: &str) -> Option<Result<Gateway, ModelError>> {
    let table: toml::Table = text.parse().ok()?;
    const KEYS: [&str; 3] = ["backends", "https_backends", "http_backends"];
    if table.is_empty() || !table.keys().all(|k| KEYS.contains(&k.as_str())) {
        return None;
    }
    let mut routes: Vec<Route> = Vec::new();
    for key in KEYS {
        let Some(section) = table.get(key) else {
            continue;
        };
        let Some(map) = section.as_table() else {
            return Some(Err(ModelError::Syntax(FieldError::new(
                key,
                "must be a table of \"domain\" = \"ip:port\"",
            ))));
        };
        for (domain, backend) in map {
            let backends: Vec<String> = match backend {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => {
                    return Some(Err(ModelError::Syntax(FieldError::new(
                        format!("{key}.{domain}"),
                        "must be \"ip:port\" or a list of them",
                    ))));
                }
            };
            let domain = domain.to_ascii_lowercase();
            let idx = match routes.iter().position(|r| r.domain == domain) {
                Some(i) => i,
                None => {
                    routes.push(Route {
                        domain,
                        https: vec![],
                        http: vec![],
                        balance: None,
                        proxy_protocol: None,
                        health_check: None,
                    });
                    routes.len() - 1
                }
            };
            let r = &mut routes[idx];
            match key {
                "backends" => {
                    r.https.extend(backends.clone());
                    r.http.extend(backends);
                }
                "https_backends" => r.https.extend(backends),
                _ => r.http.extend(backends),
            }
        }
    }
    let mut g = Gateway {
        routes,
        router: Some(RouterSettings::default()),
        ..Default::default()
    };
    g.gateway.name = "kiagateway".into();
    Some(Ok(g))
}

/// Cloud-Gateway's VPN subnet and the server's listen port.
pub const CLOUD_GATEWAY_SUBNET: &str = "10.192.0.0/24";
pub const CLOUD_GATEWAY_PORT: u32 = 8765;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CgConf {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    public_key: Option<String>,
    private_key: Secret,
    #[serde(default)]
    peers: Vec<CgPeer>,
    #[serde(default)]
    pipes: Vec<CgPipe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CgPeer {
    name: String,
    public_key: String,
    endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CgPipe {
    name: String,
    port: u32,
    remote: String,
    peer: Option<String>,
}

/// The VPN address of a Cloud-Gateway node: 10.192.0.N with N in 1..=254 from a hash (FNV-1a)
/// of its public key's text, so every file that names the node agrees.
pub fn cloud_gateway_address(public_key: &str) -> std::net::Ipv4Addr {
    let h = public_key
        .trim()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    std::net::Ipv4Addr::new(10, 192, 0, (h % 254) as u8 + 1)
}

/// Some(..) when `text` is a Cloud-Gateway `conf.yaml`; None when it is something else.
pub fn cloud_gateway(text: &str) -> Option<Result<Gateway, ModelError>> {
    let v: yaml_serde::Value = yaml_serde::from_str(text).ok()?;
    let kind = v.get("type").and_then(|t| t.as_str())?;
    if !matches!(kind, "server" | "client") || v.get("name").is_none() {
        return None;
    }
    let syntax = |path: String, reason: String| ModelError::Syntax(FieldError::new(path, reason));
    let c: CgConf = match serde_path_to_error::deserialize(v) {
        Ok(c) => c,
        Err(e) => return Some(Err(syntax(e.path().to_string(), e.inner().to_string()))),
    };
    let Some(own_key) = c.public_key.clone() else {
        return Some(Err(syntax(
            "public_key".into(),
            "is required: every node's VPN address is derived from the public keys".into(),
        )));
    };
    // Two nodes on one address would be ambiguous: report it instead of guessing.
    let mut seen: Vec<(std::net::Ipv4Addr, String, String)> = vec![(
        cloud_gateway_address(&own_key),
        c.name.clone(),
        "public_key".into(),
    )];
    for (i, p) in c.peers.iter().enumerate() {
        let a = cloud_gateway_address(&p.public_key);
        if let Some((_, other, _)) = seen.iter().find(|(b, _, _)| *b == a) {
            return Some(Err(syntax(
                format!("peers[{i}].public_key"),
                format!(
                    "gives {:?} the VPN address {a}, which {other:?} already has; use another key pair for one of them",
                    p.name
                ),
            )));
        }
        seen.push((a, p.name.clone(), format!("peers[{i}]")));
    }
    let client = c.kind == "client";
    let peers = c
        .peers
        .iter()
        .map(|p| WgPeer {
            name: p.name.clone(),
            public_key: p.public_key.clone(),
            allowed_ips: vec![format!("{}/32", cloud_gateway_address(&p.public_key))],
            address: None,
            address6: None,
            preshared_key: None,
            // A client keeps its way through NAT open and lets the server learn where it is.
            persistent_keepalive: (client && p.endpoint.is_some()).then_some(25),
            endpoint: p.endpoint.clone(),
            allow_internet: false,
            ingress_rules: Vec::new(),
        })
        .collect();
    // On a client a pipe without a peer goes through the server; naming itself means "here".
    let server = c.peers.first().map(|p| p.name.clone());
    let pipes = c
        .pipes
        .into_iter()
        .map(|p| Pipe {
            name: p.name,
            port: p.port,
            remote: p.remote,
            peer: match p.peer {
                Some(n) if n == c.name => None,
                None if client => server.clone(),
                other => other,
            },
            listen: None,
        })
        .collect();
    let mut g = Gateway {
        wireguard: Some(WireGuard {
            interface: "kawaii-wg0".into(),
            listen_port: if client { 0 } else { CLOUD_GATEWAY_PORT },
            address: format!("{}/24", cloud_gateway_address(&own_key)),
            address6: None,
            private_key_file: None,
            private_key: Some(c.private_key),
            peers,
        }),
        pipes,
        ..Default::default()
    };
    g.gateway.name = c.name;
    Some(Ok(g))
}

/// Kilo's API group and version.
pub const KILO_API_VERSION: &str = "kilo.squat.ai/v1alpha1";

/// A Kilo `Peer` object, as `kubectl apply -f peer.yaml` takes it.
/// Typos are errors (`allowedIps:` for `allowedIPs:` must not pass as "no allowed IPs"), so
/// every level denies unknown fields; Kubernetes' own bookkeeping fields are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KiloPeer {
    pub api_version: String,
    pub kind: String,
    pub metadata: KiloMeta,
    pub spec: KiloPeerSpec,
    /// What `kubectl get -o yaml` adds; ignored.
    #[serde(default, skip_serializing)]
    pub status: Option<yaml_serde::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KiloMeta {
    pub name: String,
    /// Kubernetes object metadata a manifest may carry; accepted and ignored.
    #[serde(default, skip_serializing)]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing)]
    pub labels: Option<yaml_serde::Value>,
    #[serde(default, skip_serializing)]
    pub annotations: Option<yaml_serde::Value>,
    #[serde(default, skip_serializing)]
    pub uid: Option<String>,
    #[serde(default, skip_serializing)]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing)]
    pub generation: Option<u64>,
    #[serde(default, skip_serializing)]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing)]
    pub managed_fields: Option<yaml_serde::Value>,
}

/// `Debug` redacts the preshared key (written by hand below); only `kilo_peer(_, true)` puts
/// the real key in, for the export that asks for it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KiloPeerSpec {
    #[serde(default, rename = "allowedIPs")]
    pub allowed_ips: Vec<String>,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<KiloEndpoint>,
}

impl std::fmt::Debug for KiloPeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiloPeerSpec")
            .field("allowed_ips", &self.allowed_ips)
            .field("public_key", &self.public_key)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .field(
                "preshared_key",
                &self.preshared_key.as_ref().map(|_| crate::secret::REDACTED),
            )
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// `endpoint: {dnsOrIP: {dns|ip}, port}` (older manifests: `{ip, port}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KiloEndpoint {
    #[serde(default, rename = "dnsOrIP", skip_serializing_if = "Option::is_none")]
    pub dns_or_ip: Option<KiloDnsOrIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KiloDnsOrIp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Some(..) when `text` holds Kilo `Peer` manifests (every YAML document one), each turned into
/// a WireGuard peer; None when it is something else.
pub fn kilo_peers(text: &str) -> Option<Result<Vec<WgPeer>, ModelError>> {
    let mut docs = Vec::new();
    for de in yaml_serde::Deserializer::from_str(text) {
        let v: yaml_serde::Value = yaml_serde::Value::deserialize(de).ok()?;
        if v.is_null() {
            continue;
        }
        docs.push(v);
    }
    let is_peer = |v: &yaml_serde::Value| {
        v.get("apiVersion").and_then(|a| a.as_str()) == Some(KILO_API_VERSION)
            && v.get("kind").and_then(|k| k.as_str()) == Some("Peer")
    };
    if docs.is_empty() || !docs.iter().all(is_peer) {
        return None;
    }
    let mut peers = Vec::new();
    for (i, v) in docs.into_iter().enumerate() {
        let k: KiloPeer = match serde_path_to_error::deserialize(v) {
            Ok(k) => k,
            Err(e) => {
                let at = if i == 0 {
                    String::new()
                } else {
                    format!("(document {})", i + 1)
                };
                return Some(Err(ModelError::Syntax(FieldError::new(
                    format!("{at}{}", e.path()),
                    e.inner().to_string(),
                ))));
            }
        };
        let endpoint = k.spec.endpoint.map(|e| {
            let host = e
                .dns_or_ip
                .and_then(|d| d.dns.filter(|s| !s.is_empty()).or(d.ip))
                .or(e.ip)
                .unwrap_or_default();
            if host.contains(':') {
                format!("[{host}]:{}", e.port)
            } else {
                format!("{host}:{}", e.port)
            }
        });
        peers.push(WgPeer {
            name: k.metadata.name,
            public_key: k.spec.public_key,
            allowed_ips: k.spec.allowed_ips,
            address: None,
            address6: None,
            preshared_key: k.spec.preshared_key.map(Secret::new),
            persistent_keepalive: k.spec.persistent_keepalive,
            endpoint,
            allow_internet: false,
            ingress_rules: Vec::new(),
        });
    }
    Some(Ok(peers))
}

/// The Kilo `Peer` object describing `p` (its allocated address as its allowed IP). The
/// preshared key is included only when `with_secrets`.
pub fn kilo_peer(p: &WgPeer, with_secrets: bool) -> KiloPeer {
    let allowed_ips = if p.allowed_ips.is_empty() {
        let v4 = p.address.iter().map(|a| format!("{a}/32"));
        v4.chain(p.address6.iter().map(|a| format!("{a}/128")))
            .collect()
    } else {
        p.allowed_ips.clone()
    };
    let endpoint = p.endpoint.as_deref().and_then(|e| {
        let (host, port) = e.rsplit_once(':')?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        Some(KiloEndpoint {
            dns_or_ip: Some(KiloDnsOrIp {
                dns: (!is_ip).then(|| host.clone()),
                ip: is_ip.then_some(host),
            }),
            ip: None,
            port: port.parse().ok()?,
        })
    });
    KiloPeer {
        api_version: KILO_API_VERSION.into(),
        kind: "Peer".into(),
        metadata: KiloMeta {
            name: p.name.clone(),
            ..KiloMeta::default()
        },
        spec: KiloPeerSpec {
            allowed_ips,
            public_key: p.public_key.clone(),
            persistent_keepalive: p.persistent_keepalive,
            preshared_key: p
                .preshared_key
                .as_ref()
                .filter(|_| with_secrets)
                .map(|k| k.expose().to_string()),
            endpoint,
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let one = kiagateway("[backends]\n\"example.com\" = \"127.0.0.1:8001\"\n\"example.org\" = \"127.0.0.1:8002\"\n")
            .expect("recognised")
            .expect("valid");
        assert_eq!(one.routes.len(), 2);
        assert_eq!(one.routes[0].https, one.routes[0].http);
        let two = kiagateway("[https_backends]\n\"example.com\" = \"127.0.0.1:8443\"\n[http_backends]\n\"example.com\" = \"127.0.0.1:8080\"\n")
            .expect("recognised")
            .expect("valid");
        assert_eq!(two.routes.len(), 1);
        assert_eq!(two.routes[0].https, ["127.0.0.1:8443"]);
        assert_eq!(two.routes[0].http, ["127.0.0.1:8080"]);
        assert!(crate::validate(&two).is_ok());
        assert!(kiagateway("[gateway]\nname = \"x\"\n").is_none());
    }

    /// The manifest from ../shared/seeds/kilo-vpn.md, as written there.
    const SEED: &str = "apiVersion: kilo.squat.ai/v1alpha1
kind: Peer
metadata:
  name: squat
spec:
  allowedIPs:
  - 10.5.0.1/32 # Example IP address on the peer's interface.
  publicKey: GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=
  persistentKeepalive: 10
";

    #[test]
    fn kilo_peer_round_trip() {
        let peers = kilo_peers(SEED).expect("recognised").expect("valid");
        assert_eq!(peers.len(), 1);
        let p = &peers[0];
        assert_eq!(p.name, "squat");
        assert_eq!(p.allowed_ips, ["10.5.0.1/32"]);
        assert_eq!(p.public_key, "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=");
        assert_eq!(p.persistent_keepalive, Some(10));
        let back = kilo_peer(p, false);
        let text = yaml_serde::to_string(&back).expect("yaml");
        let again = kilo_peers(&text).expect("recognised").expect("valid");
        assert_eq!(&again[0], p, "{text}");
        let original: yaml_serde::Value = yaml_serde::from_str(SEED).expect("yaml");
        let ours: yaml_serde::Value = yaml_serde::from_str(&text).expect("yaml");
        assert_eq!(original, ours, "the Peer object comes back as it went in");
    }

    /// A peer with allocated addresses of both families shows both as its allowed IPs.
    #[test]
    fn kilo_peer_of_an_allocated_dual_stack_peer() {
        let mut p = kilo_peers(SEED)
            .expect("recognised")
            .expect("valid")
            .remove(0);
        p.allowed_ips.clear();
        p.address = Some("10.8.0.2".into());
        p.address6 = Some("fd00:8::2".into());
        let k = kilo_peer(&p, false);
        assert_eq!(k.spec.allowed_ips, ["10.8.0.2/32", "fd00:8::2/128"]);
    }

    #[test]
    fn kilo_documents_endpoints_and_errors() {
        let two = format!(
            "{SEED}---\napiVersion: kilo.squat.ai/v1alpha1\nkind: Peer\nmetadata:\n  name: b\nspec:\n  publicKey: x\n  endpoint:\n    dnsOrIP:\n      ip: 192.0.2.7\n    port: 51820\n"
        );
        let peers = kilo_peers(&two).expect("recognised").expect("parsed");
        assert_eq!(peers[1].endpoint.as_deref(), Some("192.0.2.7:51820"));
        assert!(peers[1].allowed_ips.is_empty());
        let bad = SEED.replace("persistentKeepalive: 10", "persistentKeepalive: soon");
        let err = kilo_peers(&bad)
            .expect("recognised")
            .expect_err("type error");
        assert!(
            err.to_string().contains("spec.persistentKeepalive"),
            "{err}"
        );
        // A typo is an error naming the field, never a peer with its allowed IPs dropped.
        let typo = SEED.replace("allowedIPs:", "allowedIps:");
        assert_ne!(typo, SEED);
        let err = kilo_peers(&typo)
            .expect("recognised")
            .expect_err("unknown field");
        assert!(err.to_string().contains("spec.allowedIps"), "{err}");
        assert!(err.to_string().contains("unknown field"), "{err}");
        // Kubernetes bookkeeping is accepted.
        let labelled = SEED.replace("metadata:\n", "metadata:\n  labels:\n    team: ops\n");
        assert_ne!(labelled, SEED);
        assert!(kilo_peers(&labelled).expect("recognised").is_ok());
        assert!(kilo_peers("[gateway]\nname = \"x\"\n").is_none());
        assert!(kilo_peers("apiVersion: v1\nkind: Service\n").is_none());
    }

    const CG_SERVER: &str = "type: server
name: server
public_key: 2o3hItYcvPrcmDMog6rOhmdzZd6PH+QIZtCvZnVrslU=
private_key: YExoeogF9Ekn30/ybaCYHGsvQwT93+6IQLAp6xk2bFM=
peers:
  - name: client-cloudnative
    public_key: QqdKxpGpG1TTuyjCayMpRRKwLm5kjyIKZybxjv8oDnQ=
  - name: client-legacy
    public_key: L0pt7T0BGsk4nByoS0I8goLoCRTx0CeKCsSlNIBX2Gk=
pipes:
  - name: nginx
    port: 8080
    remote: nginx:80
    peer: client-cloudnative # must match the exact name of the client
";
    const CG_CLIENT: &str = "type: client
name: client-legacy
public_key: L0pt7T0BGsk4nByoS0I8goLoCRTx0CeKCsSlNIBX2Gk=
private_key: uA2r7XTFgpCa/qbxbJvxJCDO6dg6BU7FIwNSNvd46mo=
peers:
  - name: server
    endpoint: server:8765
    public_key: 2o3hItYcvPrcmDMog6rOhmdzZd6PH+QIZtCvZnVrslU=
pipes:
  - name: nginx
    port: 8080
    remote: nginx:80
";

    #[test]
    fn cloud_gateway_files_agree_on_addresses_and_pipes() {
        let server = cloud_gateway(CG_SERVER)
            .expect("recognised")
            .expect("valid");
        let client = cloud_gateway(CG_CLIENT)
            .expect("recognised")
            .expect("valid");
        let sw = server.wireguard.as_ref().expect("wg");
        let cw = client.wireguard.as_ref().expect("wg");
        assert_eq!(sw.listen_port, 8765);
        assert_eq!(cw.listen_port, 0, "a client's port is any free one");
        // Each side's own address is what the other side routes to it.
        let server_ip = sw.address.split('/').next().expect("ip").to_string();
        let client_ip = cw.address.split('/').next().expect("ip").to_string();
        assert_eq!(cw.peers[0].allowed_ips, [format!("{server_ip}/32")]);
        assert_eq!(sw.peers[1].allowed_ips, [format!("{client_ip}/32")]);
        assert!(sw.address.starts_with("10.192.0.") && sw.address.ends_with("/24"));
        // The server's pipe goes through the named client; the client's through the server.
        assert_eq!(server.pipes[0].peer.as_deref(), Some("client-cloudnative"));
        assert_eq!(client.pipes[0].peer.as_deref(), Some("server"));
        assert_eq!(cw.peers[0].persistent_keepalive, Some(25));
        let own = CG_CLIENT.replace(
            "remote: nginx:80\n",
            "remote: nginx:80\n    peer: client-legacy\n",
        );
        let own = cloud_gateway(&own).expect("recognised").expect("valid");
        assert_eq!(own.pipes[0].peer, None, "naming itself means: dial here");
        for g in [&server, &client, &own] {
            crate::validate(g).expect("valid as a kawaii document");
        }
        assert!(cloud_gateway("[gateway]\nname = \"x\"\n").is_none());
        assert!(cloud_gateway(SEED).is_none());
    }

    #[test]
    fn cloud_gateway_errors_name_their_field() {
        let bad = CG_CLIENT.replace("port: 8080", "port: eighty");
        let err = cloud_gateway(&bad)
            .expect("recognised")
            .expect_err("type error");
        assert!(err.to_string().contains("pipes[0].port"), "{err}");
        let same = CG_SERVER.replace(
            "L0pt7T0BGsk4nByoS0I8goLoCRTx0CeKCsSlNIBX2Gk=",
            "QqdKxpGpG1TTuyjCayMpRRKwLm5kjyIKZybxjv8oDnQ=",
        );
        let err = cloud_gateway(&same)
            .expect("recognised")
            .expect_err("collision");
        assert!(err.to_string().contains("peers[1].public_key"), "{err}");
        assert!(err.to_string().contains("client-cloudnative"), "{err}");
    }
}
