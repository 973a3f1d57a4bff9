//! Foundation acceptance, end to end: `kawaii serve` in a namespace, driven over HTTP.

mod common;

use common::*;
use kawaii_testkit::wait_for;
use std::time::Duration;

/// Auth, roles, redaction, stale revisions, and field-named errors.
#[test]
fn auth_roles_redaction_and_errors() {
    let mut node = Node::new("api", &base_config());
    node.start();

    let r = node.call("GET", "/v1/gateway", Some(VIEWER), None, &[]);
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

    assert_eq!(node.call("GET", "/v1/gateway", None, None, &[]).status, 401);
    assert_eq!(
        node.call("GET", "/v1/gateway", Some("not-a-token"), None, &[])
            .status,
        401
    );

    let doc = r.json()["gateway"].to_string();
    let if_match = format!("If-Match: \"{rev}\"");
    let r = node.call("PUT", "/v1/gateway", Some(VIEWER), Some(&doc), &[&if_match]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = node.call(
        "POST",
        "/v1/egress-rules",
        Some(VIEWER),
        Some(r#"{"ports":"25"}"#),
        &[],
    );
    assert_eq!(r.status, 403);

    // Admin PUT of the document as read (secrets sent back redacted keep their value).
    let r = node.call("PUT", "/v1/gateway", Some(ADMIN), Some(&doc), &[&if_match]);
    assert_eq!(r.status, 200, "{}", r.body);
    // A write moves the revision; the old one is now stale.
    let r = node.call(
        "POST",
        "/v1/egress-rules",
        Some(OPERATOR),
        Some(r#"{"ports":"25"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["id"], "egress-1");
    let r = node.call("PUT", "/v1/gateway", Some(ADMIN), Some(&doc), &[&if_match]);
    assert_eq!(r.status, 412, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stale")
    );
    // Without If-Match the whole-document PUT is refused.
    let r = node.call("PUT", "/v1/gateway", Some(ADMIN), Some(&doc), &[]);
    assert_eq!(r.status, 428);

    // Operators may not touch tokens.
    let cur = node.call("GET", "/v1/gateway", Some(ADMIN), None, &[]);
    let mut changed = cur.json()["gateway"].clone();
    changed["api"]["tokens"]
        .as_array_mut()
        .expect("tokens")
        .pop();
    let m = format!("If-Match: \"{}\"", cur.etag().expect("etag"));
    let r = node.call(
        "PUT",
        "/v1/gateway",
        Some(OPERATOR),
        Some(&changed.to_string()),
        &[&m],
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // An invalid rule: 400 naming the field.
    let r = node.call(
        "POST",
        "/v1/ingress-rules",
        Some(ADMIN),
        Some(r#"{"protocol":"icmp","ports":"80-22"}"#),
        &[],
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
    let r = node.call(
        "POST",
        "/v1/ingress-rules",
        Some(ADMIN),
        Some(r#"{"ports": 22}"#),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["details"][0]["path"], "ports");
    // Unknown resources are 404, duplicates 409.
    assert_eq!(
        node.call("GET", "/v1/ipsec/nope", Some(VIEWER), None, &[])
            .status,
        404
    );
    let r = node.call("GET", "/v1/ipsec/ACME%20Office", Some(VIEWER), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let dup = r.body.clone();
    assert_eq!(
        node.call("POST", "/v1/ipsec", Some(ADMIN), Some(&dup), &[])
            .status,
        409
    );

    // The audit trail is admin-only.
    assert_eq!(
        node.call("GET", "/v1/audit", Some(OPERATOR), None, &[])
            .status,
        403
    );
    let audit = node.call("GET", "/v1/audit", Some(ADMIN), None, &[]);
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("\"actor\":\"dev\""), "{}", audit.body);
    assert!(!node.log().contains(PSK), "the PSK reached the log");
}

/// kill -9 right after an acknowledged write loses nothing; the audit has it, redacted.
#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut node = Node::new("kill", &base_config());
    node.start();
    let cur = node.call("GET", "/v1/ipsec/ACME%20Office", Some(ADMIN), None, &[]);
    let mut conn = cur.json();
    let new_psk = "a-brand-new-secret-psk-777";
    conn["pre_shared_key"] = new_psk.into();
    conn["remote_subnet"] = "172.16.9.0/24".into();
    let r = node.call(
        "PUT",
        "/v1/ipsec/ACME%20Office",
        Some(ADMIN),
        Some(&conn.to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    node.kill9();

    node.start();
    let r = node.call("GET", "/v1/ipsec/ACME%20Office", Some(ADMIN), None, &[]);
    assert_eq!(r.json()["remote_subnet"], "172.16.9.0/24");
    assert!(!r.body.contains(new_psk));
    let audit = node.call("GET", "/v1/audit", Some(ADMIN), None, &[]);
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
    let state = node.state.join("kawaii.db");
    assert!(state.exists());
    let cli = node.cli(&["audit"]);
    assert!(String::from_utf8_lossy(&cli.stdout).contains("PUT /v1/ipsec/ACME Office"));
}

/// A changed file applies without restart; a broken one is rejected and the state stays.
#[test]
fn config_file_changes_apply_live_and_bad_files_are_rejected() {
    let mut node = Node::new("file", &base_config());
    node.start();
    let pid_before = node.topo.pids();
    let with_rule = base_config() + "\n[[egress_rules]]\nprotocol = \"tcp\"\nports = \"25\"\n";
    std::fs::write(&node.config, &with_rule).expect("write");
    wait_for(
        Duration::from_secs(3),
        "the file's egress rule through the API",
        || {
            let r = node.call("GET", "/v1/egress-rules", Some(VIEWER), None, &[]);
            (r.json().as_array().map(Vec::len) == Some(1)).then_some(())
        },
    )
    .expect("applied live");
    let good = node.call("GET", "/v1/gateway", Some(VIEWER), None, &[]);

    std::fs::write(
        &node.config,
        with_rule.replace("ports = \"25\"", "ports = \"25-1\""),
    )
    .expect("write");
    wait_for(
        Duration::from_secs(3),
        "the rejection in /v1/status",
        || {
            let s = node.call("GET", "/v1/status", Some(VIEWER), None, &[]);
            s.body.contains("egress_rules[0].ports").then_some(())
        },
    )
    .expect("rejected");
    let after = node.call("GET", "/v1/gateway", Some(VIEWER), None, &[]);
    assert_eq!(
        after.body, good.body,
        "a broken file must not change the state"
    );
    assert_eq!(node.topo.pids(), pid_before, "no restart");

    // SIGHUP with a fixed file applies it.
    std::fs::write(&node.config, base_config()).expect("write");
    if let Some(i) = node.proc {
        node.topo.proc(i).signal("HUP");
    }
    wait_for(Duration::from_secs(3), "the fixed file", || {
        let r = node.call("GET", "/v1/egress-rules", Some(VIEWER), None, &[]);
        (r.json().as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .expect("fixed file applied");
}

/// `/openapi.json` is valid OpenAPI 3 and lists exactly the routes the router serves.
#[test]
fn openapi_is_valid_and_complete() {
    let mut node = Node::new("oas", &base_config());
    node.start();
    let r = node.call("GET", "/openapi.json", None, None, &[]);
    assert_eq!(r.status, 200);
    let spec_file = node.topo.dir().join("openapi.json");
    std::fs::write(&spec_file, &r.body).expect("write spec");
    let out = std::process::Command::new("openapi-spec-validator")
        .arg(&spec_file)
        .output()
        .expect("openapi-spec-validator (pip install openapi-spec-validator)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

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
        let body = if method == "GET" || method == "DELETE" {
            None
        } else {
            Some("{}")
        };
        let r = node.call(method, &concrete, Some(ADMIN), body, &[]);
        let served = r.status != 405 && !(r.status == 404 && r.body.contains("no such route"));
        assert!(
            served,
            "{entry} is listed but not served ({} {})",
            r.status, r.body
        );
    }
    // And something not listed is not served.
    let r = node.call("GET", "/v1/nothing-here", Some(ADMIN), None, &[]);
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
