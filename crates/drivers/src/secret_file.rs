//! Files that hold secrets (the WireGuard private key, IPsec pre-shared keys, token files): read
//! only when nobody but the owner can read them, with one line that names the field, the file and
//! the fix when they are not. Used by the drivers at apply time and by `kawaii check` before.

use std::os::unix::fs::PermissionsExt;

/// The file's text, or why it cannot be used: `field` (`wireguard.private_key_file`) names the
/// setting in the message. Never returns or prints the content on error.
pub fn read(field: &str, path: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{field} {path}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{field} {path}: mode {mode:04o} lets others read the secret; run `chmod 600 {path}`"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{field} {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_can_read_is_refused_without_its_content() {
        let dir = tempdir();
        let path = dir.join("office.psk");
        std::fs::write(&path, "psk-that-must-never-leak-42\n").expect("write");
        let p = path.to_str().expect("utf-8");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read("ipsec[0].pre_shared_key_file", p).expect_err("0644 refused");
        assert!(e.contains("ipsec[0].pre_shared_key_file"), "{e}");
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("never-leak"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read("x", p).as_deref(), Ok("psk-that-must-never-leak-42\n"));
        let missing = read("api.token_file", "/nonexistent/kawaii-token").expect_err("missing");
        assert!(
            missing.starts_with("api.token_file /nonexistent/kawaii-token: "),
            "{missing}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kawaii-secret-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
