//! L1: a moka cache in this process, bounded by the bytes of the bodies it holds, each entry
//! living as long as it may be served (fresh or fail-safe), or less while Redis is unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::entry::Entry;
use super::key::Key;

/// What L1 holds: the entry and how long L1 may keep it.
#[derive(Clone)]
pub struct Slot {
    pub entry: Arc<Entry>,
    pub lifetime: Duration,
}

struct SlotExpiry;

impl Expiry<Key, Slot> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        slot: &Slot,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(slot.lifetime)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        slot: &Slot,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.lifetime)
    }
}

#[derive(Clone)]
pub struct L1 {
    cache: Cache<Key, Slot>,
    max_bytes: u64,
}

impl L1 {
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &Key, slot: &Slot| slot.entry.weight())
            .expire_after(SlotExpiry)
            .build();
        L1 { cache, max_bytes }
    }

    pub async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.cache.get(key).await.map(|slot| slot.entry)
    }

    pub async fn insert(&self, key: Key, entry: Arc<Entry>, lifetime: Duration) {
        // `CACHE_L1_MAX_MB=0` turns L1 off.
        if lifetime.is_zero() || self.max_bytes == 0 {
            return;
        }
        self.cache.insert(key, Slot { entry, lifetime }).await;
    }

    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Applies pending evictions now, so that the counters above are exact.
    pub async fn settle(&self) {
        self.cache.run_pending_tasks().await;
    }
}
