//! The invalidation bus: Redis pub/sub on one versioned channel. Publishing happens in
//! [`Cache::invalidate`]; this task subscribes, applies other instances' messages, and owns the
//! up/down state of Redis: while it cannot subscribe, the cache runs degraded (L1 only, short
//! lifetimes), and each reconnect drops L1 once, since messages may have been missed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::l2::Numbered;
use super::Cache;
use crate::domain::tags::Tag;
use crate::domain::TenantId;

/// One bus message: a write's number and the tags it changed, so that a receiver applies it
/// without reading Redis.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub v: u8,
    pub from: Uuid,
    #[serde(default)]
    pub tenant: Option<Uuid>,
    /// The epoch of the tenant's namespace the write was numbered in.
    #[serde(default)]
    pub epoch: u64,
    /// The write's number, and the tenant's floor after it.
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub floor: u64,
    #[serde(default)]
    pub tags: Vec<u64>,
    /// Every instance drops all of L1 (`aishacrm cache flush`).
    #[serde(default)]
    pub flush: bool,
    /// When the write committed (microseconds since the Unix epoch, the writer's clock): the
    /// start of the invalidation lag a receiver measures. 0 when unknown.
    #[serde(default)]
    pub at_us: u64,
    /// The write's outbox row, when it recorded one: the writer's message and a relay of the
    /// same row may both arrive, and the write's lag is measured on the first.
    #[serde(default)]
    pub row: Option<i64>,
}

/// The wire format's version, also in the channel's name (v2 added `epoch`, v3 replaced module
/// generations with numbered tags).
pub const VERSION: u8 = 3;

impl Message {
    /// Write `numbered` of `tenant`, committed at `at_us`, changed `tags`.
    pub fn invalidation(
        from: Uuid,
        tenant: TenantId,
        numbered: Numbered,
        tags: &[Tag],
        at_us: u64,
        row: Option<i64>,
    ) -> Self {
        Message {
            v: VERSION,
            from,
            tenant: Some(tenant.0),
            epoch: numbered.epoch,
            seq: numbered.seq,
            floor: numbered.floor,
            tags: tags.iter().map(|tag| tag.0).collect(),
            flush: false,
            at_us,
            row,
        }
    }

    /// Every instance forgets all it cached (`aishacrm cache flush`).
    pub fn flush() -> Self {
        Message {
            v: VERSION,
            from: Uuid::nil(),
            tenant: None,
            epoch: 0,
            seq: 0,
            floor: 0,
            tags: Vec::new(),
            flush: true,
            at_us: 0,
            row: None,
        }
    }

    pub fn encode(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// `None` for anything that is not a message at all.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Message>(payload).ok()
    }
}

/// How often the subscriber pings Redis on its own connection. An instance that serves only L1
/// hits sends Redis nothing else, and a flow a balancer forgot drops packets without a reset:
/// without this, such an instance would never learn that it hears nothing.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a ping may take before the bus counts as lost: with [`HEARTBEAT`], a silent Redis
/// counts as down within 1.5 s.
const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(1);
/// Bound on connecting and subscribing.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A subscription that lasted this long was a real recovery: the next loss retries quickly
/// again. One that did not (a replay that failed, a server that drops us at once) keeps backing
/// off, so a flapping Redis is not hammered with reconnects.
const STABLE: Duration = Duration::from_secs(10);

/// Runs until the process ends; see [`Cache::run_bus`].
pub(super) async fn run<Relay, Relayed>(cache: Arc<Cache>, relay_outbox: Relay)
where
    Relay: Fn() -> Relayed,
    Relayed: Future<Output = bool>,
{
    let Some(redis) = cache.redis.as_ref() else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let subscribed = async {
            redis.connect().await?;
            let mut pubsub = redis.pubsub_client().get_async_pubsub().await?;
            pubsub.subscribe(redis.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                if come_up(&cache, &relay_outbox).await {
                    let connected = Instant::now();
                    let why = listen(&cache, pubsub).await;
                    log::debug!("redis bus lost: {why}");
                    if connected.elapsed() >= STABLE {
                        backoff = FIRST_BACKOFF;
                    }
                }
                cache.bus_lost();
            }
            Ok(Err(error)) => log::debug!("redis not reachable: {error}"),
            Err(_) => log::debug!("redis connect timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Relays the outbox until no write slipped in meanwhile, then counts Redis as up.
async fn come_up<Relay, Relayed>(cache: &Cache, relay_outbox: &Relay) -> bool
where
    Relay: Fn() -> Relayed,
    Relayed: Future<Output = bool>,
{
    // Writes keep arriving while Redis counts as down; a few rounds catch up with any pace a
    // client can keep, and past them the next reconnect tries again.
    for _ in 0..10 {
        let seen = cache.degraded_writes();
        if !relay_outbox().await {
            log::warn!("[Cache] Redis is back but the outbox relay failed; staying degraded");
            return false;
        }
        if cache.come_up(seen) {
            return true;
        }
    }
    false
}

/// Applies messages until the subscription ends, a heartbeat goes unanswered, or the cache marks
/// Redis down; says which.
async fn listen(cache: &Cache, pubsub: redis::aio::PubSub) -> &'static str {
    let Some(redis) = cache.redis.as_ref() else {
        return "no redis";
    };
    let (mut sink, mut messages) = pubsub.split();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => {
                    if let Ok(payload) = message.get_payload::<Vec<u8>>() {
                        cache.apply_message(&payload);
                    }
                }
                None => return "the subscription ended",
            },
            _ = heartbeat.tick() => {
                // A failed invalidation marked Redis down: resubscribe so that the reconnect
                // path (replay, drop L1 once) runs.
                if !redis.is_up() {
                    return "marked down";
                }
                match tokio::time::timeout(HEARTBEAT_DEADLINE, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return "a heartbeat failed",
                    Err(_) => return "a heartbeat went unanswered",
                }
            }
        }
    }
}
