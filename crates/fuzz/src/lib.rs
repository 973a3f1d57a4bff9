//! Fuzz targets of every decoder that bytes from outside reach: the sniffers (ClientHello, HTTP
//! head, PROXY header), the VRRP advert, the WireGuard endpoint-sync message, the consent hello,
//! the TUN offload (TSO/GRO), the TOML config and its drop-in formats, and the API's JSON bodies.
//!
//! The same functions run two ways: unbounded under libFuzzer by `cargo fuzz` (`fuzz/`, driven
//! by `bench/fuzz/run.sh`), and for a bounded time on the stable toolchain in the test suite
//! ([`run`]: the seed corpus, then random mutations of it, from a seed that is printed).

pub mod mutate;
pub mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One target: its name (also its corpus directory and cargo-fuzz binary) and its function.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "tls_client_hello",
        run: targets::tls_client_hello,
    },
    Target {
        name: "http_host",
        run: targets::http_host,
    },
    Target {
        name: "proxy_protocol",
        run: targets::proxy_protocol,
    },
    Target {
        name: "vrrp_advert",
        run: targets::vrrp_advert,
    },
    Target {
        name: "router_advert",
        run: targets::router_advert,
    },
    Target {
        name: "wg_sync",
        run: targets::wg_sync,
    },
    Target {
        name: "consent_hello",
        run: targets::consent_hello,
    },
    Target {
        name: "offload",
        run: targets::offload,
    },
    Target {
        name: "config_toml",
        run: targets::config_toml,
    },
    Target {
        name: "dropins",
        run: targets::dropins,
    },
    Target {
        name: "api_json",
        run: targets::api_json,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// `corpus/<name>`: the seed inputs (captured packets, example configs and bodies).
pub fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// The seed inputs of `name`, sorted by file name; at least one (empty) input.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(name))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    out.push(Vec::new());
    out
}

/// What a bounded run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub executions: u64,
    pub seed: u64,
}

/// An input that made the target panic, and the panic's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub input: Vec<u8>,
    pub message: String,
    pub seed: u64,
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic inside a target is caught and reported as a [`Finding`]; the hook keeps it off
/// stderr (on this thread only, while a target runs) and prints every other panic as before.
fn quiet_panics_in_targets() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
}

/// Runs `t` on every seed input, then on mutations of them until `budget` is spent.
pub fn run(t: Target, budget: Duration, seed: u64) -> Result<Stats, Finding> {
    quiet_panics_in_targets();
    let corpus = seeds(t.name);
    let mut rng = mutate::Rng::new(seed);
    let deadline = Instant::now() + budget;
    let mut executions = 0u64;
    let mut one = |input: &[u8]| -> Result<(), Finding> {
        executions += 1;
        QUIET.with(|q| q.set(true));
        let outcome = std::panic::catch_unwind(|| (t.run)(input));
        QUIET.with(|q| q.set(false));
        outcome.map_err(|p| Finding {
            input: input.to_vec(),
            message: p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
            seed,
        })
    };
    for input in &corpus {
        one(input)?;
    }
    while Instant::now() < deadline {
        // Check the clock every 64 inputs: some targets take microseconds.
        for _ in 0..64 {
            let input = mutate::next(&mut rng, &corpus);
            one(&input)?;
        }
    }
    Ok(Stats { executions, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragile(data: &[u8]) {
        assert!(data.len() < 2 || data[0] != 0xAB, "found it");
    }

    #[test]
    fn a_crash_is_found_and_reported_with_its_input() {
        let t = Target {
            name: "no-such-corpus",
            run: fragile,
        };
        let f = run(t, Duration::from_secs(20), 7).expect_err("the bug is found");
        assert!(f.input.len() >= 2 && f.input[0] == 0xAB, "{:?}", f.input);
        assert_eq!((f.message.as_str(), f.seed), ("found it", 7));
        let t = Target {
            name: "no-such-corpus",
            run: |_| {},
        };
        let stats = run(t, Duration::from_millis(50), 7).expect("nothing to find");
        assert!(stats.executions > 100, "{stats:?}");
    }
}
