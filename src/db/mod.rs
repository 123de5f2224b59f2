//! The data layer: the connection pool, database creation and embedded migrations, and one
//! module per entity with every query it needs. Every query takes the tenant and filters on it.

pub mod accounts;
pub mod activities;
pub mod aggregates;
pub mod connect;
pub mod contacts;
pub mod entity;
mod error;
pub mod fixed;
pub mod leads;
pub mod opportunities;
pub mod outbox;
pub mod schema;
pub mod seed;
pub mod share;

use bigdecimal::BigDecimal;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::connection::SimpleConnection;
use diesel::expression::BoxableExpression;
use diesel::pg::Pg;
use diesel::sql_types::Bool;
use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::Serializer;

use crate::config::Config;
use crate::domain::cursor::Cursor;
use crate::domain::tags::Tag;
pub use connect::{SslMode, Target};
pub use entity::Entity;
pub use error::{Error, Result};

/// The pooled PostgreSQL connections of one process.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The pool every request draws from. Connections carry `statement_timeout`, and both waiting for
/// a connection and opening one are bounded, so a lost database answers 503 instead of hanging.
/// They connect as `DATABASE_URL`'s `sslmode` says ([`Target`]).
pub fn build_pool(config: &Config) -> Result<Pool, BoxError> {
    let target = std::sync::Arc::new(Target::parse(&config.database_url)?);
    let statement_timeout_ms = config.db_statement_timeout_ms;
    let connect_timeout = config.db_acquire_timeout();
    let mut manager_config = ManagerConfig::default();
    // A broken connection is detected by tokio-postgres itself; no probe query per checkout.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |_url| {
        let target = target.clone();
        Box::pin(async move {
            let mut conn = tokio::time::timeout(connect_timeout, target.connect())
                .await
                .map_err(|_| ConnectionError::BadConnection("connecting timed out".into()))??;
            conn.batch_execute(&format!("SET statement_timeout = {statement_timeout_ms}"))
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    let manager =
        AsyncDieselConnectionManager::new_with_config(&config.database_url, manager_config);
    let timeout = Some(config.db_acquire_timeout());
    Ok(Pool::builder(manager)
        .max_size(config.db_pool_size.max(1))
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

/// A blocking connection, for migrations and database administration outside the runtime.
pub type SyncPgConnection = AsyncConnectionWrapper<AsyncPgConnection>;

pub fn connect_sync(database_url: &str) -> diesel::ConnectionResult<SyncPgConnection> {
    Target::parse(database_url)?.connect_blocking()
}

/// One connection outside the pool (the command line's tools).
pub async fn connect(database_url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    Target::parse(database_url)?.connect().await
}

/// A pooled connection whose work is bounded in time. A connection whose work timed out is
/// discarded instead of returned to the pool: it may sit on a socket that no longer answers
/// (a network partition), where the server-side `statement_timeout` can never fire.
pub struct Checkout {
    conn: Option<deadpool::managed::Object<AsyncDieselConnectionManager<AsyncPgConnection>>>,
    timeout: std::time::Duration,
    poisoned: bool,
    /// The tenant's share this connection counts against, returned with it.
    _share: share::SharePermit,
}

impl Checkout {
    /// Takes a connection from the pool (bounded by the pool's wait timeout) for work that
    /// counts against `share`.
    pub async fn get(
        pool: &Pool,
        timeout: std::time::Duration,
        share: share::SharePermit,
    ) -> Result<Self> {
        Ok(Checkout {
            conn: Some(pool.get().await?),
            timeout,
            poisoned: false,
            _share: share,
        })
    }

    /// Runs `work` on the connection; `503 database_unavailable` when it takes longer than the
    /// timeout.
    pub async fn run<'a, T, E, Fut>(
        &'a mut self,
        work: impl FnOnce(&'a mut AsyncPgConnection) -> Fut,
    ) -> Result<T, E>
    where
        Fut: std::future::Future<Output = Result<T, E>> + 'a,
        E: From<Error>,
    {
        let Some((conn, timeout, poisoned)) = self.open() else {
            return Err(Error::discarded().into());
        };
        match tokio::time::timeout(timeout, work(conn)).await {
            Ok(result) => result,
            Err(_) => {
                *poisoned = true;
                Err(Error::timed_out(timeout).into())
            }
        }
    }

    /// The connection (`None` once discarded), the timeout and the flag that discards the
    /// connection when the checkout ends, borrowed apart.
    fn open(&mut self) -> Option<(&mut AsyncPgConnection, std::time::Duration, &mut bool)> {
        let conn: &mut AsyncPgConnection = self.conn.as_mut()?;
        Some((conn, self.timeout, &mut self.poisoned))
    }
}

/// What a write may have done to the database, as far as the cache must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Nothing was committed: it failed before or inside its transaction, which rolled back.
    /// Every cached answer is still current.
    None,
    /// It committed, or it failed while committing and its outcome is unknown: it must be
    /// invalidated. With the row it left in the outbox, when it records one.
    Maybe(Option<i64>),
}

/// The outcome of [`Checkout::write`].
pub struct Write<T> {
    pub result: Result<T>,
    pub commit: Commit,
    /// The cache tags the write changed (empty unless it may have committed).
    pub tags: Vec<Tag>,
}

/// What a write's work answers: its value and the cache tags it changed
/// ([`crate::domain::tags`]).
pub type Written<T> = (T, Vec<Tag>);

impl Checkout {
    /// Runs `work` in a transaction, recording the tags it changed in the cache outbox in the
    /// same transaction when `outbox` names the tenant, and says whether it may have committed:
    /// an error before COMMIT was sent rolled everything back, one during COMMIT (a lost
    /// connection, a timeout) leaves the outcome unknown. Bounded by the checkout's timeout, like
    /// [`Self::run`].
    ///
    /// Three round trips whatever the work: `BEGIN`; the work's statements, pipelined; the
    /// outbox row and `COMMIT`, pipelined (an outbox row that fails aborts the transaction, and
    /// PostgreSQL then answers the `COMMIT` by rolling back). `BEGIN` goes alone so that no
    /// statement of the work can ever run outside the transaction.
    pub async fn write<T>(
        &mut self,
        outbox: Option<crate::domain::TenantId>,
        work: impl AsyncFnOnce(&AsyncPgConnection) -> Result<Written<T>>,
    ) -> Write<T> {
        use diesel_async::RunQueryDsl;
        use fixed::Command;
        let Some((conn, timeout, poisoned)) = self.open() else {
            return Write {
                result: Err(Error::discarded()),
                commit: Commit::None,
                tags: Vec::new(),
            };
        };
        let conn: &AsyncPgConnection = conn;
        let was_poisoned = *poisoned;
        // The pool cannot tell a connection left inside this transaction (the request cancelled
        // meanwhile, a failed ROLLBACK): until the transaction is over, it is not pooled again.
        *poisoned = true;
        // Set once COMMIT is on its way: from then on a failure cannot tell what happened.
        let mut committing: Option<Option<i64>> = None;
        let mut changed = Vec::new();
        let mut over = false;
        let transaction = async {
            Command("BEGIN").execute(&mut &*conn).await?;
            match work(conn).await {
                Ok((value, tags)) => {
                    let tags = crate::domain::tags::normalized(tags);
                    committing = Some(None);
                    let row = async {
                        match outbox {
                            Some(tenant) => Ok(Some(outbox::record(conn, tenant, &tags).await?)),
                            None => Ok::<_, Error>(None),
                        }
                    };
                    let commit = async { Command("COMMIT").execute(&mut &*conn).await };
                    let (row, committed) = futures_util::join!(row, commit);
                    changed = tags;
                    over = committed.is_ok();
                    let row = row?;
                    committing = Some(row);
                    committed?;
                    Ok(value)
                }
                Err(error) => {
                    // A failed rollback leaves nothing committed either; the connection is
                    // then discarded.
                    over = Command("ROLLBACK").execute(&mut &*conn).await.is_ok();
                    Err(error)
                }
            }
        };
        let result = match tokio::time::timeout(timeout, transaction).await {
            Ok(result) => result,
            Err(_) => Err(Error::timed_out(timeout)),
        };
        *poisoned = was_poisoned || !over;
        // A write that succeeded sent its COMMIT, so only a failure can leave this unset.
        let commit = match committing {
            Some(row) => Commit::Maybe(row),
            None => Commit::None,
        };
        Write {
            result,
            commit,
            tags: changed,
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.poisoned {
            if let Some(conn) = self.conn.take() {
                drop(deadpool::managed::Object::take(conn));
            }
        }
    }
}

/// Creates the database if it is missing and applies pending migrations. Blocking: call it before
/// the HTTP runtime starts, or from `spawn_blocking`.
pub fn prepare(database_url: &str) -> Result<(), BoxError> {
    let mut conn = match connect_sync(database_url) {
        Ok(conn) => conn,
        Err(error) if error.to_string().contains("does not exist") => {
            create_database(database_url)?;
            connect_sync(database_url)?
        }
        Err(error) => return Err(error.into()),
    };
    // Replicas starting together must not run the same migration twice: one migrates while the
    // others wait on this session lock, then find nothing left to do.
    SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_lock(7346201)")?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.iter().map(ToString::to_string).collect::<Vec<_>>());
    SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_unlock(7346201)")?;
    for migration in applied? {
        log::info!("applied migration {migration}");
    }
    Ok(())
}

fn create_database(database_url: &str) -> Result<(), BoxError> {
    let name = database_name(database_url).ok_or("DATABASE_URL names no database")?;
    let maintenance = with_database(database_url, "postgres");
    let mut conn = connect_sync(&maintenance)?;
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match SimpleConnection::batch_execute(&mut conn, &statement) {
        Ok(()) => {
            log::info!("created database {name}");
            Ok(())
        }
        // Another replica created it first (PostgreSQL reports the race either way).
        Err(error)
            if error.to_string().contains("already exists")
                || error.to_string().contains("pg_database_datname_index") =>
        {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Drops a database (tests and tools), disconnecting its sessions first.
pub fn drop_database(database_url: &str) -> Result<(), BoxError> {
    let name = database_name(database_url).ok_or("DATABASE_URL names no database")?;
    let mut conn = connect_sync(&with_database(database_url, "postgres"))?;
    SimpleConnection::batch_execute(
        &mut conn,
        &format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            name.replace('"', "\"\"")
        ),
    )?;
    Ok(())
}

/// Splits `scheme://authority/db?params` into its parts around the database name.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let authority_start = url.find("://")? + 3;
    let path_start = authority_start + url[authority_start..].find('/')?;
    let rest = &url[path_start + 1..];
    let name_len = rest.find('?').unwrap_or(rest.len());
    Some((&url[..path_start], &rest[..name_len], &rest[name_len..]))
}

/// The database name in a PostgreSQL URL.
pub fn database_name(url: &str) -> Option<String> {
    split_url(url)
        .map(|(_, name, _)| name.to_owned())
        .filter(|name| !name.is_empty())
}

/// The same URL naming another database.
pub fn with_database(url: &str, name: &str) -> String {
    match split_url(url) {
        Some((base, _, query)) => format!("{base}/{name}{query}"),
        None => format!("{}/{name}", url.trim_end_matches('/')),
    }
}

/// Timestamps are stored with microsecond precision; cut them here so that what a write answers
/// is exactly what later reads return.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Keyset condition: rows strictly after `cursor` in `created_at DESC, id DESC` order. The row
/// comparison lets PostgreSQL seek in the `(tenant_id, created_at DESC, id DESC)` index.
pub fn after<QS: 'static>(cursor: Cursor) -> Box<dyn BoxableExpression<QS, Pg, SqlType = Bool>> {
    Box::new(
        fixed::fixed::<Bool>("(created_at, id) < (")
            .bind(cursor.created_at)
            .sql(", ")
            .bind(cursor.id)
            .sql(")"),
    )
}

/// A `q` search over several fields: the candidates from `document` (the fields joined, as one
/// trigram index of the migration `search_documents` indexes it: the text must stay that
/// expression, or the planner cannot use the index), then exactly those where a field matches.
/// A field that contains the pattern's text makes the joined text contain it too, so no match is
/// lost.
pub fn search_document<QS: 'static>(
    document: &'static str,
    pattern: &str,
) -> Box<dyn BoxableExpression<QS, Pg, SqlType = Bool>> {
    Box::new(
        fixed::fixed::<Bool>(document)
            .sql(" ILIKE ")
            .bind(pattern.to_owned()),
    )
}

/// Money is a JSON number in the API, exactly the decimal stored (`BigDecimal`'s own serde
/// writes a string, and a float would round sums past 2^53 cents). Written in plain notation
/// with its trailing zeros dropped but one decimal kept (`20.0`, `10.5`, `151971849992146.57`):
/// the same text a float gave for every value a float holds exactly.
pub fn serialize_money<S: Serializer>(
    value: &BigDecimal,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    use serde::Serialize;
    let number: serde_json::Number = money_text(value).parse().map_err(S::Error::custom)?;
    number.serialize(serializer)
}

/// The JSON text of an amount (see [`serialize_money`]).
pub fn money_text(value: &BigDecimal) -> String {
    let plain = value.to_plain_string();
    let (whole, fraction) = plain.split_once('.').unwrap_or((&plain, ""));
    let fraction = fraction.trim_end_matches('0');
    format!(
        "{whole}.{}",
        if fraction.is_empty() { "0" } else { fraction }
    )
}

pub fn serialize_optional_money<S: Serializer>(
    value: &Option<BigDecimal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serialize_money(value, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_exactly_in_plain_notation() {
        let text = |value: &str| money_text(&value.parse::<BigDecimal>().unwrap());
        assert_eq!(text("20.00"), "20.0");
        assert_eq!(text("10.50"), "10.5");
        assert_eq!(text("0"), "0.0");
        assert_eq!(text("151971849992146.57"), "151971849992146.57");
        assert_eq!(text("1E+3"), "1000.0");
        assert_eq!(text("999999999999.99"), "999999999999.99");
        let json = serde_json::to_string(&Money("151971849992146.57".parse().unwrap())).unwrap();
        assert_eq!(json, "151971849992146.57");
    }

    #[derive(serde::Serialize)]
    struct Money(#[serde(serialize_with = "serialize_money")] BigDecimal);

    #[test]
    fn database_urls() {
        let url = "postgres://u:p@host:5432/crm?sslmode=disable";
        assert_eq!(database_name(url).as_deref(), Some("crm"));
        assert_eq!(
            with_database(url, "postgres"),
            "postgres://u:p@host:5432/postgres?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://localhost", "x"),
            "postgres://localhost/x"
        );
        assert_eq!(database_name("postgres://localhost/"), None);
    }
}
