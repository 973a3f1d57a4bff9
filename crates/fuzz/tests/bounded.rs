//! Every fuzz target for a bounded time on the stable toolchain: the seed corpus, then random
//! mutations from a seed printed here (`KAWAII_FUZZ_SEED` repeats a run). `KAWAII_FUZZ_SECS`
//! sets the time per target (default 15 s). A crash saves its input under
//! `target/fuzz-findings/<target>-<seed>.bin` and fails with the panic message.

use std::time::Duration;

fn bounded(name: &str) {
    let t = kawaii_fuzz::target(name).unwrap_or_else(|| panic!("no target {name}"));
    let secs: u64 = std::env::var("KAWAII_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed = std::env::var("KAWAII_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    match kawaii_fuzz::run(t, Duration::from_secs(secs), seed) {
        Ok(stats) => eprintln!(
            "{name}: {} executions in {secs} s (seed {seed})",
            stats.executions
        ),
        Err(f) => {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-findings");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-{}.bin", f.seed));
            let _ = std::fs::write(&file, &f.input);
            panic!(
                "{name} panicked (seed {}, input saved as {}): {}",
                f.seed,
                file.display(),
                f.message
            );
        }
    }
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { bounded(stringify!($name)); })*

        /// Every target in the list has a test here.
        #[test]
        fn every_target_is_run() {
            let here = [$(stringify!($name)),*];
            for t in kawaii_fuzz::TARGETS {
                assert!(here.contains(&t.name), "{} has no bounded run", t.name);
            }
        }
    };
}

targets!(
    tls_client_hello,
    http_host,
    proxy_protocol,
    vrrp_advert,
    router_advert,
    wg_sync,
    consent_hello,
    offload,
    config_toml,
    dropins,
    api_json,
);
