//! WireGuard key material: 32-byte Curve25519 keys, their base64 text form, and a
//! [`SecretKey`] wrapper whose `Debug` never shows the bytes (private keys and PSKs).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::WgError;

/// A public key (Curve25519 point), as raw bytes.
pub type PublicKey = [u8; 32];

/// A secret (private key or preshared key). `Debug` is redacted; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the base64 form used by `wg genkey` / `wg genpsk`.
    pub fn from_base64(text: &str) -> Result<Self, WgError> {
        decode_key(text).map(Self)
    }

    /// The raw bytes. Handle with care: never log them.
    pub const fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key belonging to this private key.
    pub fn public_key(&self) -> PublicKey {
        let secret = gotatun::x25519::StaticSecret::from(self.0);
        gotatun::x25519::PublicKey::from(&secret).to_bytes()
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Parses a base64 key (44 characters, 32 bytes).
pub fn decode_key(text: &str) -> Result<[u8; 32], WgError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| WgError::InvalidKey("not base64"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| WgError::InvalidKey("not 32 bytes"))
}

/// The base64 form of a key, as `wg` prints it. Use only for public keys in logs.
pub fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_public_key() {
        // RFC 7748 §6.1 test vector (Alice).
        let private = SecretKey::from_bytes([
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ]);
        let public = private.public_key();
        assert_eq!(
            public[..4],
            [0x85, 0x20, 0xf0, 0x09],
            "X25519 public key of the RFC vector"
        );
        let text = encode_key(&public);
        assert_eq!(decode_key(&text).expect("valid key"), public);
        assert!(decode_key("abc").is_err());
        assert!(decode_key("AAAA").is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let key = SecretKey::from_bytes([0x41; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("65") && !shown.contains("41") && shown.contains("redacted"));
    }
}
