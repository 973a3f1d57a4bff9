//! Foundation acceptance, end to end: `kawaii serve` in a namespace, driven over HTTP.

use kawaii_testkit::api::Api;
use kawaii_testkit::serve::{Node, ServeOptions};
use kawaii_testkit::wait_for;
use serde_json::json;
use std::time::Duration;

const ADMIN: &str = "admin-token-for-tests";
const VIEWER: &str = "viewer-token-for-tests";
const OPERATOR: &str = "operator-token-for-tests";
const PSK: &str = "psk-that-must-never-leak-42";

fn sha(token: &str) -> String {
    hex::encode(kawaii_api::hash_token(token))
}

/// A config with three tokens and an IPsec connection carrying a secret
/// (`testdata/api-gateway.toml` with the token hashes and the PSK filled in).
fn base_config() -> String {
    include_str!("testdata/api-gateway.toml")
        .replace("@admin@", &sha(ADMIN))
        .replace("@operator@", &sha(OPERATOR))
        .replace("@viewer@", &sha(VIEWER))
        .replace("@psk@", PSK)
}

/// The gateway of [`base_config`] in its own namespace, and its API as no one, admin,
/// operator and viewer.
fn node(tag: &str) -> (Node, [Api; 4]) {
    let node = Node::start(
        tag,
        &base_config(),
        &ServeOptions::new(env!("CARGO_BIN_EXE_kawaii")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let anon = Api::new(&node.host, None);
    let apis = [
        anon.as_token(Some(ADMIN)),
        anon.as_token(Some(OPERATOR)),
        anon.as_token(Some(VIEWER)),
        anon,
    ];
    (node, apis)
}

/// Auth, roles, redaction, stale revisions, and field-named errors.
#[test]
fn auth_roles_redaction_and_errors() {
    let (mut node, [admin, operator, viewer, anon]) = node("api");

    let r = viewer.get("/v1/gateway");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(PSK), "viewer sees the PSK: {}", r.body);
    assert_eq!(
        r.json()["gateway"]["ipsec"][0]["pre_shared_key"],
        "(redacted)"
    );
    for t in [ADMIN, OPERATOR, VIEWER] {
        assert!(!r.body.contains(&sha(t)), "token hashes are secrets too");
    }
    let rev = r.etag().expect("etag");

    assert_eq!(anon.get("/v1/gateway").status, 401);
    assert_eq!(
        anon.as_token(Some("not-a-token")).get("/v1/gateway").status,
        401
    );

    let doc = r.json()["gateway"].clone();
    let r = viewer.put_if_match("/v1/gateway", &doc, rev);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = viewer.post("/v1/egress-rules", &json!({"ports": "25"}));
    assert_eq!(r.status, 403);

    // Admin PUT of the document as read (secrets sent back redacted keep their value).
    let r = admin.put_if_match("/v1/gateway", &doc, rev);
    assert_eq!(r.status, 200, "{}", r.body);
    // A write moves the revision; the old one is now stale.
    let r = operator.post("/v1/egress-rules", &json!({"ports": "25"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["id"], "egress-1");
    let r = admin.put_if_match("/v1/gateway", &doc, rev);
    assert_eq!(r.status, 412, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stale")
    );
    // Without If-Match the whole-document PUT is refused.
    let r = admin.put("/v1/gateway", &doc);
    assert_eq!(r.status, 428);

    // Writes answer with the warnings `check` prints, each with its path: a peering whose
    // next hop is on no network of the machine, a port forward no ingress rule opens.
    let warned = |r: &kawaii_testkit::api::Reply| -> Vec<String> {
        r.json()["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("no warnings list in {}", r.body))
            .iter()
            .filter_map(|w| w["path"].as_str().map(String::from))
            .collect()
    };
    let r = operator.post(
        "/v1/vpc-peerings",
        &json!({"name": "far", "subnet": "10.3.0.0/24", "via": "198.51.100.77", "consent": "none"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["name"], "far");
    assert!(
        warned(&r).contains(&"vpc_peerings[0].via".to_string()),
        "{}",
        r.body
    );
    let r = operator.post(
        "/v1/nat-rules",
        &json!({"destination": "10.1.0.10", "ports": "8080"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        warned(&r).contains(&"nat_rules[0]".to_string()),
        "{}",
        r.body
    );
    let id = r.json()["id"].as_str().expect("id").to_string();
    let r = operator.delete(&format!("/v1/nat-rules/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["revision"].as_u64().is_some(), "{}", r.body);
    assert!(
        warned(&r).contains(&"vpc_peerings[0].via".to_string()),
        "{}",
        r.body
    );
    assert_eq!(operator.delete("/v1/vpc-peerings/far").status, 200);

    // Operators may not touch tokens.
    let cur = admin.get("/v1/gateway");
    let mut changed = cur.json()["gateway"].clone();
    changed["api"]["tokens"]
        .as_array_mut()
        .expect("tokens")
        .pop();
    let r = operator.put_if_match("/v1/gateway", &changed, cur.etag().expect("etag"));
    assert_eq!(r.status, 403, "{}", r.body);

    // An invalid rule: 400 naming the field.
    let r = admin.post(
        "/v1/ingress-rules",
        &json!({"protocol": "icmp", "ports": "80-22"}),
    );
    assert_eq!(r.status, 400);
    let details = r.json()["details"].clone();
    let paths: Vec<&str> = details
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        ["ingress_rules[1].protocol", "ingress_rules[1].ports"],
        "{}",
        r.body
    );
    // A type error names its field too.
    let r = admin.post("/v1/ingress-rules", &json!({"ports": 22}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["details"][0]["path"], "ports");
    // Unknown resources are 404, duplicates 409.
    assert_eq!(viewer.get("/v1/ipsec/nope").status, 404);
    let r = viewer.get("/v1/ipsec/ACME%20Office");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(admin.post("/v1/ipsec", &r.json()).status, 409);

    // The audit trail is admin-only.
    assert_eq!(operator.get("/v1/audit").status, 403);
    let audit = admin.get("/v1/audit");
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("\"actor\":\"dev\""), "{}", audit.body);
    assert!(!node.log().contains(PSK), "the PSK reached the log");
}

/// kill -9 right after an acknowledged write loses nothing; the audit has it, redacted.
#[test]
fn acknowledged_writes_survive_kill_9() {
    let (mut node, [admin, ..]) = node("kill");
    let mut conn = admin.get("/v1/ipsec/ACME%20Office").json();
    let new_psk = "a-brand-new-secret-psk-777";
    conn["pre_shared_key"] = new_psk.into();
    conn["remote_subnet"] = "172.16.9.0/24".into();
    let r = admin.put("/v1/ipsec/ACME%20Office", &conn);
    assert_eq!(r.status, 200, "{}", r.body);
    node.kill9_and_restart().unwrap_or_else(|e| panic!("{e}"));

    let r = admin.get("/v1/ipsec/ACME%20Office");
    assert_eq!(r.json()["remote_subnet"], "172.16.9.0/24");
    assert!(!r.body.contains(new_psk));
    let audit = admin.get("/v1/audit");
    assert!(
        audit.body.contains("PUT /v1/ipsec/ACME Office"),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("pre_shared_key"),
        "the secret's change is recorded: {}",
        audit.body
    );
    assert!(
        !audit.body.contains(new_psk) && !audit.body.contains(PSK),
        "{}",
        audit.body
    );
    // The restart with an unchanged file kept the API write (the file is not re-applied).
    assert!(node.serve.state.join("kawaii.db").exists());
    let cli = node.serve.cli(ADMIN, &["audit"]).expect("kawaii audit");
    assert!(String::from_utf8_lossy(&cli.stdout).contains("PUT /v1/ipsec/ACME Office"));
}

/// A changed file applies without restart; a broken one is rejected and the state stays.
#[test]
fn config_file_changes_apply_live_and_bad_files_are_rejected() {
    let (mut node, [_, _, viewer, _]) = node("file");
    let pid_before = node.topo.pids();
    let config = node.serve.config.clone();
    let with_rule = base_config() + "\n[[egress_rules]]\nprotocol = \"tcp\"\nports = \"25\"\n";
    std::fs::write(&config, &with_rule).expect("write");
    let egress_rules = || {
        viewer
            .get("/v1/egress-rules")
            .json()
            .as_array()
            .map(Vec::len)
    };
    wait_for(
        Duration::from_secs(3),
        "the file's egress rule through the API",
        || (egress_rules() == Some(1)).then_some(()),
    )
    .expect("applied live");
    let good = viewer.get("/v1/gateway");

    std::fs::write(
        &config,
        with_rule.replace("ports = \"25\"", "ports = \"25-1\""),
    )
    .expect("write");
    wait_for(
        Duration::from_secs(3),
        "the rejection in /v1/status",
        || {
            let s = viewer.get("/v1/status");
            s.body.contains("egress_rules[0].ports").then_some(())
        },
    )
    .expect("rejected");
    let after = viewer.get("/v1/gateway");
    assert_eq!(
        after.body, good.body,
        "a broken file must not change the state"
    );
    assert_eq!(node.topo.pids(), pid_before, "no restart");

    // SIGHUP with a fixed file applies it.
    std::fs::write(&config, base_config()).expect("write");
    node.topo.proc(node.serve.proc).signal("HUP");
    wait_for(Duration::from_secs(3), "the fixed file", || {
        (egress_rules() == Some(0)).then_some(())
    })
    .expect("fixed file applied");
}

/// `/openapi.json` is valid OpenAPI 3 and lists exactly the routes the router serves.
#[test]
fn openapi_is_valid_and_complete() {
    let (node, [admin, _, _, anon]) = node("oas");
    let r = anon.get("/openapi.json");
    assert_eq!(r.status, 200);
    let spec_file = node
        .topo
        .write("openapi.json", &r.body)
        .expect("write spec");
    let mut validator = std::process::Command::new("openapi-spec-validator");
    validator.arg(&spec_file);
    kawaii_testkit::output(validator, None)
        .unwrap_or_else(|e| panic!("{e} (pip install openapi-spec-validator)"));

    let spec = r.json();
    let mut listed: Vec<String> = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_some() {
                listed.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    listed.sort();
    let mut expected: Vec<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /v1/gateway",
        "PUT /v1/gateway",
        "GET /v1/status",
        "GET /v1/audit",
        "GET /v1/wireguard/peers/{key}/config",
        "GET /v1/events",
        "GET /v1/whoami",
        "GET /ui",
        "GET /ui/app.js",
        "GET /ui/app.css",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in [
        "ingress-rules",
        "egress-rules",
        "nat-rules",
        "vpc-peerings",
        "ipsec",
        "wireguard/peers",
        "pipes",
        "routes",
    ] {
        for m in ["GET", "POST"] {
            expected.push(format!("{m} /v1/{c}"));
        }
        for m in ["GET", "PUT", "DELETE"] {
            expected.push(format!("{m} /v1/{c}/{{key}}"));
        }
    }
    expected.sort();
    assert_eq!(listed, expected, "the spec and the served routes differ");

    // Every listed route is served (not the router's 404/405 fallback).
    for entry in &listed {
        let (method, path) = entry.split_once(' ').expect("entry");
        let concrete = path.replace("{key}", "probe");
        let body = (method != "GET" && method != "DELETE").then_some("{}");
        let r = admin.request(method, &concrete, body, &[]);
        let served = r.status != 405 && !(r.status == 404 && r.body.contains("no such route"));
        assert!(
            served,
            "{entry} is listed but not served ({} {})",
            r.status, r.body
        );
    }
    // And something not listed is not served.
    let r = admin.get("/v1/nothing-here");
    assert_eq!(r.status, 404);

    // Every status section is described down to its fields.
    let schemas = &spec["components"]["schemas"];
    let details = resolve(
        schemas,
        &resolve(schemas, &spec_of_status(schemas))["properties"]["details"],
    );
    let sections = details["properties"]
        .as_object()
        .expect("details has properties");
    let mut names: Vec<&str> = sections.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conntrack",
            "conntrack_sync",
            "ipsec",
            "pipes",
            "router",
            "rules",
            "vpc_peerings",
            "vrrp",
            "wireguard"
        ]
    );
    for (name, section) in sections {
        let fields = resolve(schemas, section);
        assert!(
            fields["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty()),
            "status section {name} has no described fields: {fields}"
        );
    }
}

fn spec_of_status(schemas: &serde_json::Value) -> serde_json::Value {
    assert!(schemas.get("Status").is_some(), "no Status schema");
    serde_json::json!({"$ref": "#/components/schemas/Status"})
}

/// Follows `$ref`s, `oneOf`/`allOf` wrappers (nullable fields) and arrays to the object schema.
fn resolve(schemas: &serde_json::Value, s: &serde_json::Value) -> serde_json::Value {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().expect("ref name");
        return resolve(schemas, &schemas[name]);
    }
    for key in ["oneOf", "allOf", "anyOf"] {
        if let Some(alts) = s[key].as_array()
            && let Some(obj) = alts.iter().find(|a| a["type"] != "null")
        {
            return resolve(schemas, obj);
        }
    }
    if s["type"] == "array"
        || s["type"]
            .as_array()
            .is_some_and(|t| t.contains(&"array".into()))
    {
        return resolve(schemas, &s["items"]);
    }
    s.clone()
}

/// The status page's endpoints: `/ui` and its assets need no token and forbid inline code;
/// `/v1/whoami` and `/v1/events` need one; the event stream pushes the status at once and again
/// when it changes, and carries no secret.
#[test]
fn status_page_and_event_stream() {
    let (node, [admin, _, viewer, anon]) = node("events");

    let r = anon.request("GET", "/ui", None, &[]);
    assert_eq!(r.status, 200);
    let headers = r.headers.to_ascii_lowercase();
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{headers}"
    );
    assert!(r.body.contains("/ui/app.js"));
    for (path, mime) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = anon.request("GET", path, None, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains(&format!("content-type: {mime}")),
            "{path}: {}",
            r.headers
        );
    }

    let r = viewer.request("GET", "/v1/whoami", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "ro", "role": "viewer"})
    );
    assert_eq!(anon.request("GET", "/v1/whoami", None, &[]).status, 401);
    assert_eq!(
        anon.as_token(Some("wrong"))
            .request("GET", "/v1/events", None, &[])
            .status,
        401
    );

    // A viewer's stream for 4 s; an admin's write after 1 s shows up in it.
    let stream = node
        .host
        .command(&[
            "curl",
            "-sS",
            "-N",
            "--max-time",
            "4",
            "-H",
            &format!("Authorization: Bearer {VIEWER}"),
            "http://127.0.0.1:7780/v1/events",
        ])
        .stdout(std::process::Stdio::piped())
        // curl reports its own --max-time ending the stream.
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_secs(1));
    let r = admin.post(
        "/v1/ingress-rules",
        &json!({"protocol": "tcp", "ports": "8443"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let out = stream.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(PSK), "the PSK is in the stream");
    let events: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: status"))
        .map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            serde_json::from_str(&data.join("\n"))
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {block}"))
        })
        .collect();
    assert!(events.len() >= 2, "events: {text}");
    assert_eq!(events[0]["status"]["gateway"], "acme");
    assert_eq!(events[0]["store"]["reachable"], true);
    let first = events[0]["status"]["desired_revision"]
        .as_u64()
        .expect("revision");
    let last = events
        .last()
        .and_then(|e| e["status"]["desired_revision"].as_u64())
        .expect("revision");
    assert!(last > first, "the write did not reach the stream: {text}");
    // Consecutive events differ (the stream sends changes only).
    for pair in events.windows(2) {
        assert_ne!(pair[0], pair[1], "a repeated event");
    }
}

/// Only an admin may set `[api]`; when one turns TLS on, the daemon rebinds its address over
/// HTTPS at once, with the certificate a CA made here signed; plain HTTP gets no answer.
#[test]
fn an_admin_turns_on_tls_and_the_listener_follows() {
    let (node, [admin, operator, _, _]) = node("api-tls");
    let pki = kawaii_testkit::tls::Pki::new(&node.topo.dir().join("pki"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = admin.get("/v1/gateway");
    let rev = r.etag().expect("ETag");
    let mut doc = r.json()["gateway"].clone();
    let file = |name: &str| json!(pki.path(name).to_string_lossy());
    doc["api"]["tls_cert_file"] = file("server.pem");
    doc["api"]["tls_key_file"] = file("server.key");
    let r = operator.put_if_match("/v1/gateway", &doc, rev);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = admin.put_if_match("/v1/gateway", &doc, rev);
    assert_eq!(r.status, 200, "{}", r.body);
    let ca = pki.path("ca.pem");
    let https = |path: &str| {
        node.host.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "3",
            "--cacert",
            &ca.to_string_lossy(),
            &format!("https://127.0.0.1:7780{path}"),
        ])
    };
    wait_for(Duration::from_secs(10), "the API over HTTPS", || {
        https("/healthz")
            .ok()
            .filter(|o| o.status.success())
            .map(drop)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(admin.get("/healthz").status, 0, "plain HTTP still answered");
}
