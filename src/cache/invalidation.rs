//! Writes and the bus: how a write reaches every instance's cache, and how this instance runs
//! while Redis is down (degraded: L1 only, short-lived, writes kept in a namespace of its own)
//! and comes back up.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::bus::{self, Message};
use super::error::CacheError;
use super::l2::{Numbered, Redis, Via};
use super::Cache;
use crate::domain::tags::{modules_of, Tag};
use crate::domain::TenantId;

/// Outbox rows whose invalidation this instance has applied. A writer hands its row back for
/// deletion in batches, so a relay may deliver a row again after the writer's own message: the
/// write's lag is observed on its first arrival only, not again for the duplicate.
#[derive(Default)]
pub(super) struct AppliedRows {
    order: VecDeque<i64>,
    rows: HashSet<i64>,
}

/// Rows remembered; a duplicate arrives within seconds of the original.
const APPLIED_ROWS: usize = 4096;

impl AppliedRows {
    /// Whether `row` arrives for the first time (and remembers it).
    fn first(&mut self, row: i64) -> bool {
        if !self.rows.insert(row) {
            return false;
        }
        self.order.push_back(row);
        if self.order.len() > APPLIED_ROWS {
            if let Some(oldest) = self.order.pop_front() {
                self.rows.remove(&oldest);
            }
        }
        true
    }
}

impl Cache {
    /// Evicts the tenant's answers that depend on any of `tags` on every instance: numbers the
    /// write in Redis and tells the other instances. Called after a write that may have
    /// committed, before its answer is sent. Whether Redis acknowledged both (the write's outbox
    /// row may then go); if not, this instance still shows the write at once, and the outbox
    /// relay tells the others. `row` is the write's outbox row, when it recorded one.
    pub async fn invalidate(
        &self,
        tenant: TenantId,
        tags: &[Tag],
        committed_at: SystemTime,
        row: Option<i64>,
    ) -> bool {
        if let Some(row) = row {
            self.first_arrival(row);
        }
        let acknowledged = match self.redis.as_ref() {
            Some(redis) if redis.is_up() => {
                match self
                    .tell(redis, Via::Worker, tenant, tags, committed_at, row)
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
                self.versions.bump(tenant, tags);
                false
            }
        };
        for module in modules_of(tags) {
            self.metrics.invalidation(module, false);
            log::info!("[Cache] Invalidated: {module} for tenant {tenant}");
        }
        acknowledged
    }

    /// Relays one outbox row: what a write (perhaps of another instance, perhaps dead) must
    /// invalidate. Applied here too, since an instance skips its own bus messages.
    pub async fn relay(
        &self,
        tenant: TenantId,
        tags: &[Tag],
        committed_at: SystemTime,
        row: i64,
    ) -> Result<(), CacheError> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        self.tell(redis, Via::Shared, tenant, tags, committed_at, Some(row))
            .await?;
        if self.first_arrival(row) {
            self.observe_lag(micros_since_epoch(committed_at));
        }
        for module in modules_of(tags) {
            self.metrics.invalidation(module, true);
            log::info!("[Cache] Invalidated: {module} for tenant {tenant} (relayed)");
        }
        Ok(())
    }

    /// Runs the bus until the process ends (nothing to run in single-instance mode). On every
    /// (re)subscription, `relay_outbox` first delivers every invalidation still waiting in the
    /// outbox (false when it could not); only then does this instance count Redis as up.
    pub async fn run_bus<Relay, Relayed>(self: Arc<Self>, relay_outbox: Relay)
    where
        Relay: Fn() -> Relayed,
        Relayed: Future<Output = bool>,
    {
        bus::run(self, relay_outbox).await
    }

    /// Numbers the write in Redis, applies it here and publishes it.
    async fn tell(
        &self,
        redis: &Redis,
        via: Via,
        tenant: TenantId,
        tags: &[Tag],
        committed_at: SystemTime,
        row: Option<i64>,
    ) -> Result<(), CacheError> {
        let numbered = self.number(redis, via, tenant, tags).await?;
        let message = Message::invalidation(
            self.instance,
            tenant,
            numbered,
            tags,
            micros_since_epoch(committed_at),
            row,
        );
        Ok(redis.publish(via, &message.encode()?).await?)
    }

    /// Numbers the write in Redis and applies it here. Within one epoch a write's number is more
    /// than any number known before it was sent; one that is not means the server went back (it
    /// lost writes), so the tenant's namespace is started over.
    async fn number(
        &self,
        redis: &Redis,
        via: Via,
        tenant: TenantId,
        tags: &[Tag],
    ) -> redis::RedisResult<Numbered> {
        let before = self.versions.get(tenant).0;
        let mut numbered = redis.increment(via, tenant, tags).await?;
        let went_back = before
            .is_some_and(|before| before.epoch == numbered.epoch && numbered.seq <= before.seq);
        if went_back {
            log::warn!(
                "[Cache] Redis lost versions of tenant {tenant}; starting its namespace over"
            );
            numbered = redis.leave_epoch(via, tenant, numbered.epoch, tags).await?;
        }
        self.versions
            .apply(tenant, numbered.epoch, numbered.seq, numbered.floor, tags);
        Ok(numbered)
    }

    fn first_arrival(&self, row: i64) -> bool {
        self.applied_rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .first(row)
    }

    /// From a write's commit (`at_us`, 0 when unknown) until now, as the invalidation lag.
    fn observe_lag(&self, at_us: u64) {
        if at_us > 0 {
            let lag = micros_since_epoch(SystemTime::now()).saturating_sub(at_us);
            self.metrics.invalidation_lag(Duration::from_micros(lag));
        }
    }

    /// An invalidation did not reach Redis: run degraded until the bus reconnects and replays it.
    fn redis_failed(&self, error: &CacheError) {
        if let Some(redis) = &self.redis {
            if redis.set_up(false) {
                log::warn!("[Cache] Redis unreachable ({error}); serving from L1 and PostgreSQL");
                // Invalidations from other instances cannot reach us now: keep L1 short-lived.
                self.l1.clear();
            }
        }
    }

    /// A write this instance could not tell Redis about: its later reads use a namespace of
    /// their own (a new random epoch no other instance or L2 entry has), so they show the write
    /// at once; the outbox relay tells the others.
    fn write_while_degraded(&self, tenant: TenantId) {
        let mut count = self
            .degraded_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.versions.detach(tenant);
        *count += 1;
    }

    /// Applies a bus message from another instance.
    pub(super) fn apply_message(&self, payload: &[u8]) {
        let Some(message) = Message::decode(payload) else {
            log::warn!("[Cache] ignoring a malformed bus message");
            return;
        };
        if message.v != bus::VERSION || message.from == self.instance {
            return;
        }
        if message.flush {
            // `cache flush` removed the versions too: every namespace starts over, and loads
            // already under way store under keys of the old ones.
            self.versions.clear();
            self.l1.clear();
            log::info!("[Cache] Flushed L1 (remote)");
            return;
        }
        let Some(tenant) = message.tenant.map(TenantId) else {
            return;
        };
        let tags: Vec<Tag> = message.tags.iter().copied().map(Tag).collect();
        self.versions
            .apply(tenant, message.epoch, message.seq, message.floor, &tags);
        if message.row.is_none_or(|row| self.first_arrival(row)) {
            self.observe_lag(message.at_us);
        }
        for module in modules_of(&tags) {
            self.metrics.invalidation(module, true);
            log::info!("[Cache] Invalidated: {module} for tenant {tenant} (remote)");
        }
    }

    /// How many writes were invalidated only here so far (see [`Self::come_up`]).
    pub(super) fn degraded_writes(&self) -> u64 {
        *self
            .degraded_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bus (re)subscribed and the outbox was relayed: forget what may have been missed
    /// (versions, all of L1) and only then count Redis as up, so that no answer from before
    /// the reconnect is served as current. Refused (false) when a write was invalidated only
    /// here since `degraded_writes` was read: the relay may not have seen its row, so the
    /// caller relays again first.
    pub(super) fn come_up(&self, degraded_writes: u64) -> bool {
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
        self.versions.clear();
        self.l1.clear();
        redis.set_up(true);
        self.metrics.bus_connected.set(1);
        log::info!("[Cache] Redis connected: L2 and bus active, L1 dropped once");
        true
    }

    pub(super) fn bus_lost(&self) {
        self.metrics.bus_connected.set(0);
        if let Some(redis) = &self.redis {
            if redis.set_up(false) {
                log::warn!("[Cache] Redis bus lost; serving from L1 and PostgreSQL");
                self.l1.clear();
            }
        }
    }
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Settings;
    use crate::domain::Module;
    use crate::metrics::Exposition;

    fn lag_samples(cache: &Cache) -> String {
        let text = cache.metrics.render(Exposition::Prometheus);
        text.lines()
            .find_map(|line| line.strip_prefix("aishacrm_cache_invalidation_lag_seconds_count "))
            .unwrap_or("none")
            .to_owned()
    }

    #[test]
    fn a_write_relayed_again_after_its_message_is_measured_once() {
        let cache = Cache::builder(Settings {
            enabled: true,
            redis: None,
            key_prefix: "unit".into(),
            redis_timeout: Duration::from_secs(1),
            l1_max_bytes: 1024 * 1024,
            ttl_overrides: Default::default(),
            fail_safe: Duration::ZERO,
            degraded_l1_ttl: Duration::from_secs(1),
            redis_ca_file: None,
        })
        .build()
        .unwrap();
        let tenant = TenantId(uuid::Uuid::new_v4());
        let message = |row| {
            let numbered = Numbered {
                epoch: 1,
                seq: 1,
                floor: 0,
            };
            let at_us = micros_since_epoch(SystemTime::now()) - 1_000;
            let message = Message::invalidation(
                uuid::Uuid::new_v4(),
                tenant,
                numbered,
                &[Tag::module(Module::Leads)],
                at_us,
                row,
            );
            message.encode().unwrap().into_bytes()
        };
        // The writer's message, then the relay's of the same row (the writer's delete lagged).
        cache.apply_message(&message(Some(7)));
        cache.apply_message(&message(Some(7)));
        assert_eq!(lag_samples(&cache), "1");
        cache.apply_message(&message(Some(8)));
        cache.apply_message(&message(None));
        assert_eq!(lag_samples(&cache), "3", "other writes each count");
    }
}
