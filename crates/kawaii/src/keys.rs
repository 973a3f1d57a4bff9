//! `kawaii wg genkey|pubkey`: Curve25519 keys in WireGuard's base64 form.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::Read;
use std::process::ExitCode;

pub fn genkey() -> anyhow::Result<ExitCode> {
    println!("{}", keypair().0);
    Ok(ExitCode::SUCCESS)
}

/// Writes a secret (a key, a token) and a newline to `path`, readable by its owner only.
pub fn write_private(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, format!("{secret}\n").as_bytes())
}

/// A fresh key pair in base64: (private, public).
pub fn keypair() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    // Clamping is applied by X25519 itself; wg stores the clamped form, so do the same.
    let secret = x25519_dalek::StaticSecret::from(bytes);
    let public = x25519_dalek::PublicKey::from(&secret);
    (
        STANDARD.encode(secret.to_bytes()),
        STANDARD.encode(public.as_bytes()),
    )
}

/// The public key of a base64 private key.
pub fn public_of(private_b64: &str) -> anyhow::Result<String> {
    let key =
        kawaii_model::valid::wg_key(private_b64).map_err(|e| anyhow::anyhow!("private key {e}"))?;
    let secret = x25519_dalek::StaticSecret::from(key);
    Ok(STANDARD.encode(x25519_dalek::PublicKey::from(&secret).as_bytes()))
}

pub fn pubkey() -> anyhow::Result<ExitCode> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the private key on stdin")?;
    if s.trim().is_empty() {
        bail!("expected a private key on stdin (kawaii wg genkey | kawaii wg pubkey)");
    }
    println!("{}", public_of(s.trim())?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    /// RFC 7748 §6.1 test vector (Alice's key pair).
    #[test]
    fn public_key_matches_rfc7748() {
        use base64::Engine;
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let private = base64::engine::general_purpose::STANDARD.encode(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let public = base64::engine::general_purpose::STANDARD.encode(hex(
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
        ));
        assert_eq!(super::public_of(&private).expect("valid"), public);
    }
}
