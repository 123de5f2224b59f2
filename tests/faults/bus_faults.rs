//! The invalidation bus when the network between an instance and Redis misbehaves (contract,
//! "Cache", rule 7): a Redis that goes silent without closing anything, and a Redis that is slow.
//! Each instance under test reaches a Redis of the test's own through a TCP proxy of the test's.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::helpers::{minimal, ready, spawn_replicas_on};
use crate::support::proxy::Proxy;
use crate::support::redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_counts_as_down_within_2_s_on_an_instance_that_serves_only_l1_hits() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
    let apps = spawn_replicas_on(1, &redis.url(), |_| {}).await;
    let writer = &apps[0];
    let silent = writer.another_replica_behind(&proxy).await;
    let token = writer.token(Uuid::new_v4());
    writer.create("leads", &token, minimal("leads")).await;
    for app in [writer, &silent] {
        app.leads_count(&token).await;
        assert_eq!(app.leads_count(&token).await, (1, "HIT L1".to_owned()));
    }

    // Packets to Redis are dropped from now on; nothing is closed.
    proxy.freeze();
    let frozen = Instant::now();
    writer.create("leads", &token, minimal("leads")).await;
    // The instance only reads its L1 meanwhile: it must notice by itself.
    let noticed = silent
        .until_leads_count(&token, 2, Duration::from_millis(2_500))
        .await;
    let (_, health) = ready(&silent).await;
    assert_eq!(health["redis"], "down", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    eprintln!(
        "the silent Redis counted as down {:?} after the freeze",
        frozen.elapsed()
    );
    assert!(noticed < Duration::from_millis(2_500));
    // Degraded: answers stay correct while the writer keeps writing.
    writer.create("leads", &token, minimal("leads")).await;
    silent
        .until_leads_count(
            &token,
            3,
            Duration::from_secs(silent.config.cache_degraded_l1_ttl_secs + 1),
        )
        .await;

    // The network returns: the instance reconnects by itself and the bus works again.
    proxy.thaw();
    silent.wait_for_redis("up").await;
    assert_eq!(silent.leads_count(&token).await.0, 3);
    writer.create("leads", &token, minimal("leads")).await;
    silent
        .until_leads_count(&token, 4, Duration::from_millis(100))
        .await;
}

/// Keeps the Redis at `url` busy (it answers nobody) for `millis`.
async fn keep_redis_busy(url: &str, millis: u64) {
    let client = redis::Client::open(url).expect("a redis client");
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(millis + 5_000)));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connecting to the test's redis-server");
    let busy = r"
local started = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - started[1]) * 1000000 + (now[2] - started[2]) > tonumber(ARGV[1]) * 1000 then
    return 1
  end
end";
    redis::cmd("EVAL")
        .arg(busy)
        .arg(0)
        .arg(millis)
        .query_async::<i64>(&mut connection)
        .await
        .expect("keeping redis busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_redis_command_is_a_miss_not_degraded_mode() {
    let redis = RedisServer::start().await;
    let apps = spawn_replicas_on(1, &redis.url(), |_| {}).await;
    let app = &apps[0];
    let (cached, other) = (app.token(Uuid::new_v4()), app.token(Uuid::new_v4()));
    app.leads_count(&cached).await;
    assert_eq!(app.leads_count(&cached).await.1, "HIT L1");

    // Redis answers nothing for 600 ms: longer than REDIS_TIMEOUT_MS, shorter than a heartbeat
    // may take. A request of another tenant meanwhile finds every Redis command timing out.
    let busy = tokio::spawn({
        let url = redis.url();
        async move { keep_redis_busy(&url, 600).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let (seen, how) = app.leads_count(&other).await;
    assert_eq!((seen, how.as_str()), (0, "MISS "));
    eprintln!("the miss with a busy Redis took {:?}", started.elapsed());
    busy.await.expect("the busy script");

    let (_, health) = ready(app).await;
    assert_eq!(
        health["redis"], "up",
        "one slow command is no outage: {health}"
    );
    assert_eq!(
        app.leads_count(&cached).await.1,
        "HIT L1",
        "L1 was dropped for one slow command"
    );
}
