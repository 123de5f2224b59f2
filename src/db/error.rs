//! The data layer's own error: what a query, a write or a checkout can fail with, classified
//! so that the HTTP layer maps each onto its row of the contract's error table.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such record")]
    NotFound,
    /// A reference field names no record of the tenant.
    #[error("{0} names no record of this tenant")]
    InvalidReference(&'static str),
    /// The tenant already uses its share of the pool; carries the seconds to wait.
    #[error("this tenant already uses its share of the database")]
    Busy(u64),
    /// The database cannot answer now (down, restarting, too slow, no connection).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema out of step, never the client's doing.
    #[error("database: {0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A checkout whose connection was discarded (its earlier work timed out).
    pub(super) fn discarded() -> Self {
        Error::Unavailable("connection discarded".into())
    }

    /// Work that got no answer within the checkout's bound.
    pub(super) fn timed_out(timeout: std::time::Duration) -> Self {
        Error::Unavailable(format!("no answer from the database within {timeout:?}"))
    }
}

/// Names the request field behind a foreign-key constraint of the migrations.
fn field_of_constraint(constraint: Option<&str>) -> Option<&'static str> {
    match constraint? {
        "contacts_account_fk" | "opportunities_account_fk" => Some("account_id"),
        "opportunities_contact_fk" => Some("contact_id"),
        _ => None,
    }
}

impl From<DieselError> for Error {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => Error::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                match field_of_constraint(info.constraint_name()) {
                    Some(field) => Error::InvalidReference(field),
                    None => Error::Other(format!("foreign key: {}", info.message())),
                }
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Error::Unavailable(info.message().to_owned()),
            // statement_timeout and admin shutdowns (pg_terminate_backend, restarts) mean the
            // database cannot answer now, not that the request was wrong.
            DieselError::DatabaseError(_, info)
                if info.message().contains("statement timeout")
                    || info.message().contains("terminating connection")
                    || info.message().contains("shutting down") =>
            {
                Error::Unavailable(info.message().to_owned())
            }
            other => Error::Other(other.to_string()),
        }
    }
}

impl From<deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>> for Error {
    fn from(
        error: deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>,
    ) -> Self {
        Error::Unavailable(format!("connection pool: {error}"))
    }
}
