//! Errors of the model: each names the field path and a reason a person understands.

use serde::Serialize;
use std::fmt;

/// One problem in a document, at one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Where, e.g. `ipsec[0].phase1_dh_group_number`.
    pub path: String,
    /// Why, in words.
    pub reason: String,
    /// Where in the text (1-based), when the document came from a TOML or JSON text and the
    /// error is a syntax or structural one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
            line: None,
            column: None,
        }
    }

    /// The same error, placed at `line`:`column` of the text.
    pub fn at(self, line: usize, column: usize) -> Self {
        Self {
            line: Some(line),
            column: Some(column),
            ..self
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, " (line {l}, column {c})")?;
        }
        Ok(())
    }
}

/// Every error found in a document (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The text does not parse as the format at all (syntax, or a value of the wrong type).
    #[error("{0}")]
    Syntax(FieldError),
    /// It parses, but the values are wrong.
    #[error("{0}")]
    Invalid(Invalid),
}

impl ModelError {
    /// All field errors, for API bodies and CLI output.
    pub fn details(&self) -> Vec<FieldError> {
        match self {
            ModelError::Syntax(e) => vec![e.clone()],
            ModelError::Invalid(i) => i.0.clone(),
        }
    }
}

/// Collects errors with a path prefix, so validators can nest.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub(crate) list: Vec<FieldError>,
    pub(crate) warnings: Vec<FieldError>,
}

impl Errors {
    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.list.push(FieldError::new(path, reason));
    }
    pub(crate) fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(FieldError::new(path, reason));
    }
    /// Runs `f` and records its error at `path`, returning the value if any.
    pub(crate) fn check<T>(&mut self, path: impl Into<String>, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(path, reason);
                None
            }
        }
    }
}
