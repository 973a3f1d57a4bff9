//! Kawaii's resource model: the declarative gateway document, its parsing (native TOML/JSON and
//! drop-in formats) and its validation. Pure: no I/O beyond what the caller hands in.
//!
//! The document ([`Gateway`]) keeps what the operator wrote (strings for addresses, ports and
//! protocols) so that every mistake can be reported at once with its field path; [`validate`]
//! turns it into the typed [`Desired`] state that the planner consumes.

pub mod dropin;
pub mod duration;
pub mod environment;
pub mod error;
mod parse;
pub mod ports;
pub mod secret;
pub mod spec;
pub mod valid;
mod vpn6;

pub use error::{FieldError, Invalid, ModelError};
pub use ports::PortSet;
pub use secret::Secret;
pub use spec::*;
pub use valid::{Desired, Report, validate};
