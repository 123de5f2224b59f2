//! `aishacrm cache flush`: deletes this service's cache entries and tag versions in Redis by
//! pattern (never `FLUSHDB`: the Redis may be shared) and tells every instance to drop its L1 and
//! what it knows of tag versions. Every tenant's namespace then starts over with a new epoch, so a
//! load already under way when the flush began stores its answer under a key of the old epoch,
//! which no instance asks for again.

use redis::AsyncCommands;

use super::builder::Settings;
use super::bus::Message;
use super::error::CacheError;
use super::l2::Redis;

/// How many keys one SCAN step asks for.
const SCAN_COUNT: usize = 1_000;

/// Flushes the shared cache `settings` name; how many entries it removed.
pub async fn flush(settings: &Settings) -> Result<u64, CacheError> {
    let target = settings.redis.clone().ok_or_else(|| {
        CacheError::Settings("REDIS_URL is none: there is no shared cache to flush".into())
    })?;
    let redis = Redis::new(
        target,
        &settings.key_prefix,
        std::time::Duration::from_secs(5),
        settings.redis_ca()?.as_deref(),
    )?;
    let mut removed = 0;
    for node in data_nodes(&redis).await? {
        // Versions first: an entry stored meanwhile is of an epoch already gone.
        delete_matching(&node, &redis.versions_pattern()).await?;
        removed += delete_matching(&node, &redis.entries_pattern()).await?;
    }
    // Classic pub/sub reaches every subscriber through any node of a cluster.
    let mut connection = redis.nodes()[0].get_multiplexed_async_connection().await?;
    connection
        .publish::<_, _, ()>(redis.channel(), Message::flush().encode()?)
        .await?;
    Ok(removed)
}

/// The nodes holding data: the one server, or every master of the cluster.
async fn data_nodes(redis: &Redis) -> Result<Vec<redis::Client>, CacheError> {
    if !redis.is_cluster() {
        return Ok(vec![redis.nodes()[0].clone()]);
    }
    let mut connection = redis.nodes()[0].get_multiplexed_async_connection().await?;
    let listing: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut connection)
        .await?;
    let mut masters = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // <id> <ip:port@cport[,hostname]> <flags> ...
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if flags.split(',').any(|flag| flag == "master") && !flags.contains("fail") {
            let address = address.split('@').next().unwrap_or(address);
            masters.push(redis.client_of(&format!("{}://{address}", redis.scheme()))?);
        }
    }
    Ok(masters)
}

/// Unlinks every key of `node` matching `pattern`; how many it removed.
async fn delete_matching(node: &redis::Client, pattern: &str) -> Result<u64, CacheError> {
    let mut connection = node.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut removed = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            // One key per UNLINK: in a cluster, keys of one batch may live on different slots.
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key);
            }
            let counts: Vec<u64> = pipe.query_async(&mut connection).await?;
            removed += counts.iter().sum::<u64>();
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(removed)
}
