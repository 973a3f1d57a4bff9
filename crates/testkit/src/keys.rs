//! WireGuard key pairs for tests, made by the reference tool (`wg genkey`, `wg pubkey`).

use crate::{KitError, Result};
use std::process::Command;

fn wg(args: &[&str], input: Option<&str>) -> Result<String> {
    let mut cmd = Command::new("wg");
    cmd.args(args);
    crate::output(cmd, input).map(|out| out.trim().to_string())
}

/// The public key of a base64 private key.
pub fn public_key(private: &str) -> Result<String> {
    wg(&["pubkey"], Some(private))
}

/// A fresh key pair: (private, public), base64.
pub fn keypair() -> Result<(String, String)> {
    let private = wg(&["genkey"], None)?;
    let public = public_key(&private)?;
    Ok((private, public))
}

/// Writes a secret file with `mode` (0600 for keys kawaii accepts), the text plus a newline.
pub fn write_secret(path: &std::path::Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let err = |error| KitError::Spawn {
        cmd: format!("write {}", path.display()),
        error,
    };
    std::fs::write(path, format!("{text}\n")).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}
