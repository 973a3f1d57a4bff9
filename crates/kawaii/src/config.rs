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
/// file (hashes, not secrets) exists and is readable. Read from the document as written, so
/// that a document with other mistakes is looked at too.
pub fn files(g: &Gateway) -> Vec<FieldError> {
    use kawaii_drivers::secret_file;
    let mut files: Vec<(String, &str)> = Vec::new();
    if let Some(f) = g
        .wireguard
        .as_ref()
        .and_then(|w| w.private_key_file.as_deref())
    {
        files.push(("wireguard.private_key_file".into(), f));
    }
    for (i, c) in g.ipsec.iter().enumerate() {
        if let Some(f) = c.pre_shared_key_file.as_deref() {
            files.push((format!("ipsec[{i}].pre_shared_key_file"), f));
        }
    }
    let mut problems: Vec<FieldError> = files
        .into_iter()
        .filter(|(_, file)| !file.is_empty())
        .filter_map(|(field, file)| {
            let e = secret_file::read(&field, file).err()?;
            let reason = e.strip_prefix(&format!("{field} ")).unwrap_or(&e);
            Some(FieldError::new(field, reason))
        })
        .collect();
    if let Some(f) = &g.api.token_file
        && let Err(e) = std::fs::read(f)
    {
        problems.push(FieldError::new("api.token_file", format!("{f}: {e}")));
    }
    problems
}

/// Warnings about this machine (interfaces, a `via` or `remote_peer` it cannot reach) for the
/// zone `zone`; an unreadable machine is one warning.
pub fn machine(g: &Gateway, zone: Option<&str>) -> Vec<FieldError> {
    match kawaii_drivers::environment::read() {
        Ok(env) => kawaii_model::environment::check(g, zone, &env),
        Err(e) => vec![FieldError::new(
            "(machine)",
            format!("cannot read interfaces and routes: {e}"),
        )],
    }
}

/// The document as far as it can be read, and every error in it (structural and value ones).
fn read_checked(path: &Path) -> (Option<Gateway>, Vec<FieldError>) {
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(_)) => {
            return (
                None,
                vec![FieldError::new(
                    path.display().to_string(),
                    "is not UTF-8 text",
                )],
            );
        }
        Err(e) => {
            return (
                None,
                vec![FieldError::new(
                    path.display().to_string(),
                    format!("cannot read: {e}"),
                )],
            );
        }
    };
    let native = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Some(Format::Json),
        Some("yaml" | "yml") => None,
        _ if kawaii_model::dropin::kiagateway(&text).is_some() => None,
        _ => Some(Format::Toml),
    };
    let (gateway, mut errors) = match native {
        Some(format) => Gateway::parse_partial(&text, format),
        None => match parse(path, &text) {
            Ok(g) => (Some(g), Vec::new()),
            Err(e) => (None, e.details()),
        },
    };
    if errors.is_empty()
        && let Some(g) = &gateway
        && let Err(e) = validate(g)
    {
        errors = e.0;
    }
    (gateway, errors)
}

/// `kawaii check`: every error on stdout (exit 1), warnings on stderr. `local`: this machine is
/// the gateway (of `zone`), so its interfaces and routes are checked too.
pub fn check(path: &Path, local: bool, zone: Option<&str>) -> anyhow::Result<ExitCode> {
    let (gateway, mut errors) = read_checked(path);
    let mut warnings = Vec::new();
    if let Some(g) = &gateway {
        if errors.is_empty()
            && let Ok(report) = validate(g)
        {
            warnings = report.warnings;
        }
        errors.extend(files(g));
        if local {
            warnings.extend(machine(g, zone));
        }
    }
    // In file order where placed (syntax and structural errors), then the rest as found.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    for e in &errors {
        println!("{}", located(path, e));
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
