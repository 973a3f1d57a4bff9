//! `kawaii lab up --zones 2`: the two-zone HA topology (see `kawaii_testkit::lab::build_ha`),
//! with a slow download to keep open across a zone loss and, without `--config`, a VPN laptop of
//! zone A to call over.

use super::{abandon, dir, prefix, prepare, record, say_up, say_warnings, ui_hint, vpn_toml};
use kawaii_testkit::Topology;
use kawaii_testkit::lab;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub(super) fn up(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let laptop = config.is_none().then(crate::keys::keypair);
    let default = match &laptop {
        Some((_, laptop_pub)) => {
            let lab_dir = dir()?.display().to_string();
            lab::ha_config(5, "0s") + &vpn_toml(&lab_dir, laptop_pub, false)
        }
        None => lab::ha_config(5, "0s"),
    };
    let (started, dir, cfg) = prepare(config, &default)?;
    if laptop.is_some() {
        // Both zones' devices share the key (the file is read by both daemons).
        crate::keys::write_private(&dir.join("wg.key"), &crate::keys::keypair().0)?;
    }
    let mut topo = Topology::persistent(&prefix()?, &dir)?;
    let opts = lab::HaLabOptions {
        kawaii: std::env::current_exe()?,
        config: cfg.clone(),
        env: vec![],
        start_b: true,
        etcd: true,
    };
    let ha = lab::build_ha(&mut topo, &opts).or_else(|e| abandon(&mut topo, &dir, e))?;
    // A slow download to keep open across a zone loss (connection-state sync).
    let flows = lab::flows_script(&topo)?;
    let stream = topo.spawn(
        &ha.internet,
        "internet-stream",
        &["python3", &flows, "streams", "9000", "100"],
    )?;
    topo.proc(stream)
        .wait_line("listening", Duration::from_secs(10))?;
    if let Some((laptop_key, _)) = &laptop {
        let kawaii = std::env::current_exe()?;
        let gw = (&ha.gw_a, ha.kawaii_a.state.as_path());
        let built = lab::vpn_laptop_at(&mut topo, (&ha.router, "eth3"), gw, &kawaii, laptop_key);
        let laptop = built.or_else(|e| abandon(&mut topo, &dir, e))?;
        let up = kawaii_testkit::wait_for(Duration::from_secs(20), "the laptop's tunnel", || {
            laptop.pings(lab::VM_A).then_some(())
        });
        if let Err(e) = up {
            eprintln!("warning: {e}; see `kawaii lab exec gw-a kawaii status`");
        }
    }
    let daemons: Vec<_> = [Some(&ha.kawaii_a), ha.kawaii_b.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let data_dirs = ha.etcd.as_ref().map(|e| e.data_dirs()).unwrap_or_default();
    let record = record(
        &mut topo,
        dir.join("state-zone-a"),
        &cfg,
        &daemons,
        data_dirs,
    )?;
    say_up(&record, "HA lab (2 zones)", started);
    say_warnings(&mut topo, &daemons);
    println!(
        r#"
  internet 198.51.100.10 ── router 203.0.113.1 ── pub ─┬─ gw-a wan0 203.0.113.11 (zone-a VIP 203.0.113.10)
                                                      └─ gw-b wan0 203.0.113.21 (zone-b VIP 203.0.113.20)
  lan ─┬─ gw-a lan0 10.1.0.251 (zone-a private VIP 10.1.0.1)   vm-a 10.1.0.10 via 10.1.0.1
       └─ gw-b lan0 10.1.0.252 (zone-b private VIP 10.1.0.2)   vm-b 10.1.0.40 via 10.1.0.2
  mgmt ─┬─ etcd1 {etcd} (both zones' shared store, prefix {prefix})
        ├─ gw-a mgmt0 10.254.0.11
        └─ gw-b mgmt0 10.254.0.12{laptop_map}

A write through zone-a's API, seen by zone-b (one shared desired state on etcd):
  kawaii lab exec gw-a sh -c 'curl -s -X POST -H "Authorization: Bearer $(cat {dir}/state-zone-a/admin.token)" -H "Content-Type: application/json" -d "{{\"ports\":\"8080\"}}" http://127.0.0.1:7780/v1/ingress-rules'
  kawaii lab exec gw-b kawaii get ingress-rules            # each host's kawaii uses its own daemon's token
  kawaii lab exec gw-b kawaii status

Try:
  kawaii lab exec vm-a curl -s http://198.51.100.10/      # leaves with zone-a's VIP 203.0.113.10{laptop_try}
  kawaii lab exec vm-a ping -i 0.01 198.51.100.10         # keep it running, and in another shell:
  kawaii lab exec gw-a ip link set lan0 down              # zone-a fails: gw-b takes 10.1.0.1 in ~0.2 s
  kawaii lab exec gw-b ip -4 addr show                    # gw-b now holds both zones' VIPs
  kawaii lab exec gw-a ip link set lan0 up                # zone-a preempts: its VIPs come home
  kawaii lab exec vm-a nc 198.51.100.10 9000              # a slow download (a line every 0.1 s); keep it open:
  kawaii lab exec gw-a ip link set wan0 down && kawaii lab exec gw-a ip link set lan0 down
                                                          # zone-a is lost; the download goes on through gw-b
  kawaii lab exec gw-b conntrack -L -p tcp --dport 9000   # gw-b got the download's entry, NAT'd to 203.0.113.10
  kawaii lab exec gw-b kawaii render --config {cfg} --zone zone-b --what vrrp
  kawaii lab down
{ui}"#,
        cfg = cfg.display(),
        etcd = lab::ETCD_IP,
        prefix = lab::ETCD_PREFIX,
        dir = dir.display(),
        ui = ui_hint("gw-a", &dir.join("state-zone-a").join("admin.token")),
        laptop_map = if laptop.is_some() {
            "\n  laptop 192.0.2.2 (wireguard-go, VPN 10.8.0.2; endpoint zone-a's VIP 203.0.113.10) ── router"
        } else {
            ""
        },
        laptop_try = if laptop.is_some() {
            "
  kawaii lab exec laptop ping -c 3 10.1.0.10              # VPN: laptop -> WireGuard on zone-a -> vm-a
  kawaii lab exec laptop wg show klab-laptop endpoints    # 203.0.113.10:51820; after zone-a fails, zone-b calls the
                                                          # laptop over (~0.4 s) and it follows 203.0.113.20:51820"
        } else {
            ""
        }
    );
    topo.keep();
    Ok(ExitCode::SUCCESS)
}
