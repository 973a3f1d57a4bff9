//! Schema versions of what the store keeps. Every backend records the version it was written
//! with; a newer kawaii migrates an older store when it opens it (one transaction, after a
//! backup copy), and an older kawaii refuses a newer store without changing anything.
//!
//! | schema | since | what changed                                                        |
//! |--------|-------|---------------------------------------------------------------------|
//! | 1      | 0.1.0 | the first layout; no version recorded (a store without one is 1)     |
//! | 2      | 0.2.0 | the version is recorded; each stored document carries its format     |

use crate::StoreError;

/// The schema this build writes.
pub const SCHEMA: u32 = 2;

/// The stored gateway document's format version (the model's JSON); a document in a newer
/// format is refused rather than half-read.
pub const DOCUMENT_FORMAT: u32 = 1;

/// Refuses a store written by a newer kawaii (before anything is written to it).
pub fn check(found: u32, store: &str) -> Result<(), StoreError> {
    if found > SCHEMA {
        return Err(StoreError::TooNew {
            store: store.to_string(),
            found,
            supported: SCHEMA,
        });
    }
    Ok(())
}

/// Refuses a document written in a newer format.
pub fn check_document(format: u32) -> Result<(), StoreError> {
    if format > DOCUMENT_FORMAT {
        return Err(StoreError::Corrupt(format!(
            "the document has format {format}; this kawaii reads up to format {DOCUMENT_FORMAT} (upgrade kawaii)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_with_what_to_do() {
        assert!(check(1, "x").is_ok() && check(SCHEMA, "x").is_ok());
        let e = check(SCHEMA + 1, "/var/lib/kawaii/kawaii.db").expect_err("newer schema");
        let text = e.to_string();
        assert!(text.contains("/var/lib/kawaii/kawaii.db"), "{text}");
        assert!(text.contains(&format!("schema {}", SCHEMA + 1)), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(check_document(DOCUMENT_FORMAT + 1).is_err());
    }
}
