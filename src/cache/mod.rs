//! The two-tier response cache: L1 (moka, in process) in front of L2 (Redis, shared), keyed by
//! MD5 over tenant, module, operation, canonical parameters and the tenant's epoch. Each answer
//! carries its cache tags (the records it contains, the sets it enumerates) and the write number
//! it was built as of; a write numbers itself and the tags it changed (one script call, one
//! `PUBLISH`), and an answer is served only while none of its tags changed after it was built
//! ([`versions`]), checked against versions held in memory. Invalidation is O(1) whatever the
//! number of cached keys, and an answer computed before a write is never current after it,
//! whoever stores it (no stale-set race).
//!
//! The front is small: build a [`Cache`] from its [`Settings`] with [`Cache::builder`], read
//! through [`Cache::get_or_load`], tell it about writes with [`Cache::invalidate`], and run its
//! bus with [`Cache::run_bus`]. Everything else is private to this module.

mod builder;
mod bus;
mod entry;
mod error;
mod flight;
mod flush;
mod invalidation;
mod key;
mod l1;
mod l2;
mod ttl;
mod versions;

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use rand::Rng;
use uuid::Uuid;

pub use builder::{CacheBuilder, Settings, Target};
pub use entry::Entry;
pub use error::CacheError;
pub use flush::flush;
pub use key::{cache_key, Key};

use crate::domain::tags::Tag;
use crate::domain::{Module, Operation, TenantId};
use crate::metrics::{Metrics, Outcome, Tier};
use flight::{Flights, Role};
use l1::L1;
use l2::Redis;
use ttl::Ttls;
use versions::{Dependencies, Fetched, Stamp, Versions};

/// How a read uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// L1, then L2, then the loader (a miss).
    Cached,
    /// `Cache-Control: no-cache`: past both tiers to the loader, and the answer stored.
    Fresh,
    /// A warm: loads and stores what is not cached yet, counted as no request.
    Warm,
}

/// Which answer a read wants.
pub struct Lookup<'a> {
    pub tenant: TenantId,
    pub module: Module,
    pub operation: Operation,
    /// The query in canonical form ([`crate::domain::query::Params`]).
    pub params: &'a [(&'static str, Cow<'a, str>)],
    /// The route's TTL, unless `CACHE_TTL_<MODULE>_<OPERATION>` replaces it.
    pub ttl: Duration,
    pub read: Read,
}

/// Where an answer came from, as `X-Cache` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Hit(Tier),
    Miss,
    /// Loaded past the cache: a `no-cache` read, or the cache turned off.
    Bypass,
    /// Past its TTL, served because the loader's store was unavailable.
    Stale,
}

/// What [`Cache::get_or_load`] answers.
pub struct Answer {
    pub entry: Arc<Entry>,
    pub source: Source,
    /// Whether this read stored the entry (a warm counts what it filled).
    pub stored: bool,
}

/// What a loader answers [`Cache::get_or_load`]: the body and the tags it depends on besides
/// its module's own. An answer made of other cached answers depends on what they depend on: it
/// is fresh only as long as every part is, and a part served stale makes it stale.
pub struct Composition {
    pub body: Bytes,
    /// Read by this load, as of the number its read began at.
    tags: Vec<Tag>,
    /// What the parts depend on, as of the numbers they were built at.
    parts: Vec<(Tag, u64)>,
    fresh_until_ms: u64,
    stale: bool,
}

/// An answer that depends on its module's tag alone, fresh for its whole TTL.
impl From<Bytes> for Composition {
    fn from(body: Bytes) -> Self {
        Composition::tagged(body, Vec::new())
    }
}

impl Composition {
    /// An answer made of no other answer, depending on `tags` too.
    pub fn tagged(body: Bytes, tags: Vec<Tag>) -> Self {
        Composition {
            body,
            tags,
            parts: Vec::new(),
            fresh_until_ms: u64::MAX,
            stale: false,
        }
    }

    /// An answer made of `parts`.
    pub fn new(body: Bytes, parts: &[Answer]) -> Self {
        Composition {
            body,
            tags: Vec::new(),
            parts: parts
                .iter()
                .flat_map(|part| part.entry.dependencies.pairs().iter().copied())
                .collect(),
            fresh_until_ms: parts
                .iter()
                .map(|part| part.entry.fresh_until_ms)
                .min()
                .unwrap_or(u64::MAX),
            stale: parts.iter().any(|part| part.source == Source::Stale),
        }
    }

    /// The body, what it depends on (read as of `stamp` for a lookup of `module`) and until
    /// when it is fresh.
    fn into_parts(self, module: Module, stamp: Stamp) -> (Bytes, Dependencies, u64) {
        let mut pairs = self.parts;
        pairs.push((Tag::module(module), stamp.seq));
        pairs.extend(self.tags.iter().map(|&tag| (tag, stamp.seq)));
        (self.body, Dependencies::new(pairs), self.fresh_until_ms)
    }
}

/// What a loader's error tells the cache: whether the store behind it is unavailable, so that
/// an answer kept past its TTL (fail-safe) may stand in for it.
pub trait LoadError {
    fn unavailable(&self) -> bool;
}

/// What a lookup found in the tiers.
enum Found {
    Fresh(Tier, Arc<Entry>),
    /// Past its TTL but within fail-safe: served only if the loader cannot answer.
    Stale(Arc<Entry>),
    Absent,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Reads of a tenant's versions one lookup makes before it gives up on them.
const FETCH_ATTEMPTS: usize = 3;

/// The cache of one instance. Cheap to share (`Arc`); every method takes `&self`.
pub struct Cache {
    enabled: bool,
    l1: L1,
    /// `None` in single-instance mode.
    redis: Option<Redis>,
    versions: Versions,
    flights: Flights,
    /// Counts writes invalidated only here while Redis counted as down. Held while Redis comes
    /// back up, so that no such write slips between the relay of the outbox and going up.
    degraded_writes: Mutex<u64>,
    /// Outbox rows already applied here, so that a duplicate adds no lag sample.
    applied_rows: Mutex<invalidation::AppliedRows>,
    metrics: Arc<Metrics>,
    /// Skips our own bus messages.
    instance: Uuid,
    ttls: Ttls,
    fail_safe: Duration,
    degraded_ttl: Duration,
    max_entry_bytes: usize,
}

/// What the admin stats route and the stats log line show of the cache itself.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub enabled: bool,
    pub l1_entries: u64,
    pub l1_bytes: u64,
    pub l1_max_bytes: u64,
    /// `up`, `down` or `disabled`.
    pub redis: &'static str,
}

impl Cache {
    pub fn builder(settings: Settings) -> CacheBuilder {
        CacheBuilder::new(settings)
    }

    /// The answer `lookup` names: from L1, from L2, from a load of the same key already under
    /// way, or from `loader`, whose answer is then stored in both tiers. When the loader fails
    /// because its store is unavailable, an entry past its TTL but within fail-safe answers
    /// instead; any other failure is the caller's to answer.
    ///
    /// The loader answers bytes, a [`Composition::tagged`] answer, or a [`Composition`] of
    /// other answers it read through the cache: that is stored only until the soonest of its parts stops being fresh, and not
    /// stored (but answered as `Stale`) when a part was served stale. One generic method rather
    /// than a wrapper: wrapping the loader in another future doubled what every read's future
    /// moves (an L1 hit of the list page: 62.3k instructions, 131.3k with two wrappers).
    pub async fn get_or_load<T: Into<Composition>, E: LoadError>(
        &self,
        lookup: &Lookup<'_>,
        loader: impl Future<Output = Result<T, E>>,
    ) -> Result<Answer, E> {
        if !self.enabled {
            let body = loader.await?.into().body;
            self.count(lookup, Outcome::Bypass, Tier::None);
            return Ok(Answer::uncached(body, Source::Bypass));
        }
        let (key, stamp) = self.key_of(lookup).await;
        let stale = match lookup.read {
            Read::Fresh => None,
            Read::Cached | Read::Warm => match self.find(lookup.tenant, &key, stamp).await {
                Found::Fresh(tier, entry) => return Ok(self.hit(lookup, tier, entry)),
                Found::Stale(entry) => Some(entry),
                Found::Absent => None,
            },
        };
        let (source, outcome) = match lookup.read {
            Read::Fresh => (Source::Bypass, Outcome::Bypass),
            Read::Cached | Read::Warm => (Source::Miss, Outcome::Miss),
        };

        // Overlapping loads of one key share one, fresh reads included: a client sending
        // `no-cache` on every request cannot multiply the queries. Only loads that began as of
        // the same write number are shared: such a load shows every write this read could have
        // seen.
        let leader = match self.flights.join((key, stamp.seq)) {
            Role::Leader(leader) => Some(leader),
            Role::Follower(receiver) => {
                if let Some(entry) = flight::wait(receiver).await {
                    self.count(lookup, outcome, Tier::None);
                    return Ok(Answer {
                        entry,
                        source,
                        stored: false,
                    });
                }
                None
            }
        };
        match loader.await.map(Into::into) {
            // Made of a part past its TTL: answered as such, never stored as fresh. Dropping the
            // leader releases its followers, which then load for themselves.
            Ok(composed) if composed.stale => {
                self.count(lookup, Outcome::Stale, Tier::None);
                Ok(Answer::uncached(composed.body, Source::Stale))
            }
            Ok(composed) => {
                self.count(lookup, outcome, Tier::None);
                if lookup.read == Read::Cached {
                    log_miss(lookup);
                }
                let (body, dependencies, fresh_until_ms) =
                    composed.into_parts(lookup.module, stamp);
                let stored = self
                    .store(lookup, &key, body.clone(), dependencies, fresh_until_ms)
                    .await;
                if let Some(leader) = leader {
                    leader.finish(stored.clone());
                }
                Ok(match stored {
                    Some(entry) => Answer {
                        entry,
                        source,
                        stored: true,
                    },
                    None => Answer::uncached(body, source),
                })
            }
            // Dropping the leader releases its followers, which then load for themselves.
            Err(error) => match stale {
                Some(entry)
                    if error.unavailable()
                        && !self.fail_safe.is_zero()
                        && lookup.read != Read::Warm =>
                {
                    Ok(self.stale(lookup, entry))
                }
                _ => Err(error),
            },
        }
    }

    /// A fresh entry found in a tier.
    fn hit(&self, lookup: &Lookup<'_>, tier: Tier, entry: Arc<Entry>) -> Answer {
        self.count(lookup, Outcome::Hit, tier);
        if lookup.read == Read::Cached {
            self.metrics
                .hit_age(lookup.module, lookup.operation, entry.age());
            log_hit(lookup, tier);
        }
        Answer {
            entry,
            source: Source::Hit(tier),
            stored: false,
        }
    }

    /// An entry past its TTL standing in for a loader whose store is unavailable.
    fn stale(&self, lookup: &Lookup<'_>, entry: Arc<Entry>) -> Answer {
        self.count(lookup, Outcome::Stale, Tier::None);
        log::warn!(
            "[Cache] Stale: {} {} for tenant {} (database unavailable or busy)",
            lookup.module,
            lookup.operation,
            lookup.tenant
        );
        Answer {
            entry,
            source: Source::Stale,
            stored: false,
        }
    }

    /// Whether reads go through the cache at all (`CACHE_ENABLED`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether writes record their invalidation in the outbox: whenever there are other
    /// instances to tell (Redis is configured).
    pub fn uses_outbox(&self) -> bool {
        self.redis.is_some()
    }

    /// The figures of the cache itself, L1's exact (pending evictions applied first).
    pub async fn stats(&self) -> Stats {
        self.l1.settle().await;
        Stats {
            enabled: self.enabled,
            l1_entries: self.l1.entries(),
            l1_bytes: self.l1.bytes(),
            l1_max_bytes: self.l1.max_bytes(),
            redis: self.redis_state(),
        }
    }

    /// Refreshes the L1 gauges (before `/metrics` renders).
    pub async fn update_gauges(&self) {
        let stats = self.stats().await;
        self.set_gauges(&stats);
    }

    fn set_gauges(&self, stats: &Stats) {
        self.metrics.l1_entries.set(stats.l1_entries as i64);
        self.metrics.l1_bytes.set(stats.l1_bytes as i64);
    }

    /// Logs the `[Cache] Stats:` line every `period` until the process ends.
    pub async fn log_stats_every(&self, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let stats = self.stats().await;
            self.set_gauges(&stats);
            let (l1, l2, misses, rate) = self.metrics.hit_counts();
            log::info!(
                "[Cache] Stats: hits={} (l1={l1}, l2={l2}) misses={misses} hit_rate={:.1}% l1_entries={} l1_bytes={} redis={}",
                l1 + l2,
                rate * 100.0,
                stats.l1_entries,
                stats.l1_bytes,
                stats.redis
            );
        }
    }

    /// `up`, `down` or `disabled` (single-instance mode).
    pub fn redis_state(&self) -> &'static str {
        match &self.redis {
            None => "disabled",
            Some(redis) if redis.is_up() => "up",
            Some(_) => "down",
        }
    }

    fn count(&self, lookup: &Lookup<'_>, outcome: Outcome, tier: Tier) {
        if lookup.read != Read::Warm {
            self.metrics
                .cache_request(lookup.module, lookup.operation, outcome, tier);
        }
    }

    /// What a read of `tenant` starts from: its versions as known here, read from Redis first
    /// when not known.
    async fn stamp_of(&self, tenant: TenantId) -> Stamp {
        // A read of Redis that something overtook (a write's message, of any tenant unknown
        // here) is made again: a bus busy with writes must not turn every first read into a miss.
        for _ in 0..FETCH_ATTEMPTS {
            let (known, fence) = self.versions.get(tenant);
            if let Some(known) = known {
                return known;
            }
            let fetched = match &self.redis {
                Some(redis) if redis.is_up() => match redis.versions(tenant).await {
                    Ok(fetched) => fetched,
                    Err(_) => break,
                },
                _ => Fetched::fresh(),
            };
            if let Some(stamp) = self.versions.store_fetched(tenant, fetched, fence) {
                return stamp;
            }
        }
        // A namespace of this request only, not remembered: the next one asks again.
        Stamp::detached()
    }

    /// The key of an answer and the stamp its read starts from, read before the loader runs.
    async fn key_of(&self, lookup: &Lookup<'_>) -> (Key, Stamp) {
        let stamp = self.stamp_of(lookup.tenant).await;
        let key = cache_key(
            lookup.tenant,
            lookup.module.name(),
            lookup.operation.name(),
            lookup.params,
            stamp.epoch,
        );
        (key, stamp)
    }

    /// Whether an entry found under a key of `stamp`'s epoch is still current.
    fn is_current(&self, tenant: TenantId, stamp: Stamp, entry: &Entry) -> bool {
        self.versions
            .is_current(tenant, stamp, &entry.dependencies, &entry.checked)
    }

    fn degraded(&self) -> bool {
        self.redis.as_ref().is_some_and(|redis| !redis.is_up())
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

    /// Looks in L1, then L2 (promoting an L2 hit into L1), for an entry that is still current:
    /// one whose tags changed since it was built is not there at all, also not as a stale one.
    async fn find(&self, tenant: TenantId, key: &Key, stamp: Stamp) -> Found {
        let mut stale = None;
        if let Some(entry) = self.l1.get(key).await {
            if self.is_current(tenant, stamp, &entry) {
                if entry.is_fresh() {
                    return Found::Fresh(Tier::L1, entry);
                }
                if entry.is_servable_stale() {
                    stale = Some(entry);
                }
            }
        }
        if let Some(redis) = self.redis.as_ref().filter(|redis| redis.is_up()) {
            match redis.get(tenant, key).await {
                Ok(Some(entry)) if !self.is_current(tenant, stamp, &entry) => {}
                Ok(Some(entry)) if entry.is_fresh() => {
                    let entry = Arc::new(entry);
                    self.l1
                        .insert(*key, entry.clone(), self.l1_lifetime(&entry))
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

    /// Stores a fresh body in both tiers, fresh no later than `fresh_until_ms`; `None` when it is
    /// too large to cache, or made of a part that was not stored (and so never fresh).
    async fn store(
        &self,
        lookup: &Lookup<'_>,
        key: &Key,
        body: Bytes,
        dependencies: Dependencies,
        fresh_until_ms: u64,
    ) -> Option<Arc<Entry>> {
        let until = Duration::from_millis(fresh_until_ms.saturating_sub(entry::now_ms()));
        if body.len() > self.max_entry_bytes || until.is_zero() {
            return None;
        }
        let ttl = self.ttls.of(lookup.module, lookup.operation, lookup.ttl);
        // Up to 10 % less, so that entries filled together do not all expire together.
        let jitter = rand::thread_rng().gen_range(0.9..=1.0);
        let entry = Arc::new(Entry::new(
            body,
            JSON.clone(),
            dependencies,
            ttl.mul_f64(jitter).min(until),
            self.fail_safe,
        ));
        self.l1
            .insert(*key, entry.clone(), self.l1_lifetime(&entry))
            .await;
        if let Some(redis) = self.redis.as_ref().filter(|redis| redis.is_up()) {
            // A failed write only leaves L2 without the entry.
            let _ = redis.set(lookup.tenant, key, &entry).await;
        }
        Some(entry)
    }
}

impl Answer {
    /// An answer served as loaded, not kept (the cache off, or too large to store).
    fn uncached(body: Bytes, source: Source) -> Answer {
        Answer {
            entry: Arc::new(Entry::uncached(body, JSON.clone())),
            source,
            stored: false,
        }
    }
}

fn log_hit(lookup: &Lookup<'_>, tier: Tier) {
    log::info!(
        "[Cache] Hit: {} {} for tenant {} ({})",
        lookup.module,
        lookup.operation,
        lookup.tenant,
        if tier == Tier::L2 { "L2" } else { "L1" }
    );
}

fn log_miss(lookup: &Lookup<'_>) {
    log::info!(
        "[Cache] Miss: {} {} for tenant {}",
        lookup.module,
        lookup.operation,
        lookup.tenant
    );
}
