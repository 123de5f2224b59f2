//! Redis may forget (contract, "Cache", rule 10): whatever a Redis of the test's own loses while
//! the instances stay connected (FLUSHDB, FLUSHALL, the versions keys alone, a restart without
//! persistence, a restart from an older snapshot), no instance answers data older than the newest
//! acknowledged write: the writer at once, the others within 100 ms, an instance started after
//! the loss too.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::helpers::{
    header, minimal, redis_url, spawn_replicas, spawn_replicas_on, time_until_redis, TestApp,
};
use crate::support::redis_server::RedisServer;

/// The writer shows `expected` at once; every other instance within 100 ms.
async fn everyone_shows(writer: &TestApp, others: &[&TestApp], token: &str, expected: i64) {
    let (seen, how) = writer.leads_count(token).await;
    assert_eq!(
        seen, expected,
        "the writer {} answered an older count ({how})",
        writer.address
    );
    for other in others {
        let started = Instant::now();
        loop {
            let (seen, how) = other.leads_count(token).await;
            if seen == expected {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_millis(100),
                "{} still answers {seen} ({how}) 100 ms after the write of the {expected}th lead",
                other.address
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Writes `n` leads on `writer`, reading the count on every instance after each, so that an
/// answer of every state is cached in L1 and L2.
async fn write_and_cache(writer: &TestApp, all: &[&TestApp], token: &str, n: usize, from: i64) {
    for written in 1..=n as i64 {
        writer.create("leads", token, minimal("leads")).await;
        let others: Vec<&TestApp> = all
            .iter()
            .copied()
            .filter(|app| app.address != writer.address)
            .collect();
        everyone_shows(writer, &others, token, from + written).await;
        for app in all {
            let (_, how) = app.leads_count(token).await;
            assert_eq!(how, "HIT L1", "{} caches the count", app.address);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushdb_or_flushall_while_everyone_stays_connected_never_serves_an_older_answer() {
    for flush in ["FLUSHDB", "FLUSHALL"] {
        let redis = RedisServer::start().await;
        let apps = spawn_replicas_on(2, &redis.url(), |_| {}).await;
        let (a, b) = (&apps[0], &apps[1]);
        let token = a.token(Uuid::new_v4());
        write_and_cache(a, &[a, b], &token, 4, 0).await;

        redis.command(&[flush]).await;
        // Every write after the loss shows at once on the writer, and within 100 ms elsewhere.
        for written in 5..=7 {
            let writer = if written % 2 == 0 { b } else { a };
            let other = if written % 2 == 0 { a } else { b };
            writer.create("leads", &token, minimal("leads")).await;
            everyone_shows(writer, &[other], &token, written).await;
        }
        let late = a.another_replica().await;
        everyone_shows(&late, &[a, b], &token, 7).await;
        eprintln!("{flush}: every instance showed every write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_only_the_versions_never_revives_an_entry_of_an_earlier_state() {
    let redis = RedisServer::start().await;
    let apps = spawn_replicas_on(2, &redis.url(), |_| {}).await;
    let (a, b) = (&apps[0], &apps[1]);
    let tenant = Uuid::new_v4();
    let token = a.token(tenant);
    // L2 now holds a count of every state from 0 to 4 leads.
    a.leads_count(&token).await;
    write_and_cache(a, &[a, b], &token, 4, 0).await;

    // What an allkeys-* eviction may do: the tenant's versions key goes, its entries stay.
    let versions = format!("{}:{{{tenant}}}:v", a.config.cache_key_prefix);
    redis.command(&["DEL", &versions]).await;
    let late = a.another_replica().await;
    a.create("leads", &token, minimal("leads")).await;
    everyone_shows(a, &[b, &late], &token, 5).await;
    let later = a.another_replica().await;
    everyone_shows(&later, &[a, b, &late], &token, 5).await;
    b.create("leads", &token, minimal("leads")).await;
    everyone_shows(b, &[a, &late, &later], &token, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_persistence_or_from_an_older_snapshot_never_serves_what_it_missed() {
    let mut redis = RedisServer::start_with_snapshots().await;
    let apps = spawn_replicas_on(2, &redis.url(), |_| {}).await;
    let (a, b) = (&apps[0], &apps[1]);
    let token = a.token(Uuid::new_v4());
    a.leads_count(&token).await;
    write_and_cache(a, &[a, b], &token, 2, 0).await;
    // The snapshot holds the versions and entries of the state with 2 leads.
    redis.command(&["SAVE"]).await;
    write_and_cache(a, &[a, b], &token, 2, 2).await;

    // Back to the snapshot, as a restart with RDB persistence or a failover to a replica that
    // missed the last writes would be.
    redis.kill();
    redis.restart().await;
    for app in [a, b] {
        time_until_redis(app, "up", Duration::from_secs(10)).await;
    }
    let late = a.another_replica().await;
    everyone_shows(&late, &[a, b], &token, 4).await;
    b.create("leads", &token, minimal("leads")).await;
    everyone_shows(b, &[a, &late], &token, 5).await;

    // A restart that keeps nothing.
    std::fs::remove_file(
        redis
            .snapshot_file()
            .expect("a server with snapshots has a snapshot file"),
    )
    .expect("removing the snapshot");
    redis.kill();
    redis.restart().await;
    for app in [a, b, &late] {
        time_until_redis(app, "up", Duration::from_secs(10)).await;
    }
    everyone_shows(a, &[b, &late], &token, 5).await;
    a.create("leads", &token, minimal("leads")).await;
    everyone_shows(a, &[b, &late], &token, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_flush_is_fenced_a_load_under_way_cannot_store_its_answer_after_it() {
    use diesel_async::SimpleAsyncConnection;
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    app.create("leads", &token, minimal("leads")).await;

    // A read that misses and then waits inside PostgreSQL until the test lets it go (the
    // unfiltered count reads the kept aggregates).
    let mut lock = app.db().await;
    lock.batch_execute("BEGIN; LOCK TABLE tenant_counts IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locking the aggregates table");
    let reader = {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/api/v2/leads/count", app.address),
            token.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "the read waits for the lock");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args(["cache", "flush"])
        .env("REDIS_URL", redis_url())
        .env("CACHE_KEY_PREFIX", &app.config.cache_key_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running aishacrm cache flush");
    assert!(output.status.success(), "{output:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;

    lock.batch_execute("COMMIT")
        .await
        .expect("releasing the lock");
    let response = reader
        .await
        .expect("the reader task")
        .expect("the read under way");
    assert_eq!(header(&response, "x-cache"), "MISS");
    let (seen, how) = app.leads_count(&token).await;
    assert_eq!(seen, 1);
    assert_eq!(
        how, "MISS ",
        "the answer of a load that began before the flush was stored where later reads find it"
    );
}
