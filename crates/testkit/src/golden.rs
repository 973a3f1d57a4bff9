//! Golden files: a rendered artefact is compared with the file that holds it; `UPDATE_GOLDEN=1`
//! rewrites the file instead (read the diff in review). Rulesets are also checked by the real
//! `nft -c` in a throwaway network namespace.

use crate::{KitError, Result};
use std::path::Path;
use std::process::Command;

/// Asserts that `path` holds `actual` (with `UPDATE_GOLDEN` set: writes it, directories too).
pub fn check_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs; run with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

/// `nft -c -f FILE` in a throwaway network namespace (`unshare -n`; needs root).
pub fn nft_check_file(file: &Path) -> Result<()> {
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "nft", "-c", "-f"]).arg(file);
    crate::output(cmd, None).map(drop)
}

/// [`nft_check_file`] of a script (written to a file of its own: checks run in parallel).
pub fn nft_check(script: &str) -> Result<()> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("kawaii-nft-check-{}-{n}.nft", std::process::id()));
    std::fs::write(&path, script).map_err(|error| KitError::Spawn {
        cmd: format!("write {}", path.display()),
        error,
    })?;
    let result = nft_check_file(&path);
    let _ = std::fs::remove_file(&path);
    result
}
