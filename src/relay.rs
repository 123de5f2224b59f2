//! The outbox relay: the one durable path of every invalidation. A write's transaction records
//! what it must invalidate (`db::outbox`); its writer tells Redis right after COMMIT and hands
//! the row back here once Redis acknowledged both the increment and the publish, to be deleted.
//! Every live instance also relays rows left behind (a writer killed between COMMIT and telling
//! Redis, one that lost Redis at that moment, one cut off from Redis while it keeps writing), so
//! every other instance shows a committed write within a second of its commit. Failures back
//! off instead of spinning.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use diesel_async::{AnsiTransactionManager, TransactionManager};
use tokio::sync::mpsc;

use crate::cache::Cache;
use crate::db::{outbox, BoxError, Pool};
use crate::domain::TenantId;

/// A writer has this long to tell Redis itself before the relays of every instance do.
const WRITER_GRACE: Duration = Duration::from_millis(300);
/// How often each instance looks for rows left behind.
const PERIOD: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Rows one pass relays.
const BATCH: i64 = 200;
/// Bound on one pass (its database work and its Redis commands).
const PASS_TIMEOUT: Duration = Duration::from_secs(5);
/// Acknowledged rows are deleted together, this often.
const DELETE_EVERY: Duration = Duration::from_millis(50);

/// The handle writers hand acknowledged rows to.
#[derive(Clone)]
pub struct Outbox {
    acknowledged: mpsc::UnboundedSender<i64>,
}

impl Outbox {
    /// Starts the deleter and the relay of this instance (no relay without Redis: nobody else
    /// needs telling, and writes then record no rows).
    pub fn start(pool: Pool, cache: Arc<Cache>) -> Outbox {
        let (acknowledged, rows) = mpsc::unbounded_channel();
        if cache.uses_outbox() {
            tokio::spawn(delete_acknowledged(pool.clone(), rows));
            tokio::spawn(relay_left_behind(pool, cache));
        }
        Outbox { acknowledged }
    }

    /// Redis acknowledged the invalidation of `row`: it may go.
    pub fn acknowledged(&self, row: i64) {
        // The deleter is gone only while the process stops; a row left then is relayed again
        // by someone, which costs one more invalidation and nothing else.
        let _ = self.acknowledged.send(row);
    }
}

async fn delete_acknowledged(pool: Pool, mut rows: mpsc::UnboundedReceiver<i64>) {
    let mut backoff = DELETE_EVERY;
    while let Some(first) = rows.recv().await {
        tokio::time::sleep(DELETE_EVERY).await;
        let mut ids = vec![first];
        while let Ok(row) = rows.try_recv() {
            ids.push(row);
        }
        loop {
            match delete(&pool, &ids).await {
                Ok(()) => {
                    backoff = DELETE_EVERY;
                    break;
                }
                Err(error) => {
                    log::debug!("[Cache] outbox rows not deleted yet: {error}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

async fn delete(pool: &Pool, ids: &[i64]) -> Result<(), BoxError> {
    let work = async {
        let mut conn = pool.get().await?;
        outbox::remove(&mut conn, ids).await?;
        Ok::<_, BoxError>(())
    };
    tokio::time::timeout(PASS_TIMEOUT, work)
        .await
        .map_err(|_| "deleting outbox rows timed out")?
}

async fn relay_left_behind(pool: Pool, cache: Arc<Cache>) {
    let mut wait = PERIOD;
    loop {
        tokio::time::sleep(wait).await;
        if cache.redis_state() != "up" {
            // The reconnect relays everything before the instance counts Redis as up.
            wait = PERIOD;
            continue;
        }
        let before = Utc::now() - WRITER_GRACE;
        wait = match relay_pass(&pool, &cache, before).await {
            // A full batch: more may wait.
            Ok(relayed) if relayed as i64 == BATCH => Duration::ZERO,
            Ok(_) => PERIOD,
            Err(error) => {
                log::warn!("[Cache] outbox relay failed ({error}); retrying in {wait:?}");
                (wait * 2).clamp(PERIOD, MAX_BACKOFF)
            }
        };
    }
}

/// Relays every row waiting, whatever its age; false when that failed. Run on every reconnect,
/// before the instance counts Redis as up.
pub async fn relay_all(pool: &Pool, cache: &Cache) -> bool {
    loop {
        match relay_pass(pool, cache, Utc::now()).await {
            Ok(relayed) if (relayed as i64) < BATCH => return true,
            Ok(_) => {}
            Err(error) => {
                log::debug!("outbox relay failed: {error}");
                return false;
            }
        }
    }
}

/// Relays up to [`BATCH`] rows recorded before `before` and deletes those Redis acknowledged,
/// in one transaction that keeps other relays off them; how many it relayed.
async fn relay_pass(
    pool: &Pool,
    cache: &Cache,
    before: chrono::DateTime<Utc>,
) -> Result<usize, BoxError> {
    let pass = async {
        let mut conn = pool.get().await?;
        let conn: &mut diesel_async::AsyncPgConnection = &mut conn;
        AnsiTransactionManager::begin_transaction(conn).await?;
        let relayed = async {
            let rows = outbox::lock_pending(conn, before, BATCH).await?;
            let mut done = Vec::with_capacity(rows.len());
            let mut failed = None;
            for row in &rows {
                let committed_at = SystemTime::from(row.committed_at);
                match cache
                    .relay(TenantId(row.tenant_id), &row.tags(), committed_at, row.id)
                    .await
                {
                    Ok(()) => done.push(row.id),
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
            if !done.is_empty() {
                outbox::remove(conn, &done).await?;
            }
            Ok::<_, BoxError>((done.len(), failed))
        }
        .await;
        match relayed {
            Ok((relayed, failed)) => {
                AnsiTransactionManager::commit_transaction(conn).await?;
                match failed {
                    Some(error) => Err(error.into()),
                    None => Ok(relayed),
                }
            }
            Err(error) => {
                let _ = AnsiTransactionManager::rollback_transaction(conn).await;
                Err(error)
            }
        }
    };
    tokio::time::timeout(PASS_TIMEOUT, pass)
        .await
        .map_err(|_| "an outbox relay pass timed out")?
}
