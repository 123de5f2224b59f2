//! The two-tier response cache: L1 (moka, in process) in front of L2 (Redis, shared), keyed by
//! MD5 over tenant, module, operation, canonical parameters and the generations of every module
//! the answer depends on. A write bumps generations (one `HINCRBY` per module, one `PUBLISH`),
//! so invalidation is O(1) whatever the number of cached keys, and an answer computed before a
//! write can only ever be stored under a key no later reader asks for (no stale-set race).

pub mod bus;
pub mod entry;
pub mod flight;
pub mod flush;
pub mod key;
pub mod l1;
pub mod l2;
pub mod middleware;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use rand::Rng;
use uuid::Uuid;

use crate::auth::TenantId;
use crate::config::Config;
use crate::metrics::{Metrics, Tier};
use entry::Entry;
use flight::Flights;
use key::{
    cache_key, dependency_generations, module_index, Generations, Key, TenantGenerations, MODULES,
};
use l1::L1;
use l2::{Redis, Via};

/// A cached answer found for a request.
pub enum Found {
    Fresh(Tier, Arc<Entry>),
    /// Past its TTL but within fail-safe: served only if the database cannot answer.
    Stale(Arc<Entry>),
    Absent,
}

/// Everything needed to find or store one answer.
pub struct Lookup {
    pub tenant: TenantId,
    pub module: &'static str,
    pub operation: &'static str,
    pub key: Key,
    pub ttl: Duration,
}

/// Answers larger than this are served but not cached.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;

pub struct Cache {
    pub enabled: bool,
    pub l1: L1,
    /// `None` in single-instance mode.
    pub redis: Option<Redis>,
    generations: Generations,
    pub flights: Flights,
    /// Counts writes invalidated only here while Redis counted as down. Held while Redis comes
    /// back up, so that no such write slips between the relay of the outbox and going up.
    degraded_writes: Mutex<u64>,
    pub metrics: Arc<Metrics>,
    /// Skips our own bus messages.
    pub instance: Uuid,
    ttl_overrides: HashMap<String, u64>,
    fail_safe: Duration,
    degraded_ttl: Duration,
    max_entry_bytes: usize,
}

impl Cache {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, redis::RedisError> {
        let redis = match config.redis_target() {
            Some(target) => Some(Redis::new(
                target,
                &config.cache_key_prefix,
                Duration::from_millis(config.redis_timeout_ms),
            )?),
            None => None,
        };
        let max_bytes = config.cache_l1_max_mb.saturating_mul(1024 * 1024);
        Ok(Cache {
            enabled: config.cache_enabled,
            l1: L1::new(max_bytes),
            redis,
            generations: Generations::default(),
            flights: Flights::default(),
            degraded_writes: Mutex::new(0),
            metrics,
            instance: Uuid::new_v4(),
            ttl_overrides: config.cache_ttl_overrides.clone(),
            fail_safe: Duration::from_secs(config.cache_fail_safe_secs),
            degraded_ttl: Duration::from_secs(config.cache_degraded_l1_ttl_secs),
            // One answer may take at most an eighth of L1; with L1 off (0 MB) only L2 bounds it.
            max_entry_bytes: if max_bytes == 0 {
                MAX_ENTRY_BYTES
            } else {
                MAX_ENTRY_BYTES.min((max_bytes / 8) as usize)
            },
        })
    }

    /// The TTL of `module`/`operation`: `CACHE_TTL_<MODULE>_<OPERATION>` or the route's default.
    pub fn ttl(&self, module: &str, operation: &str, default_secs: u64) -> Duration {
        // Asked on every cached request: compared in place rather than formatting a name.
        let upper = |name: &[u8], lower: &str| {
            name.len() == lower.len()
                && name
                    .iter()
                    .zip(lower.bytes())
                    .all(|(&a, b)| a == b.to_ascii_uppercase())
        };
        let named = |name: &str| {
            let name = name.as_bytes();
            name.len() == module.len() + 1 + operation.len()
                && name[module.len()] == b'_'
                && upper(&name[..module.len()], module)
                && upper(&name[module.len() + 1..], operation)
        };
        let secs = self
            .ttl_overrides
            .iter()
            .find(|(name, _)| named(name))
            .map_or(default_secs, |(_, secs)| *secs);
        Duration::from_secs(secs)
    }

    pub fn fail_safe_enabled(&self) -> bool {
        !self.fail_safe.is_zero()
    }

    /// `up`, `down` or `disabled`.
    pub fn redis_state(&self) -> &'static str {
        match &self.redis {
            None => "disabled",
            Some(redis) if redis.is_up() => "up",
            Some(_) => "down",
        }
    }

    fn degraded(&self) -> bool {
        self.redis.as_ref().is_some_and(|redis| !redis.is_up())
    }

    /// An invalidation did not reach Redis: run degraded until the bus reconnects and replays it.
    fn redis_failed(&self, error: &redis::RedisError) {
        if let Some(redis) = &self.redis {
            if redis.set_up(false) {
                log::warn!("[Cache] Redis unreachable ({error}); serving from L1 and PostgreSQL");
                // Invalidations from other instances cannot reach us now: keep L1 short-lived.
                self.l1.clear();
            }
        }
    }

    async fn generations_of(&self, tenant: TenantId) -> TenantGenerations {
        let (known, fence) = self.generations.get(tenant);
        if let Some(known) = known {
            return known;
        }
        let fetched = match &self.redis {
            Some(redis) if redis.is_up() => match redis.generations(tenant).await {
                Ok(fetched) => fetched,
                // A namespace of this request only, not remembered: the next one asks again.
                Err(_) => return TenantGenerations::fresh(),
            },
            _ => TenantGenerations::fresh(),
        };
        self.generations.store_fetched(tenant, fetched, fence)
    }

    /// The key of an answer as of now: its generations are read before the query runs.
    pub async fn lookup(
        &self,
        tenant: TenantId,
        module: &'static str,
        operation: &'static str,
        params: &[(&str, Cow<'_, str>)],
        ttl: Duration,
    ) -> Lookup {
        let all = self.generations_of(tenant).await;
        let generations = dependency_generations(module, &all.modules);
        Lookup {
            tenant,
            module,
            operation,
            key: cache_key(tenant, module, operation, params, all.epoch, generations),
            ttl,
        }
    }

    /// How long L1 may keep an entry: its whole life, or the degraded bound while Redis is down.
    fn l1_lifetime(&self, entry: &Entry) -> Duration {
        let remaining = entry.remaining();
        if self.degraded() {
            remaining.min(self.degraded_ttl)
        } else {
            remaining
        }
    }

    /// Looks in L1, then L2 (promoting an L2 hit into L1).
    pub async fn find(&self, lookup: &Lookup) -> Found {
        let mut stale = None;
        if let Some(entry) = self.l1.get(&lookup.key).await {
            if entry.is_fresh() {
                return Found::Fresh(Tier::L1, entry);
            }
            if entry.is_servable_stale() {
                stale = Some(entry);
            }
        }
        if let Some(redis) = self.redis.as_ref().filter(|redis| redis.is_up()) {
            match redis.get(lookup.tenant, &lookup.key).await {
                Ok(Some(entry)) if entry.is_fresh() => {
                    let entry = Arc::new(entry);
                    self.l1
                        .insert(lookup.key, entry.clone(), self.l1_lifetime(&entry))
                        .await;
                    return Found::Fresh(Tier::L2, entry);
                }
                Ok(Some(entry)) if stale.is_none() && entry.is_servable_stale() => {
                    stale = Some(Arc::new(entry));
                }
                // A failed read is a miss; only the bus decides that Redis is down.
                Ok(_) | Err(_) => {}
            }
        }
        match stale {
            Some(entry) => Found::Stale(entry),
            None => Found::Absent,
        }
    }

    /// Stores a fresh 200 body in both tiers; `None` when it is too large to cache.
    pub async fn store(
        &self,
        lookup: &Lookup,
        body: Bytes,
        content_type: HeaderValue,
    ) -> Option<Arc<Entry>> {
        if body.len() > self.max_entry_bytes {
            return None;
        }
        // Up to 10 % less, so that entries filled together do not all expire together.
        let jitter = rand::thread_rng().gen_range(0.9..=1.0);
        let entry = Arc::new(Entry::new(
            body,
            content_type,
            lookup.ttl.mul_f64(jitter),
            self.fail_safe,
        ));
        self.l1
            .insert(lookup.key, entry.clone(), self.l1_lifetime(&entry))
            .await;
        if let Some(redis) = self.redis.as_ref().filter(|redis| redis.is_up()) {
            // A failed write only leaves L2 without the entry.
            let _ = redis.set(lookup.tenant, &lookup.key, &entry).await;
        }
        Some(entry)
    }

    /// Whether writes record their invalidation in the outbox: whenever there are other
    /// instances to tell (Redis is configured).
    pub fn uses_outbox(&self) -> bool {
        self.redis.is_some()
    }

    /// Evicts the tenant's answers of `modules` (and of everything depending on them) on every
    /// instance: bumps their generations in Redis and tells the other instances. Called after a
    /// write that may have committed, before its answer is sent. Whether Redis acknowledged both
    /// (the write's outbox row may then go); if not, this instance still shows the write at
    /// once, and the outbox relay tells the others.
    pub async fn invalidate(
        &self,
        tenant: TenantId,
        modules: &[&str],
        committed_at: SystemTime,
    ) -> bool {
        let indexes: Vec<usize> = modules.iter().filter_map(|m| module_index(m)).collect();
        let acknowledged = match self.redis.as_ref() {
            Some(redis) if redis.is_up() => {
                match self
                    .tell(redis, Via::Worker, tenant, &indexes, committed_at)
                    .await
                {
                    Ok(()) => true,
                    Err(error) => {
                        // The others may miss this write until the relay delivers it, and so
                        // may this instance miss theirs: degraded until the bus reconnects.
                        self.redis_failed(&error);
                        self.write_while_degraded(tenant);
                        false
                    }
                }
            }
            Some(_) => {
                self.write_while_degraded(tenant);
                false
            }
            None => {
                self.generations.bump(tenant, &indexes);
                false
            }
        };
        for &index in &indexes {
            self.metrics.invalidation(MODULES[index], false);
            log::info!(
                "[Cache] Invalidated: {} for tenant {tenant}",
                MODULES[index]
            );
        }
        acknowledged
    }

    /// Relays one outbox row: what a write (perhaps of another instance, perhaps dead) must
    /// invalidate. Applied here too, since an instance skips its own bus messages.
    pub async fn relay(
        &self,
        tenant: TenantId,
        modules: &[String],
        committed_at: SystemTime,
    ) -> redis::RedisResult<()> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let indexes: Vec<usize> = modules.iter().filter_map(|m| module_index(m)).collect();
        self.tell(redis, Via::Shared, tenant, &indexes, committed_at)
            .await?;
        self.observe_lag(micros_since_epoch(committed_at));
        for &index in &indexes {
            self.metrics.invalidation(MODULES[index], true);
            log::info!(
                "[Cache] Invalidated: {} for tenant {tenant} (relayed)",
                MODULES[index]
            );
        }
        Ok(())
    }

    /// Increments in Redis, applies the result here and publishes it.
    async fn tell(
        &self,
        redis: &Redis,
        via: Via,
        tenant: TenantId,
        indexes: &[usize],
        committed_at: SystemTime,
    ) -> redis::RedisResult<()> {
        let after = self.increment(redis, via, tenant, indexes).await?;
        let message = bus::Message {
            v: bus::VERSION,
            from: self.instance,
            tenant: Some(tenant.0),
            epoch: after.epoch,
            gens: indexes
                .iter()
                .map(|&index| (MODULES[index].to_owned(), after.modules[index]))
                .collect(),
            flush: false,
            at_us: micros_since_epoch(committed_at),
        };
        let text = serde_json::to_string(&message)
            .map_err(|error| redis::RedisError::from(std::io::Error::other(error)))?;
        redis.publish(via, &text).await
    }

    /// From a write's commit (`at_us`, 0 when unknown) until now, as the invalidation lag.
    fn observe_lag(&self, at_us: u64) {
        if at_us > 0 {
            let lag = micros_since_epoch(SystemTime::now()).saturating_sub(at_us);
            self.metrics.invalidation_lag(Duration::from_micros(lag));
        }
    }

    /// Increments in Redis and applies the result here. Within one epoch an increment answers
    /// more than any value read before it was sent; an answer that is not means the server went
    /// back (it lost writes), so the tenant's namespace is started over.
    async fn increment(
        &self,
        redis: &Redis,
        via: Via,
        tenant: TenantId,
        indexes: &[usize],
    ) -> redis::RedisResult<TenantGenerations> {
        let before = self.generations.get(tenant).0;
        let mut after = redis.increment(via, tenant, indexes).await?;
        let went_back = before.is_some_and(|before| {
            before.epoch == after.epoch
                && indexes
                    .iter()
                    .any(|&index| after.modules[index] <= before.modules[index])
        });
        if went_back {
            log::warn!(
                "[Cache] Redis lost generations of tenant {tenant}; starting its namespace over"
            );
            after = redis.leave_epoch(via, tenant, after.epoch, indexes).await?;
        }
        let updates: Vec<(usize, u64)> = indexes
            .iter()
            .map(|&index| (index, after.modules[index]))
            .collect();
        self.generations.apply(tenant, after.epoch, &updates);
        Ok(after)
    }

    /// A write this instance could not tell Redis about: its later reads use a namespace of
    /// their own (a new random epoch no other instance or L2 entry has), so they show the write
    /// at once; the outbox relay tells the others.
    fn write_while_degraded(&self, tenant: TenantId) {
        let mut count = self
            .degraded_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generations.detach(tenant);
        *count += 1;
    }

    /// Applies a bus message from another instance.
    pub fn apply_message(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<bus::Message>(payload) else {
            log::warn!("[Cache] ignoring a malformed bus message");
            return;
        };
        if message.v != bus::VERSION || message.from == self.instance {
            return;
        }
        if message.flush {
            // `cache flush` removed the generations too: every namespace starts over, and
            // loads already under way store under keys of the old ones.
            self.generations.clear();
            self.l1.clear();
            log::info!("[Cache] Flushed L1 (remote)");
            return;
        }
        let Some(tenant) = message.tenant.map(TenantId) else {
            return;
        };
        let updates: Vec<(usize, u64)> = message
            .gens
            .iter()
            .filter_map(|(module, value)| module_index(module).map(|index| (index, *value)))
            .collect();
        self.generations.apply(tenant, message.epoch, &updates);
        self.observe_lag(message.at_us);
        for &(index, _) in &updates {
            self.metrics.invalidation(MODULES[index], true);
            log::info!(
                "[Cache] Invalidated: {} for tenant {tenant} (remote)",
                MODULES[index]
            );
        }
    }

    /// How many writes were invalidated only here so far (see [`Self::come_up`]).
    pub fn degraded_writes(&self) -> u64 {
        *self
            .degraded_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bus (re)subscribed and the outbox was relayed: forget what may have been missed
    /// (generations, all of L1) and only then count Redis as up, so that no answer from before
    /// the reconnect is served as current. Refused (false) when a write was invalidated only
    /// here since `degraded_writes` was read: the relay may not have seen its row, so the
    /// caller relays again first.
    pub fn come_up(&self, degraded_writes: u64) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        let count = self
            .degraded_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *count != degraded_writes {
            return false;
        }
        self.generations.clear();
        self.l1.clear();
        redis.set_up(true);
        self.metrics.bus_connected.set(1);
        log::info!("[Cache] Redis connected: L2 and bus active, L1 dropped once");
        true
    }

    pub fn bus_lost(&self) {
        self.metrics.bus_connected.set(0);
        if let Some(redis) = &self.redis {
            if redis.set_up(false) {
                log::warn!("[Cache] Redis bus lost; serving from L1 and PostgreSQL");
                self.l1.clear();
            }
        }
    }

    /// Refreshes the L1 gauges (before /metrics renders).
    pub async fn update_gauges(&self) {
        self.l1.settle().await;
        self.metrics.l1_entries.set(self.l1.entries() as i64);
        self.metrics.l1_bytes.set(self.l1.bytes() as i64);
    }

    /// The `[Cache] Stats:` line.
    pub fn log_stats(&self) {
        let (l1, l2, misses, rate) = self.metrics.hit_counts();
        log::info!(
            "[Cache] Stats: hits={} (l1={l1}, l2={l2}) misses={misses} hit_rate={:.1}% l1_entries={} l1_bytes={} redis={}",
            l1 + l2,
            rate * 100.0,
            self.l1.entries(),
            self.l1.bytes(),
            self.redis_state()
        );
    }
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// Logs the `[Cache] Stats:` line every `period` until the process ends.
pub async fn log_stats_every(cache: Arc<Cache>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        cache.update_gauges().await;
        cache.log_stats();
    }
}
