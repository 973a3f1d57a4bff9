//! Validation driven from files, one case per rule. Each `testdata/invalid/<case>/config.toml`
//! must be refused with exactly the lines of its `expected-errors.txt` (`path: reason`, as
//! `kawaii check` prints them, syntax errors included); each `testdata/valid/<case>/config.toml`
//! must validate with exactly the warnings of its `expected-warnings.txt` (empty: silent).
//! `UPDATE_GOLDEN=1` rewrites the expected files; a missing one fails.

use kawaii_model::{Format, Gateway, validate};
use std::path::{Path, PathBuf};

/// What validating one config file says, one `path: reason` line each.
enum Outcome {
    Valid { warnings: Vec<String> },
    Invalid { errors: Vec<String> },
}

fn outcome(text: &str) -> Outcome {
    let lines = |v: &[kawaii_model::FieldError]| v.iter().map(ToString::to_string).collect();
    match Gateway::parse(text, Format::Toml) {
        Err(e) => Outcome::Invalid {
            errors: lines(&e.details()),
        },
        Ok(g) => match validate(&g) {
            Ok(report) => Outcome::Valid {
                warnings: lines(&report.warnings),
            },
            Err(invalid) => Outcome::Invalid {
                errors: lines(&invalid.0),
            },
        },
    }
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(kind);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases under {}", root.display());
    dirs
}

/// Compares `actual` with the expected file (or rewrites it); returns the mismatch, if any.
fn compare(expected: &Path, actual: &[String]) -> Option<String> {
    let mut text = actual.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected, &text).expect("write expected file");
        return None;
    }
    match std::fs::read_to_string(expected) {
        Err(_) => Some(format!(
            "{} is missing; run with UPDATE_GOLDEN=1 and review it",
            expected.display()
        )),
        Ok(want) if want == text => None,
        Ok(want) => Some(format!(
            "{} differs\n--- expected\n{want}--- actual\n{text}",
            expected.display()
        )),
    }
}

/// Runs every case of `kind`, collecting all failures before reporting them at once.
fn run(kind: &str, expected_file: &str, want_valid: bool) {
    let mut failures = Vec::new();
    let dirs = cases(kind);
    for dir in &dirs {
        let config = dir.join("config.toml");
        let text = match std::fs::read_to_string(&config) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: {e}", config.display()));
                continue;
            }
        };
        let failure = match (outcome(&text), want_valid) {
            (Outcome::Valid { warnings }, true) => compare(&dir.join(expected_file), &warnings),
            (Outcome::Invalid { errors }, false) => compare(&dir.join(expected_file), &errors),
            (Outcome::Valid { .. }, false) => Some(format!("{} validates", config.display())),
            (Outcome::Invalid { errors }, true) => Some(format!(
                "{} is refused:\n{}",
                config.display(),
                errors.join("\n")
            )),
        };
        failures.extend(failure);
    }
    assert!(
        failures.is_empty(),
        "{} of {} {kind} cases failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn invalid_documents_report_exactly_their_errors() {
    run("invalid", "expected-errors.txt", false);
}

#[test]
fn valid_documents_validate_with_exactly_their_warnings() {
    run("valid", "expected-warnings.txt", true);
}
