//! Parse, don't validate: request bodies, query strings and cursors become typed values here, so
//! the data layer only ever sees valid input.

pub mod bodies;
pub mod choices;
pub mod cursor;
pub mod entities;
pub mod fields;
pub mod module;
pub mod query;
pub mod tags;

pub use module::{Module, Operation};

/// Why client input is not valid; each becomes its row of the contract's error table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A query string (`400 invalid_query`).
    #[error("{0}")]
    Query(String),
    /// A request body's fields (`400 validation_failed`).
    #[error("{0}")]
    Body(String),
}

/// The tenant a request acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(pub uuid::Uuid);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Client-supplied names echoed in error messages are cut to this many characters.
const ECHO_MAX: usize = 64;

/// A client-supplied name, shortened and quoted for an error message.
pub(crate) fn echo(name: &str) -> String {
    let short: String = name.chars().take(ECHO_MAX).collect();
    format!("{short:?}")
}
