//! What every request handler shares, built once at start.

use std::sync::Arc;

use crate::cache::Cache;
use crate::db::Pool;
use crate::domain::cursor::CursorCodec;
use crate::metrics::Metrics;

/// Shared state of one process, cloned (as `web::Data`) into every worker.
pub struct AppState {
    pub pool: Pool,
    pub cursors: CursorCodec,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
}
