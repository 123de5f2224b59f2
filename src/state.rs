//! What every request handler shares, built once at start.

use crate::db::Pool;
use crate::domain::cursor::CursorCodec;

/// Shared state of one process, cloned (as `web::Data`) into every worker.
pub struct AppState {
    pub pool: Pool,
    pub cursors: CursorCodec,
    /// `None` in single-instance mode (`REDIS_URL=none`).
    pub redis: Option<redis::Client>,
}
