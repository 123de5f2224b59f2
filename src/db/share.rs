//! Fair shares of the connection pool between tenants: one tenant holds at most a fixed number
//! of pooled connections at once (`TENANT_MAX_DB_SHARE` of the pool), so a tenant that floods
//! the service waits for itself, briefly, and is then told to come back later (`429`), while the
//! others keep the rest of the pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::error::Error;
use crate::domain::TenantId;

/// How long work past its tenant's share waits for one of that tenant's connections to come
/// back before it is refused: long enough for a dashboard's burst of parallel reads.
const WAIT: Duration = Duration::from_millis(250);
/// What a refused client is asked to wait (`Retry-After`, seconds).
const RETRY_AFTER_SECS: u64 = 1;
/// Past this many tenants in the map, the idle ones are dropped.
const TIDY_AT: usize = 10_000;

/// The per-tenant limits of one process.
pub struct TenantShares {
    per_tenant: usize,
    tenants: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

/// One of a tenant's connections, held as long as the work that uses it.
pub struct SharePermit {
    _permit: OwnedSemaphorePermit,
}

impl TenantShares {
    /// `share` of a pool of `pool_size` connections, at least one.
    pub fn new(pool_size: usize, share: f64) -> Self {
        let share = if share.is_finite() { share } else { 1.0 };
        let per_tenant = ((pool_size as f64 * share).floor() as usize).clamp(1, pool_size.max(1));
        TenantShares {
            per_tenant,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// How many connections one tenant may hold at once.
    pub fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    /// Takes one of `tenant`'s connections, waiting briefly; `429 too_many_requests` if the
    /// tenant still holds all of them.
    pub async fn acquire(&self, tenant: TenantId) -> Result<SharePermit, Error> {
        let semaphore = self.semaphore(tenant);
        match tokio::time::timeout(WAIT, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(SharePermit { _permit: permit }),
            _ => Err(Error::Busy(RETRY_AFTER_SECS)),
        }
    }

    fn semaphore(&self, tenant: TenantId) -> Arc<Semaphore> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tenants.len() >= TIDY_AT {
            // Idle: nobody waits on it and every permit is back.
            tenants.retain(|_, semaphore| {
                Arc::strong_count(semaphore) > 1 || semaphore.available_permits() < self.per_tenant
            });
        }
        tenants
            .entry(tenant.0)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_a_whole_number_of_connections_at_least_one() {
        assert_eq!(TenantShares::new(16, 0.25).per_tenant(), 4);
        assert_eq!(TenantShares::new(4, 0.25).per_tenant(), 1);
        assert_eq!(TenantShares::new(4, 0.0).per_tenant(), 1);
        assert_eq!(TenantShares::new(4, 5.0).per_tenant(), 4);
        assert_eq!(TenantShares::new(10, f64::NAN).per_tenant(), 10);
    }

    #[tokio::test]
    async fn a_tenant_past_its_share_is_refused_while_another_is_not() {
        let shares = TenantShares::new(8, 0.25);
        let (busy, other) = (TenantId(Uuid::new_v4()), TenantId(Uuid::new_v4()));
        let held = [
            shares.acquire(busy).await.unwrap(),
            shares.acquire(busy).await.unwrap(),
        ];
        assert!(matches!(shares.acquire(busy).await, Err(Error::Busy(_))));
        assert!(shares.acquire(other).await.is_ok());
        drop(held);
        assert!(shares.acquire(busy).await.is_ok());
    }
}
