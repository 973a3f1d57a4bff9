//! `kawaii-wgdev CONFIG`: runs one kawaii-wg device from a wg-quick-like file, for tests and benches.
//!
//! ```text
//! [Interface]
//! Name = kawaii-wg0
//! ListenPort = 51820
//! PrivateKey = <base64>
//! FwMark = 0x10          # optional
//! MTU = 1420             # optional
//! [Peer]
//! PublicKey = <base64>
//! PresharedKey = <base64> # optional
//! AllowedIPs = 10.8.0.2/32, 192.0.2.0/24
//! Endpoint = 192.0.2.2:51820
//! PersistentKeepalive = 25
//! ```
//!
//! Prints `ready <public key> <port>` once up. Commands on stdin, one per line, each answered
//! with one line: `reload` (re-read CONFIG's peers and converge; `ok` or `error ...`),
//! `stats` (`<pubkey> <rx> <tx> <secs since handshake|-> <endpoint|->` lines, then `end`).
//! End of stdin (or SIGTERM) shuts the device down and exits.

use std::net::SocketAddr;
use std::time::SystemTime;

use anyhow_free::{Result, bail};
use kawaii_wg::{DeviceConfig, PeerConfig, SecretKey, WgDevice, decode_key, encode_key};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Minimal error plumbing without pulling anyhow into the crate for one example.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
    macro_rules! bail {
        ($($t:tt)*) => { return Err(format!($($t)*)) };
    }
    pub(crate) use bail;
}

fn parse(text: &str) -> Result<(DeviceConfig, Vec<PeerConfig>)> {
    let mut dev = DeviceConfig {
        ifname: String::new(),
        listen_port: 0,
        private_key: SecretKey::from_bytes([0; 32]),
        fwmark: None,
        mtu: None,
    };
    let mut have_key = false;
    let mut peers: Vec<PeerConfig> = Vec::new();
    let mut section = "";
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line == "[Interface]" {
            section = "if";
            continue;
        }
        if line == "[Peer]" {
            section = "peer";
            peers.push(PeerConfig {
                public_key: [0; 32],
                preshared_key: None,
                allowed_ips: Vec::new(),
                endpoint: None,
                persistent_keepalive: None,
            });
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected key = value", n + 1);
        };
        let (k, v) = (k.trim(), v.trim());
        let bad = |what: &str| format!("line {}: bad {what}", n + 1);
        match (section, k) {
            ("if", "Name") => dev.ifname = v.to_owned(),
            ("if", "ListenPort") => dev.listen_port = v.parse().map_err(|_| bad(k))?,
            ("if", "PrivateKey") => {
                dev.private_key = SecretKey::from_base64(v).map_err(|_| bad(k))?;
                have_key = true;
            }
            ("if", "FwMark") => {
                let mark = match v.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => v.parse(),
                };
                dev.fwmark = Some(mark.map_err(|_| bad(k))?);
            }
            ("if", "MTU") => dev.mtu = Some(v.parse().map_err(|_| bad(k))?),
            ("peer", _) => {
                let peer = peers.last_mut().expect("a [Peer] section was opened");
                match k {
                    "PublicKey" => peer.public_key = decode_key(v).map_err(|_| bad(k))?,
                    "PresharedKey" => {
                        peer.preshared_key = Some(SecretKey::from_base64(v).map_err(|_| bad(k))?)
                    }
                    "AllowedIPs" => {
                        for net in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                            peer.allowed_ips.push(net.parse().map_err(|_| bad(k))?);
                        }
                    }
                    "Endpoint" => {
                        peer.endpoint = Some(v.parse::<SocketAddr>().map_err(|_| bad(k))?)
                    }
                    "PersistentKeepalive" => {
                        peer.persistent_keepalive = Some(v.parse().map_err(|_| bad(k))?)
                    }
                    _ => bail!("line {}: unknown peer key {k}", n + 1),
                }
            }
            _ => bail!("line {}: unknown key {k}", n + 1),
        }
    }
    if dev.ifname.is_empty() || !have_key {
        bail!("[Interface] needs Name and PrivateKey");
    }
    Ok((dev, peers))
}

fn load(path: &str) -> Result<(DeviceConfig, Vec<PeerConfig>)> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    parse(&text)
}

async fn stats_lines(dev: &WgDevice) -> Result<String> {
    let now = SystemTime::now();
    let mut out = String::new();
    for s in dev.peer_stats().await.map_err(|e| e.to_string())? {
        let hs = s
            .last_handshake
            .and_then(|t| now.duration_since(t).ok())
            .map_or("-".to_owned(), |d| d.as_secs().to_string());
        let ep = s.endpoint.map_or("-".to_owned(), |e| e.to_string());
        out.push_str(&format!(
            "{} {} {} {hs} {ep}\n",
            encode_key(&s.public_key),
            s.rx_bytes,
            s.tx_bytes
        ));
    }
    out.push_str("end\n");
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("wgdev: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        bail!("usage: wgdev CONFIG");
    };
    let (cfg, peers) = load(&path)?;
    let dev = WgDevice::start(cfg).await.map_err(|e| e.to_string())?;
    dev.set_peers(peers).await.map_err(|e| e.to_string())?;
    let port = dev.listen_port().await.map_err(|e| e.to_string())?;
    let mut stdout = tokio::io::stdout();
    let say = async |out: &mut tokio::io::Stdout, text: String| {
        let _ = out.write_all(text.as_bytes()).await;
        let _ = out.flush().await;
    };
    say(
        &mut stdout,
        format!("ready {} {port}\n", encode_key(&dev.public_key())),
    )
    .await;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = term.recv() => break,
        };
        let Ok(Some(line)) = line else { break };
        let reply = match line.trim() {
            "reload" => match load(&path) {
                Ok((_, peers)) => match dev.set_peers(peers).await {
                    Ok(()) => "ok\n".to_owned(),
                    Err(e) => format!("error {e}\n"),
                },
                Err(e) => format!("error {e}\n"),
            },
            "stats" => stats_lines(&dev)
                .await
                .unwrap_or_else(|e| format!("error {e}\n")),
            "" => continue,
            other => format!("error unknown command {other}\n"),
        };
        say(&mut stdout, reply).await;
    }
    dev.shutdown().await;
    Ok(())
}
