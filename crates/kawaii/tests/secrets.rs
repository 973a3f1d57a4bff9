//! Every kind of secret (the gateway's WireGuard key and the endpoint-sync key derived from it,
//! a peering's `consent_key`, bearer tokens and their hashes, a peer's PSK, an IPsec PSK), each a
//! distinctive marker, searched for in every output: API answers for every GET route × role,
//! `/metrics`, `/v1/status`, `/v1/audit`, error bodies, the daemon's debug log, `kawaii render`,
//! and `Debug` of every config type (document, drop-ins, validated state, plan).

use base64::Engine;
use kawaii_testkit::api::Api;
use kawaii_testkit::serve::{Node, ServeOptions};
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const WG_KEY: &[u8; 32] = b"KAWAII-MARKER-GATEWAY-WG-KEY-01!";
const PEER_PSK: &[u8; 32] = b"KAWAII-MARKER-PEER-PSK-00000001!";
const CONSENT: &str = "consent-MARKER-7f3a9c1d";
const IPSEC_PSK: &str = "ipsec-psk-MARKER-c0ffee42";
const IPSEC_PSK_2: &str = "ipsec-psk-MARKER-second-77";
const TOKENS: [(&str, &str); 3] = [
    ("admin", "token-MARKER-admin-5b1e"),
    ("operator", "token-MARKER-operator-9d2c"),
    ("viewer", "token-MARKER-viewer-4a8f"),
];

fn sha(token: &str) -> String {
    hex::encode(kawaii_api::hash_token(token))
}

/// Every form in which each secret could leak, with a name for the failure message.
fn forms() -> Vec<(String, String)> {
    let sync = kawaii_drivers::wg_sync::sync_key(WG_KEY);
    let mut f = vec![
        ("WireGuard key".into(), B64.encode(WG_KEY)),
        ("WireGuard key (raw)".into(), "KAWAII-MARKER-GATEWAY".into()),
        ("WireGuard key (hex)".into(), hex::encode(WG_KEY)),
        ("sync key (hex)".into(), hex::encode(sync)),
        ("sync key (base64)".into(), B64.encode(sync)),
        ("sync key (bytes)".into(), bytes_debug(&sync)),
        ("WireGuard key (bytes)".into(), bytes_debug(WG_KEY)),
        ("peer PSK".into(), B64.encode(PEER_PSK)),
        ("consent_key".into(), CONSENT.into()),
        ("IPsec PSK".into(), IPSEC_PSK.into()),
        ("IPsec PSK (changed)".into(), IPSEC_PSK_2.into()),
    ];
    for (role, t) in TOKENS {
        f.push((format!("{role} token"), t.into()));
        f.push((format!("{role} token hash"), sha(t)));
        f.push((
            format!("{role} token hash (bytes)"),
            bytes_debug(&kawaii_api::hash_token(t)),
        ));
    }
    f
}

/// How `Debug` shows a byte array, as far as its first eight bytes.
fn bytes_debug(b: &[u8; 32]) -> String {
    format!("{:?}", &b[..8]).trim_end_matches(']').to_string()
}

fn assert_clean(surface: &str, text: &str) {
    assert_clean_but(surface, text, None);
}

/// As [`assert_clean`], except the one secret this surface exists to hand out.
fn assert_clean_but(surface: &str, text: &str, allowed: Option<&str>) {
    for (what, value) in forms() {
        if Some(what.as_str()) == allowed {
            continue;
        }
        assert!(
            !text.contains(&value),
            "{surface} shows the {what}:\n{text}"
        );
    }
}

/// `testdata/api-gateway.toml` (three tokens, an IPsec connection) with the markers filled in,
/// and a WireGuard device with an inline key, a peer with a PSK, and a peering with a
/// `consent_key`.
fn config(ipsec_psk: &str) -> String {
    let [(_, admin), (_, operator), (_, viewer)] = TOKENS;
    let base = include_str!("testdata/api-gateway.toml")
        .replace("@admin@", &sha(admin))
        .replace("@operator@", &sha(operator))
        .replace("@viewer@", &sha(viewer))
        .replace("@psk@", ipsec_psk);
    format!(
        r#"{base}
[wireguard]
listen_port = 51820
address = "10.8.0.1/24"
private_key = "{}"

[[wireguard.peers]]
name = "alice"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
preshared_key = "{}"

[[vpc_peerings]]
name = "marvelous"
subnet = "10.2.0.0/24"
via = "203.0.113.50"
consent_key = "{CONSENT}"
"#,
        B64.encode(WG_KEY),
        B64.encode(PEER_PSK),
    )
}

/// `Debug` of the document, the drop-ins, the validated state and the plan; `kawaii render`.
#[test]
fn config_types_and_render_never_show_a_secret() {
    let text = config(IPSEC_PSK);
    let mut g = kawaii_model::Gateway::parse(&text, kawaii_model::Format::Toml).expect("doc");
    assert_clean("Debug of Gateway", &format!("{g:?}"));
    g.prepare_commit(&kawaii_model::Gateway::default());
    let report = kawaii_model::validate(&g).expect("valid");
    assert_clean("Debug of Desired", &format!("{:?}", report.desired));
    let plan = kawaii_plan::plan(&report.desired, None).expect("plan");
    assert_clean("Debug of Plan", &format!("{plan:?}"));
    assert_clean(
        "the plan as JSON",
        &serde_json::to_string(&plan).expect("json"),
    );

    let kilo = format!(
        "apiVersion: kilo.squat.ai/v1alpha1\nkind: Peer\nmetadata:\n  name: squat\nspec:\n  \
         allowedIPs: [10.5.0.1/32]\n  publicKey: GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=\n  \
         presharedKey: {}\n",
        B64.encode(PEER_PSK)
    );
    let peers = kawaii_model::dropin::kilo_peers(&kilo)
        .expect("a Kilo peer")
        .expect("valid");
    assert_clean("Debug of Kilo peers", &format!("{peers:?}"));
    let exported = kawaii_model::dropin::kilo_peer(&peers[0], false);
    assert_clean("Debug of a Kilo export", &format!("{exported:?}"));
    let cg = format!(
        "type: server\nname: cg\npublic_key: 2o3hItYcvPrcmDMog6rOhmdzZd6PH+QIZtCvZnVrslU=\n\
         private_key: {}\n",
        B64.encode(WG_KEY)
    );
    let parsed = kawaii_model::dropin::cloud_gateway(&cg).expect("a Cloud Gateway file");
    assert_clean("Debug of a Cloud Gateway drop-in", &format!("{parsed:?}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, &text).expect("write");
    for what in [
        "all",
        "nftables",
        "routes",
        "ipsec",
        "wireguard",
        "vrrp",
        "conntrackd",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kawaii"))
            .args(["render", "--config"])
            .arg(&file)
            .args(["--what", what])
            .output()
            .expect("run kawaii render");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&format!("kawaii render --what {what}"), &shown);
    }
}

/// The daemon at debug level: every GET route as every role, the error bodies, the audit trail
/// after a secret changed, `/metrics`, and the log.
#[test]
fn api_answers_metrics_audit_and_logs_never_show_a_secret() {
    let opts = ServeOptions {
        env: vec![("KAWAII_LOG".into(), "debug".into())],
        ..ServeOptions::new(env!("CARGO_BIN_EXE_kawaii"))
    };
    let mut node =
        Node::start("secrets", &config(IPSEC_PSK), &opts).unwrap_or_else(|e| panic!("{e}"));
    let anon = Api::new(&node.host, None);
    let [admin, operator, viewer] = TOKENS.map(|(_, t)| anon.as_token(Some(t)));

    // A secret changed through the API lands in the audit trail as "changed", never as a value.
    let current = admin.get("/v1/gateway");
    let rev = current.etag().expect("an ETag");
    let mut doc = current.json()["gateway"].clone();
    doc["ipsec"][0]["pre_shared_key"] = json!(IPSEC_PSK_2);
    let r = admin.put_if_match("/v1/gateway", &doc, rev);
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    assert_clean("the answer to a PUT", &r.body);

    // Error bodies: an invalid document carrying every secret; a wrong token; bad JSON.
    let mut bad = doc.clone();
    bad["ipsec"][0]["remote_subnet"] = json!("not-a-subnet");
    bad["vpc_peerings"][0]["consent_key"] = json!("short");
    let r = operator.put_if_match("/v1/gateway", &bad, rev + 1);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_clean("a validation error", &r.body);
    let r = operator.request(
        "PUT",
        "/v1/gateway",
        Some(&format!(
            "{{\"ipsec\": [{{\"pre_shared_key\": \"{IPSEC_PSK}\", \"x\": }}"
        )),
        &[&format!("If-Match: \"{}\"", rev + 1)],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_clean("a JSON syntax error", &r.body);
    let r = anon
        .as_token(Some(&format!("{}-wrong", TOKENS[0].1)))
        .get("/v1/gateway");
    assert_eq!(r.status, 401, "{}", r.body);

    let spec = anon.get("/openapi.json").json();
    let mut seen = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if item.get("get").is_none() || path == "/v1/events" {
            continue;
        }
        let path = path.replace("{key}", "alice");
        for (api, writer) in [
            (&anon, false),
            (&viewer, false),
            (&operator, true),
            (&admin, true),
        ] {
            let r = api.get(&path);
            // showconf hands the peer its own PSK, to operators and admins only.
            let allowed = (writer && path.ends_with("/config")).then_some("peer PSK");
            assert_clean_but(&format!("GET {path}"), &r.body, allowed);
            seen += 1;
        }
    }
    assert!(seen > 40, "only {seen} answers walked");
    for (api, who) in [(&admin, "admin"), (&viewer, "viewer")] {
        let r = api.get("/v1/audit");
        assert_clean(&format!("the audit trail as {who}"), &r.body);
        let r = api.get("/v1/status");
        assert_eq!(r.status, 200);
        assert_clean("/v1/status", &r.body);
    }
    let audit = admin.get("/v1/audit");
    assert!(audit.body.contains("pre_shared_key"), "{}", audit.body);
    let metrics = anon.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_clean("/metrics", &metrics.body);

    let log = node.log();
    assert!(log.contains("DEBUG"), "not a debug log:\n{log}");
    assert_clean("the debug log", &log);
}
