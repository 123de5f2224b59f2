//! What every request handler shares, built once at start.

use std::sync::Arc;

use crate::auth::TenantId;
use crate::cache::Cache;
use crate::db::share::TenantShares;
use crate::db::Pool;
use crate::domain::cursor::CursorCodec;
use crate::metrics::Metrics;
use crate::relay::Outbox;

impl AppState {
    /// A pooled connection for `tenant`'s work, bounded by `db_timeout` and counted against the
    /// tenant's share of the pool (`429` past it).
    pub async fn db(
        &self,
        tenant: TenantId,
    ) -> Result<crate::db::Checkout, crate::errors::ApiError> {
        let share = self.shares.acquire(tenant).await?;
        Ok(crate::db::Checkout::get(&self.pool, self.db_timeout, share).await?)
    }
}

/// Shared state of one process, cloned (as `web::Data`) into every worker.
pub struct AppState {
    pub pool: Pool,
    /// Each tenant's share of `pool`.
    pub shares: TenantShares,
    /// Where writers hand back outbox rows Redis acknowledged.
    pub outbox: Outbox,
    pub cursors: CursorCodec,
    pub cache: Arc<Cache>,
    /// Longest any request's database work may take (statement timeout plus a margin).
    pub db_timeout: std::time::Duration,
    /// Longest a request body may take to arrive (`HTTP_BODY_TIMEOUT_MS`).
    pub body_timeout: std::time::Duration,
    pub metrics: Arc<Metrics>,
    /// The warms under way (`POST /api/v2/cache/warm`).
    pub warming: Warming,
}

/// Warms of the cache: at most one per tenant at a time (a call while one runs joins it), and at
/// most [`Warming::CONCURRENT`] running on this instance, the rest waiting their turn.
#[derive(Clone)]
pub struct Warming {
    tenants: Arc<std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// A tenant's warm under way; ends it when dropped (also when the warm fails or panics).
pub struct WarmTurn {
    warming: Warming,
    tenant: TenantId,
}

impl Default for Warming {
    fn default() -> Self {
        Warming {
            tenants: Default::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(Self::CONCURRENT)),
        }
    }
}

impl Warming {
    /// Warms running at once on one instance.
    pub const CONCURRENT: usize = 2;

    /// Starts `tenant`'s warm; `None` when one is already under way (the caller joins it).
    pub fn start(&self, tenant: TenantId) -> Option<WarmTurn> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tenants.insert(tenant.0).then(|| WarmTurn {
            warming: self.clone(),
            tenant,
        })
    }
}

impl WarmTurn {
    /// Waits until this instance runs fewer than [`Warming::CONCURRENT`] warms.
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.warming.slots.clone().acquire_owned().await.ok()
    }
}

impl Drop for WarmTurn {
    fn drop(&mut self) {
        self.warming
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.tenant.0);
    }
}
