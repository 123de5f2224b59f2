//! `aishacrm cache flush`: deletes this service's cache entries in Redis by pattern (never
//! `FLUSHDB`: the Redis may be shared) and tells every instance to drop its L1. Generations are
//! kept, so no instance can mistake an old answer for a current one afterwards.

use redis::AsyncCommands;
use uuid::Uuid;

use super::bus;
use super::l2::Redis;
use crate::config::Config;
use crate::db::BoxError;

/// How many keys one SCAN step asks for.
const SCAN_COUNT: usize = 1_000;

pub async fn flush(config: &Config) -> Result<u64, BoxError> {
    let url = config
        .redis_url()
        .ok_or("REDIS_URL is none: there is no shared cache to flush")?;
    let redis = Redis::new(
        url,
        &config.cache_key_prefix,
        std::time::Duration::from_secs(5),
    )?;
    let mut connection = redis.client().get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut removed = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(redis.entries_pattern())
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            removed += redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<u64>(&mut connection)
                .await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let message = bus::Message {
        v: bus::VERSION,
        from: Uuid::nil(),
        tenant: None,
        gens: Vec::new(),
        flush: true,
    };
    connection
        .publish::<_, _, ()>(redis.channel(), serde_json::to_string(&message)?)
        .await?;
    Ok(removed)
}
