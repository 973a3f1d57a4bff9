//! Secrets (PSKs, private keys, token hashes): write-only values whose `Debug`, `Display` and
//! `Serialize` redact. Only the store may serialize the real value, inside [`Secret::reveal`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;

/// What a secret looks like in every output. Sending it back unchanged keeps the stored value.
pub const REDACTED: &str = "(redacted)";

/// Names of every field that holds a [`Secret`] in the gateway document. Whoever handles the
/// revealed JSON (the store's audit diff) redacts these with [`redact_json`].
pub const FIELD_NAMES: &[&str] = &[
    "pre_shared_key",
    "private_key",
    "preshared_key",
    "sha256",
    "consent_key",
];

/// Replaces every secret field of a JSON value (at any depth) with [`REDACTED`].
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if FIELD_NAMES.contains(&k.as_str()) && child.is_string() {
                    *child = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_json(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

thread_local! {
    static REVEAL: Cell<bool> = const { Cell::new(false) };
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value, for the drivers that hand it to the kernel or to charon.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when a client sent the redaction marker back: "keep what you have".
    pub fn is_placeholder(&self) -> bool {
        self.0 == REDACTED
    }
    /// Serializes real values while `f` runs on this thread. For the store only.
    pub fn reveal<T>(f: impl FnOnce() -> T) -> T {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                REVEAL.with(|r| r.set(self.0));
            }
        }
        let _reset = Reset(REVEAL.with(|r| r.replace(true)));
        f()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if REVEAL.with(|r| r.get()) {
            s.serialize_str(&self.0)
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("write-only secret; always shown as \"(redacted)\""))
            .into()
    }
}
impl utoipa::ToSchema for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_everywhere_but_reveal() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"(redacted)\"");
        let shown = Secret::reveal(|| serde_json::to_string(&s).expect("json"));
        assert_eq!(shown, "\"hunter2\"");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"(redacted)\"");
    }
}

#[cfg(test)]
mod field_names {
    use crate::{Format, Gateway};

    /// Every Secret field of the document is in FIELD_NAMES: redacting the revealed JSON gives
    /// exactly the ordinary (redacted) serialization.
    #[test]
    fn field_names_cover_every_secret() {
        let text = r#"
[api]
tokens = [{ name = "ops", role = "admin", sha256 = "8aeb934816ad3780c8f6c6a2bf98e6df6115b81de9e11de4b3a78a58bb196d90" }]
[[ipsec]]
name = "o"
remote_peer = "198.51.100.8"
remote_subnet = "172.16.1.0/24"
pre_shared_key = "psk-psk-psk"
phase1_dh_group_number = 14
phase1_integrity_algorithm = "SHA512"
phase1_encryption_algorithm = "AES256"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA512"
phase2_encryption_algorithm = "AES256"
[[vpc_peerings]]
name = "p"
subnet = "10.2.0.0/24"
via = "198.51.100.2"
consent_key = "a-shared-consent-secret"
[wireguard]
address = "10.8.0.1/24"
private_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
[[wireguard.peers]]
name = "a"
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
preshared_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
"#;
        let g = Gateway::parse(text, Format::Toml).expect("parses");
        let mut revealed = super::Secret::reveal(|| serde_json::to_value(&g)).expect("json");
        assert_ne!(revealed, serde_json::to_value(&g).expect("json"));
        super::redact_json(&mut revealed);
        assert_eq!(revealed, serde_json::to_value(&g).expect("json"));
    }
}
