//! Secrets (PSKs, private keys, token hashes): write-only values whose `Debug`, `Display` and
//! `Serialize` redact. Only the store may serialize the real value, inside [`Secret::reveal`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;

/// What a secret looks like in every output. Sending it back unchanged keeps the stored value.
pub const REDACTED: &str = "(redacted)";

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
        if REVEAL.with(|r| r.get()) { s.serialize_str(&self.0) } else { s.serialize_str(REDACTED) }
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
