//! The status page in a real browser (issue 19): Debian's headless Chromium, driven over
//! WebDriver by chromedriver running inside a gateway's namespace, loads `GET /ui` from that
//! namespace's loopback. The two-zone lab of `ha.rs` provides zones, VIPs and traffic.
//!
//! Screenshots go to `<target>/tmp/ui/` (the test artefacts).

use kawaii_testkit::api::Api;
use kawaii_testkit::lab::{self, HaLab, HaLabOptions};
use kawaii_testkit::webdriver::{Browser, ENTER, TAB, png_stats};
use kawaii_testkit::{Host, Topology, wait_for};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");
const ADMIN: &str = "admin-token-for-tests";
const VIEWER: &str = "viewer-token-for-tests";
const PSK: &str = "psk-that-must-never-leak-42";
const CONSENT: &str = "consent-key-that-must-never-leak-7";

fn sha(token: &str) -> String {
    hex::encode(kawaii_api::hash_token(token))
}
const PAGE: &str = "http://127.0.0.1:7780/ui";
const CHROMEDRIVER_PORT: u16 = 9515;

/// The two-zone lab with tokens; `extra` is appended to the config.
struct UiLab {
    topo: Topology,
    lab: HaLab,
    /// Two kawaii instances and a browser: one such test at a time (released last).
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tokens() -> String {
    format!(
        "\n[api]\ntokens = [\n  {{ name = \"ops\", role = \"admin\", sha256 = \"{}\" }},\n  {{ name = \"ro\", role = \"viewer\", sha256 = \"{}\" }},\n]\n",
        sha(ADMIN),
        sha(VIEWER)
    )
}

impl UiLab {
    fn new(tag: &str, extra: impl FnOnce(&std::path::Path) -> String) -> UiLab {
        assert!(
            kawaii_testkit::can_run(),
            "end-to-end tests need root and iproute2"
        );
        assert!(
            std::process::Command::new("chromedriver")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "the UI tests need Debian's chromium and chromium-driver (scripts/setup)"
        );
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let config = |dir: &std::path::Path| {
            format!("{}{}{}", lab::ha_config(5, "0s"), tokens(), extra(dir))
        };
        let (topo, lab) = lab::start_ha(tag, config, HaLabOptions::new(KAWAII));
        UiLab {
            topo,
            lab,
            _serial: serial,
        }
    }

    fn logs(&mut self) -> String {
        let a = self.lab.kawaii_a.log(&mut self.topo);
        let b = self
            .lab
            .kawaii_b
            .as_ref()
            .map(|s| s.log(&mut self.topo))
            .unwrap_or_default();
        format!("--- zone-a ---\n{a}\n--- zone-b ---\n{b}")
    }
}

fn artefacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui");
    std::fs::create_dir_all(&dir).expect("artefact dir");
    dir
}

fn browser(host: &Host, topo: &Topology, name: &str) -> Browser {
    Browser::start(host, &topo.dir().join(name), CHROMEDRIVER_PORT, 1280, 800)
        .unwrap_or_else(|e| panic!("browser: {e}"))
}

/// Types a token into the login form and presses Enter (the keyboard is enough to sign in).
fn sign_in(b: &Browser, token: &str) {
    let input = b.find("#token").expect("the token field");
    b.send_keys(&input, token).expect("type the token");
    b.send_keys(&input, ENTER).expect("press Enter");
}

fn text(b: &Browser, css: &str) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.textContent : null;",
        serde_json::to_string(css).expect("json")
    );
    b.execute(&script)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The severe console entries since the last read.
fn console_errors(b: &Browser) -> Vec<String> {
    b.console_log()
        .expect("browser log")
        .into_iter()
        .filter(|e| e.level == "SEVERE")
        .map(|e| e.message)
        .collect()
}

/// Every text node whose colour against its effective background is below WCAG AA (4.5:1).
const CONTRAST: &str = r#"
const lum = (c) => {
  const m = c.match(/[\d.]+/g).map(Number);
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return [0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]), m.length > 3 ? m[3] : 1];
};
const bg = (e) => {
  for (; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    const [l, a] = lum(c);
    if (a > 0.5) return l;
  }
  return 1;
};
const bad = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const e = n.parentElement;
  if (!n.textContent.trim() || !e.offsetParent && getComputedStyle(e).position !== "fixed") continue;
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right < 0) continue;
  const [fg] = lum(getComputedStyle(e).color);
  const b = bg(e);
  const ratio = (Math.max(fg, b) + 0.05) / (Math.min(fg, b) + 0.05);
  if (ratio < 4.5) bad.push(n.textContent.trim().slice(0, 40) + " (" + ratio.toFixed(2) + ")");
}
return bad;
"#;

/// Saves a screenshot of the viewport as an artefact and checks it shows a page (not blank),
/// with the zones panel in view.
/// `top`: as the page opens (header first); else scrolled to the zones panel.
fn screenshot(b: &Browser, name: &str, width: u32, height: u32, top: bool) -> PathBuf {
    let scroll = if top {
        "window.scrollTo({top: 0, behavior: 'instant'});"
    } else {
        "document.getElementById('zones').scrollIntoView({block: 'start', behavior: 'instant'});"
    };
    let in_view = b
        .execute(&format!(
            "{scroll} const r = document.getElementById('zones').getBoundingClientRect(); \
             return [r.top, r.height, window.innerHeight];"
        ))
        .expect("scroll");
    let (top_px, h, inner) = (
        in_view[0].as_f64().unwrap_or(-1e9),
        in_view[1].as_f64().unwrap_or(0.0),
        in_view[2].as_f64().unwrap_or(0.0),
    );
    assert!(
        top_px > -2.0 && top_px + 60.0 < inner && h > 0.0,
        "the zones panel is not in view: {in_view}"
    );
    let png = b.screenshot().expect("screenshot");
    let path = artefacts().join(name);
    std::fs::write(&path, &png).expect("write screenshot");
    let stats = png_stats(&png).expect("decode screenshot");
    assert_eq!(
        (stats.width, stats.height),
        (width, height),
        "{}",
        path.display()
    );
    assert!(
        png.len() > 10_000,
        "{}: {} bytes is a blank page",
        path.display(),
        png.len()
    );
    assert!(
        stats.luma_variance > 100.0 && stats.non_background > 0.02,
        "{} looks blank: {stats:?}",
        path.display()
    );
    eprintln!("screenshot {} ({stats:?})", path.display());
    path
}

/// Acceptance 1, 3 and 4: a wrong token is refused; a viewer sees zone-a's VIPs held by zone-a,
/// a rule counter that grows while traffic flows, a tunnel that is down, no audit trail and no
/// secret; no console error; readable at 1280×800 and 390×844. An admin then sees a change in
/// the audit trail as soon as it is made.
#[test]
fn viewer_sees_zones_and_live_counters_and_no_secret() {
    let (wg_private, _) = kawaii_testkit::keys::keypair().expect("keypair");
    let (_, alice_pub) = kawaii_testkit::keys::keypair().expect("keypair");
    let wg_secret = wg_private.clone();
    let mut ui = UiLab::new("ui-view", move |dir| {
        let key = dir.join("wg.key");
        kawaii_testkit::keys::write_secret(&key, &wg_secret, 0o600).expect("key file");
        format!(
            r#"
[wireguard]
listen_port = 51820
address = "10.8.0.1/24"
private_key_file = "{}"

[[wireguard.peers]]
name = "alice"
public_key = "{alice_pub}"

[[vpc_peerings]]
name = "marvelous"
subnet = "10.2.0.0/24"
via = "203.0.113.50"
consent_key = "{CONSENT}"
{}"#,
            key.display(),
            kawaii_testkit::office::ipsec_toml(PSK)
        )
    });
    let gw = ui.lab.gw_a.clone();
    let b = browser(&gw, &ui.topo, "browser-a");
    b.goto(PAGE).expect("open the page");

    // The keyboard reaches the sign-in button from the token field, with a visible focus ring.
    let field = b.find("#token").expect("the token field");
    b.send_keys(&field, TAB).expect("Tab");
    let focus = b
        .execute(
            "const e = document.activeElement; \
             return [e.tagName, e.type, getComputedStyle(e).outlineStyle];",
        )
        .expect("focus");
    assert_eq!(focus[0], "BUTTON", "Tab from the token field: {focus}");
    assert_eq!(focus[1], "submit", "{focus}");
    assert_ne!(focus[2], "none", "no visible focus: {focus}");

    // A wrong token is refused, and the page says so.
    sign_in(&b, "not-a-token-anyone-has");
    let refused = b
        .wait_script(
            Duration::from_secs(5),
            "the refusal",
            "return document.getElementById('login-error').textContent;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        refused.as_str().unwrap_or_default().contains("refused"),
        "{refused}"
    );
    let state = b
        .execute(
            "return [document.getElementById('main').hidden, sessionStorage.length, location.href];",
        )
        .expect("state");
    assert_eq!(state, serde_json::json!([true, 0, PAGE]), "after a refusal");
    // The refusal's own 401 is the only thing the console may have said.
    for e in console_errors(&b) {
        assert!(e.contains("401"), "console error: {e}");
    }

    // The viewer signs in: zone-a's VIPs, held by zone-a.
    sign_in(&b, VIEWER);
    let holder = b.wait_script(
        Duration::from_secs(10),
        "zone-a held by zone-a on the page",
        "const r = document.querySelector('tr[data-zone=\"zone-a\"]'); \
         return r && r.querySelector('.holder').textContent === 'zone-a' ? r.textContent : null;",
    );
    let holder = holder.unwrap_or_else(|e| panic!("{e}\n{}", ui.logs()));
    let row = holder.as_str().unwrap_or_default();
    assert!(
        row.contains(lab::ZONE_A_PUBLIC_VIP) && row.contains(lab::ZONE_A_PRIVATE_VIP),
        "zone-a's VIPs: {row}"
    );
    assert!(row.contains("master"), "{row}");
    assert!(
        text(&b, "#zone").contains("zone-a"),
        "the header names the zone"
    );
    assert_eq!(
        b.execute("return location.href;").expect("url"),
        serde_json::json!(PAGE),
        "the token must never go in a URL"
    );

    // A rule counter grows on the page while traffic flows (connections to the open port 22).
    let status = Api::new(&gw, Some(VIEWER)).status();
    let rule = status["details"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["rule"].as_str().is_some_and(|s| s.starts_with("ingress")))
        .map(|r| {
            format!(
                "{}/{}",
                r["chain"].as_str().unwrap_or_default(),
                r["rule"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_else(|| panic!("no ingress rule counter in {status}"));
    let packets_js = format!(
        "const c = document.querySelector('tr[data-rule=\"{rule}\"] td.packets'); return c ? Number(c.dataset.value) : -1;"
    );
    b.wait_script(
        Duration::from_secs(5),
        "the rule's row",
        &format!("return !!document.querySelector('tr[data-rule=\"{rule}\"]');"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let before = b.execute(&packets_js).expect("packets");
    let before = before.as_i64().unwrap_or(-1);
    let traffic = ui
        .topo
        .spawn(
            &ui.lab.internet.clone(),
            "syn-loop",
            &[
                "bash",
                "-c",
                &format!(
                    "for i in $(seq 1 300); do (exec 3<>/dev/tcp/{}/22) 2>/dev/null; sleep 0.05; done",
                    lab::ZONE_A_PUBLIC_VIP
                ),
            ],
        )
        .expect("traffic");
    let mut seen = vec![before];
    wait_for(
        Duration::from_secs(12),
        "the counter to grow twice on the page",
        || {
            let now = b.execute(&packets_js).ok()?.as_i64()?;
            if now > *seen.last()? {
                seen.push(now);
            }
            (seen.len() >= 3).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: seen {seen:?}"));
    let rate = text(&b, &format!("tr[data-rule=\"{rule}\"] td:nth-child(5)"));
    assert!(!rate.starts_with("0.0"), "the rate shows traffic: {rate:?}");
    assert!(
        b.execute(&format!(
            "return !!document.querySelector('tr[data-rule=\"{rule}\"] svg.spark polyline');"
        ))
        .expect("sparkline")
            == serde_json::json!(true),
        "the sparkline is drawn"
    );
    ui.topo.proc(traffic).kill();

    // Errors show on the page: the IPsec tunnel to an office that does not answer is down.
    b.wait_script(
        Duration::from_secs(15),
        "the tunnel-down alert",
        "return document.getElementById('alert-list').textContent.includes('IPsec tunnel ACME Office is down');",
    )
    .unwrap_or_else(|e| panic!("{e}: {}", text(&b, "#alert-list")));
    // The other sections are there: the WireGuard peer, the peering and its consent state.
    b.wait_script(
        Duration::from_secs(5),
        "the WireGuard peer and the peering",
        "return !!document.querySelector('tr[data-peer=\"alice\"]') && !!document.querySelector('tr[data-peering=\"marvelous\"]');",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The audit trail is for admins only.
    assert_eq!(
        b.execute("return [document.getElementById('audit').hidden, document.getElementById('audit-body').children.length];")
            .expect("audit"),
        serde_json::json!([true, 0])
    );

    // No secret in the DOM.
    let dom = b.dom().expect("dom");
    for (what, secret) in [
        ("the IPsec PSK", PSK.to_string()),
        ("the WireGuard private key", wg_private.clone()),
        ("the consent key", CONSENT.to_string()),
        ("the viewer's token hash", sha(VIEWER)),
        ("the admin's token hash", sha(ADMIN)),
        ("the viewer's token", VIEWER.to_string()),
    ] {
        assert!(!dom.contains(&secret), "{what} is in the DOM");
    }

    // No console error, and no script error caught by the page.
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(
        !text(&b, "#alert-list").contains("Page error"),
        "{}",
        text(&b, "#alert-list")
    );

    // Readable: enough contrast everywhere, nothing wider than a phone.
    let low = b.execute(CONTRAST).expect("contrast");
    assert_eq!(
        low,
        serde_json::json!([]),
        "text below 4.5:1 contrast at 1280x800"
    );
    screenshot(&b, "ui-1280x800.png", 1280, 800, true);
    b.viewport(390, 844, true).expect("phone viewport");
    let wide = b
        .execute("return document.documentElement.scrollWidth - window.innerWidth;")
        .expect("width");
    assert!(
        wide.as_i64().unwrap_or(1) <= 0,
        "the page is {wide} px wider than a phone"
    );
    let low = b.execute(CONTRAST).expect("contrast");
    assert_eq!(
        low,
        serde_json::json!([]),
        "text below 4.5:1 contrast at 390x844"
    );
    screenshot(&b, "ui-390x844.png", 390, 844, true);
    b.viewport(1280, 800, false).expect("viewport");

    // An admin sees the audit trail, and a change lands in it without a reload.
    b.execute("document.getElementById('logout').click(); return true;")
        .expect("sign out");
    sign_in(&b, ADMIN);
    b.wait_script(
        Duration::from_secs(5),
        "the audit section",
        "return !document.getElementById('audit').hidden && document.getElementById('who').textContent.includes('admin');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    b.execute("window.__sameDocument = true; return true;")
        .expect("marker");
    let r = Api::new(&gw, Some(ADMIN)).post(
        "/v1/ingress-rules",
        &serde_json::json!({"protocol": "tcp", "ports": "8443"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    b.wait_script(
        Duration::from_secs(3),
        "the change in the audit trail",
        "return window.__sameDocument === true && document.getElementById('audit-body').textContent.includes('POST /v1/ingress-rules');",
    )
    .unwrap_or_else(|e| panic!("{e}: {}", text(&b, "#audit-body")));
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// Acceptance 2: the page on zone B shows zone-a's VIPs held by zone-b within 2 s of zone A's
/// death, without a reload.
#[test]
fn zone_failure_shows_on_the_other_zone_page_within_2s() {
    let mut ui = UiLab::new("ui-fail", |_| String::new());
    let gw_b = ui.lab.gw_b.clone();
    let b = browser(&gw_b, &ui.topo, "browser-b");
    b.goto(PAGE).expect("open the page");
    sign_in(&b, VIEWER);
    let holder_js = "const r = document.querySelector('tr[data-zone=\"zone-a\"]'); \
                     return r ? r.querySelector('.holder').textContent : null;";
    b.wait_script(
        Duration::from_secs(10),
        "zone-a held by zone-a on zone B's page",
        &format!("return (() => {{ {holder_js} }})() === 'zone-a';"),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: holder {:?}\n{}",
            text(&b, "tr[data-zone=\"zone-a\"]"),
            ui.logs()
        )
    });
    assert!(text(&b, "#zone").contains("zone-b"));
    b.execute("window.__sameDocument = true; return true;")
        .expect("marker");

    let killed = Instant::now();
    ui.topo.proc(ui.lab.kawaii_a.proc).kill();
    let mut last = String::new();
    let took = wait_for(
        Duration::from_secs(5),
        "zone-a held by zone-b on the page",
        || {
            let v = b.execute(holder_js).ok()?;
            last = v.as_str().unwrap_or_default().to_string();
            (last == "zone-b").then(|| killed.elapsed())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: last holder {last:?}\n{}", ui.logs()));
    eprintln!("the page on zone B showed zone-a held by zone-b {took:?} after zone A died");
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    assert_eq!(
        b.execute("return window.__sameDocument === true;")
            .expect("marker"),
        serde_json::json!(true),
        "the page was reloaded"
    );
    let row = text(&b, "tr[data-zone=\"zone-a\"]");
    assert!(
        row.contains(lab::ZONE_A_PRIVATE_VIP) && row.contains("master"),
        "{row}"
    );
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
