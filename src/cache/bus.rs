//! The invalidation bus: Redis pub/sub on one versioned channel. Publishing happens in
//! `Cache::invalidate`; this task subscribes, applies other instances' messages, and owns the
//! up/down state of Redis: while it cannot subscribe, the cache runs degraded (L1 only, short
//! lifetimes), and each reconnect drops L1 once, since messages may have been missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Cache;

/// One bus message. `gens` carries the new generation of every module the write bumped, so a
/// receiver evicts without reading Redis.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub v: u8,
    pub from: Uuid,
    #[serde(default)]
    pub tenant: Option<Uuid>,
    /// The epoch of the tenant's namespace the generations belong to.
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub gens: Vec<(String, u64)>,
    /// Every instance drops all of L1 (`aishacrm cache flush`).
    #[serde(default)]
    pub flush: bool,
}

/// The wire format's version, also in the channel's name (v2 added `epoch`).
pub const VERSION: u8 = 2;

/// How often the subscriber checks that the command connection is still healthy.
const HEALTH_TICK: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs until the process ends.
pub async fn run(cache: Arc<Cache>) {
    let Some(redis) = cache.redis.as_ref() else {
        return;
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed = async {
            redis.connect().await?;
            let mut pubsub = redis.pubsub_client().get_async_pubsub().await?;
            pubsub.subscribe(redis.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(50);
                cache.bus_connected().await;
                if !redis.is_up() {
                    // The replay failed: start over.
                    cache.bus_lost();
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                let mut messages = pubsub.into_on_message();
                let mut tick = tokio::time::interval(HEALTH_TICK);
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                if let Ok(payload) = message.get_payload::<Vec<u8>>() {
                                    cache.apply_message(&payload);
                                }
                            }
                            None => break,
                        },
                        _ = tick.tick() => {
                            // A failed command marked Redis down: resubscribe so that the
                            // reconnect path (replay, drop L1 once) runs.
                            if !redis.is_up() {
                                break;
                            }
                        }
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
