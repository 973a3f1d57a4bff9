//! Reading config files: native TOML/JSON documents (drop-in formats are detected here too as
//! they land), and the `check` and `import` commands.

use anyhow::Context;
use kawaii_model::{FieldError, Format, Gateway, Report, validate};
use std::path::Path;
use std::process::ExitCode;

/// A config file read and parsed; `bytes` is what was read (its hash decides re-application).
#[derive(Debug)]
pub struct Loaded {
    pub gateway: Gateway,
    pub bytes: Vec<u8>,
}

/// Reads and parses a config file. Errors: a one-line read error, or the field errors.
pub fn load(path: &Path) -> Result<Loaded, Vec<FieldError>> {
    let bytes = std::fs::read(path).map_err(|e| {
        vec![FieldError::new(
            path.display().to_string(),
            format!("cannot read: {e}"),
        )]
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        vec![FieldError::new(
            path.display().to_string(),
            "is not UTF-8 text",
        )]
    })?;
    let gateway = parse(path, &text).map_err(|e| e.details())?;
    Ok(Loaded { gateway, bytes })
}

/// Parses text whose format is told by the file name (`.json`), else TOML; drop-in formats
/// are recognised by their shape.
pub fn parse(path: &Path, text: &str) -> Result<Gateway, kawaii_model::ModelError> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Format::Json,
        Some("yaml" | "yml") => {
            return kawaii_model::dropin::cloud_gateway(text).unwrap_or_else(|| {
                Err(kawaii_model::ModelError::Syntax(FieldError::new(
                    "(file)",
                    "a YAML config must be a Cloud-Gateway conf.yaml (type: server|client, name, keys, peers, pipes)",
                )))
            });
        }
        _ => Format::Toml,
    };
    if format == Format::Toml
        && let Some(g) = kawaii_model::dropin::kiagateway(text)
    {
        return g;
    }
    Gateway::parse(text, format)
}

/// Loads and validates; the typed report or every error.
pub fn load_valid(path: &Path) -> Result<(Loaded, Report), Vec<FieldError>> {
    let loaded = load(path)?;
    let report = validate(&loaded.gateway).map_err(|e| e.0)?;
    Ok((loaded, report))
}

/// `FILE:LINE:COLUMN: path: reason` where the error has a place in the file (syntax and
/// structural errors), else `path: reason`.
pub fn located(file: &Path, e: &FieldError) -> String {
    match (e.line, e.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}: {}: {}", file.display(), e.path, e.reason),
        _ => e.to_string(),
    }
}

/// What the document names on this machine: every secret file exists, is readable, and is
/// readable by nobody but its owner (the checks `serve` makes when it applies them); the token
/// file (hashes, not secrets) exists and is readable.
pub fn environment(d: &kawaii_model::Desired) -> Vec<FieldError> {
    use kawaii_drivers::secret_file;
    use kawaii_model::valid::{KeySource, PskSource};
    let mut files: Vec<(String, &str)> = Vec::new();
    if let Some(KeySource::File(f)) = d.wireguard.as_ref().and_then(|w| w.private_key.as_ref()) {
        files.push(("wireguard.private_key_file".into(), f));
    }
    for (i, c) in d.ipsec.iter().enumerate() {
        if let PskSource::File(f) = &c.psk {
            files.push((format!("ipsec[{i}].pre_shared_key_file"), f));
        }
    }
    let mut problems: Vec<FieldError> = files
        .into_iter()
        .filter_map(|(field, file)| {
            let e = secret_file::read(&field, file).err()?;
            let reason = e.strip_prefix(&format!("{field} ")).unwrap_or(&e);
            Some(FieldError::new(field, reason))
        })
        .collect();
    if let Some(f) = &d.api.token_file
        && let Err(e) = std::fs::read(f)
    {
        problems.push(FieldError::new("api.token_file", format!("{f}: {e}")));
    }
    problems
}

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match load_valid(path) {
        Ok((_, report)) => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            let problems = environment(&report.desired);
            for e in &problems {
                println!("{e}");
            }
            if !problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                println!("{}", located(path, e));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Field errors as one error, one line each.
pub fn error_lines(errors: Vec<FieldError>) -> anyhow::Error {
    anyhow::anyhow!(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

pub fn import(path: &Path) -> anyhow::Result<ExitCode> {
    let loaded = load(path).map_err(error_lines)?;
    let text = kawaii_model::Secret::reveal(|| toml::to_string_pretty(&loaded.gateway))
        .context("rendering TOML")?;
    if kawaii_model::secret::FIELD_NAMES.iter().any(|f| {
        text.lines()
            .any(|l| l.trim_start().starts_with(&format!("{f} =")))
    }) {
        eprintln!(
            "warning: the converted document carries secrets in clear (keys, PSKs); write it to a file only you can read (umask 077)"
        );
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
