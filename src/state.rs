//! What every request handler shares, built once at start.

use std::sync::Arc;

use crate::cache::Cache;
use crate::db::Pool;
use crate::domain::cursor::CursorCodec;
use crate::metrics::Metrics;
use crate::relay::Outbox;

impl AppState {
    /// A pooled connection whose work is bounded by `db_timeout`.
    pub async fn db(&self) -> Result<crate::db::Checkout, crate::errors::ApiError> {
        crate::db::Checkout::get(&self.pool, self.db_timeout).await
    }
}

/// Shared state of one process, cloned (as `web::Data`) into every worker.
pub struct AppState {
    pub pool: Pool,
    /// Where writers hand back outbox rows Redis acknowledged.
    pub outbox: Outbox,
    pub cursors: CursorCodec,
    pub cache: Arc<Cache>,
    /// Longest any request's database work may take (statement timeout plus a margin).
    pub db_timeout: std::time::Duration,
    /// Longest a request body may take to arrive (`HTTP_BODY_TIMEOUT_MS`).
    pub body_timeout: std::time::Duration,
    pub metrics: Arc<Metrics>,
}
