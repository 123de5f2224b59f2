//! Only a write that may have committed invalidates, and a committed write's invalidation
//! survives its writer (contract, "Cache", rules 11 and 12): a writer killed between COMMIT and
//! telling Redis (a test-only fail point), a PUBLISH or an increment cut on its way to Redis (a
//! proxy of the test's own), a writer cut off from Redis while it keeps writing, and PostgreSQL
//! unreachable while clients retry their writes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    assert_error, minimal, ready, spawn_replicas_on, start, test_config, time_until_redis, TestApp,
    TestDatabase,
};
use crate::support::binary::Server;
use crate::support::proxy::{through_proxy, Proxy};
use crate::support::redis_server::RedisServer;

/// Rows waiting in the outbox of `app`'s database.
async fn outbox_rows(app: &TestApp) -> i64 {
    aishacrm::db::outbox::waiting(&mut app.db().await)
        .await
        .expect("counting outbox rows")
}

async fn until_outbox_empty(app: &TestApp, limit: Duration) {
    let started = Instant::now();
    while outbox_rows(app).await > 0 {
        assert!(
            started.elapsed() < limit,
            "outbox rows still wait after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another instance like `reader`, on `redis`, that aborts after the COMMIT of any write and
/// before telling Redis.
async fn writer_dying_after_commit(reader: &TestApp, redis: &RedisServer) -> Server {
    let env = [
        ("DATABASE_URL", reader.config.database_url.clone()),
        ("REDIS_URL", redis.url()),
        ("CACHE_KEY_PREFIX", reader.config.cache_key_prefix.clone()),
        ("JWT_SECRET", reader.secret.clone()),
        ("FAILPOINTS", "cache::after_commit=return".to_owned()),
    ];
    tokio::task::spawn_blocking(move || {
        let mut server = Server::spawn(&env, Duration::from_secs(10));
        server.wait_for("[Cache] Redis connected", 0);
        server
    })
    .await
    .expect("starting the writer")
}

/// Sends `request` to `writer`, which dies at the fail point instead of answering, and reaps it;
/// answers when it died.
async fn dies_writing(writer: &mut Server, request: reqwest::RequestBuilder) -> Instant {
    let sent = request.send().await;
    let died = Instant::now();
    assert!(
        sent.is_err(),
        "the writer answered instead of dying at the fail point"
    );
    let status = writer.child.wait().expect("reaping the writer");
    assert!(!status.success(), "the writer aborted: {status}");
    died
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_between_commit_and_invalidation_is_shown_everywhere_within_1_s() {
    let redis = RedisServer::start().await;
    let apps = spawn_replicas_on(1, &redis.url(), |_| {}).await;
    let reader = &apps[0];
    let token = reader.token(Uuid::new_v4());
    reader.leads_count(&token).await;
    assert_eq!(reader.leads_count(&token).await.1, "HIT L1");

    let mut writer = writer_dying_after_commit(reader, &redis).await;
    let request = reader
        .client
        .post(format!("{}/api/v2/leads", writer.address))
        .bearer_auth(&token)
        .json(&minimal("leads"));
    let died = dies_writing(&mut writer, request).await;

    // The write committed and nobody told Redis: the reader's relay does, within a second.
    let shown = reader
        .until_leads_count(&token, 1, Duration::from_secs(1))
        .await;
    eprintln!(
        "the dead writer's write showed {shown:?} after it died ({:?} since)",
        died.elapsed()
    );
    until_outbox_empty(reader, Duration::from_secs(1)).await;
}

/// The relay delivers exactly the tags a write changed: an update of one lead's status, whose
/// writer died between COMMIT and telling Redis, still rebuilds the old and new status's counts
/// on the other instance within a second, and leaves the unfiltered count (which it cannot
/// change) cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_writer_died_is_relayed_with_its_tags() {
    let redis = RedisServer::start().await;
    let apps = spawn_replicas_on(1, &redis.url(), |_| {}).await;
    let reader = &apps[0];
    let token = reader.token(Uuid::new_v4());
    let lead = reader
        .create(
            "leads",
            &token,
            json!({"last_name": "Khan", "status": "new"}),
        )
        .await;
    let counts = [
        "/api/v2/leads/count?status=new",
        "/api/v2/leads/count?status=contacted",
        "/api/v2/leads/count",
    ];
    for path in counts {
        reader.get_cached(path, &token).await;
        assert_eq!(reader.get_cached(path, &token).await.0, "HIT", "{path}");
    }
    // The create's row is deleted soon after Redis acknowledged it; a writer that connects
    // before then relays it once more (every reconnect relays every row), which would drop
    // these counts for a reason other than the update.
    until_outbox_empty(reader, Duration::from_secs(1)).await;

    let mut writer = writer_dying_after_commit(reader, &redis).await;
    let id = lead["id"].as_str().unwrap_or_default();
    let request = reader
        .client
        .patch(format!("{}/api/v2/leads/{id}", writer.address))
        .bearer_auth(&token)
        .json(&json!({"status": "contacted"}));
    dies_writing(&mut writer, request).await;

    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (_, _, moved) = reader.get_cached(counts[1], &token).await;
        if moved["count"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the relayed update never showed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, _, left) = reader.get_cached(counts[0], &token).await;
    assert_eq!(left["count"], 0, "the old status's count is rebuilt too");
    let (served, _, all) = reader.get_cached(counts[2], &token).await;
    assert_eq!((served.as_str(), all["count"].clone()), ("HIT", json!(1)));
    until_outbox_empty(reader, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_on_its_way_to_redis_still_reaches_every_instance() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
    let apps = spawn_replicas_on(1, &redis.url(), |_| {}).await;
    let other = &apps[0];
    let writer = other.another_replica_behind(&proxy).await;
    let token = other.token(Uuid::new_v4());
    for app in [other, &writer] {
        app.leads_count(&token).await;
        assert_eq!(app.leads_count(&token).await.1, "HIT L1");
    }

    // The increment reaches Redis, the PUBLISH does not.
    proxy.cut_on_command("PUBLISH", &[], 1);
    writer.create("leads", &token, minimal("leads")).await;
    assert!(proxy.cuts_done(), "the PUBLISH was cut");
    assert_eq!(writer.leads_count(&token).await.0, 1, "the writer at once");
    let shown = other
        .until_leads_count(&token, 1, Duration::from_secs(1))
        .await;
    eprintln!("the write whose PUBLISH was cut showed elsewhere after {shown:?}");
    time_until_redis(&writer, "up", Duration::from_secs(10)).await;
    until_outbox_empty(other, Duration::from_secs(1)).await;

    // The increment itself is cut.
    proxy.cut_on_command("EVALSHA", &["number"], 1);
    writer.create("leads", &token, minimal("leads")).await;
    assert!(proxy.cuts_done(), "the increment was cut");
    assert_eq!(writer.leads_count(&token).await.0, 2, "the writer at once");
    other
        .until_leads_count(&token, 2, Duration::from_secs(1))
        .await;
    time_until_redis(&writer, "up", Duration::from_secs(10)).await;
    writer.create("leads", &token, minimal("leads")).await;
    other
        .until_leads_count(&token, 3, Duration::from_millis(100))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_while_cut_off_from_redis_all_arrive_even_when_the_reconnect_fails_part_way() {
    let redis = RedisServer::start().await;
    let mut proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
    // Only the writer runs, so only its own reconnect can tell Redis.
    let database = std::sync::Arc::new(TestDatabase::create().await);
    let mut template = test_config(&database.url);
    template.redis_url = redis.url();
    let mut config = template.clone();
    config.redis_url = format!("redis://127.0.0.1:{}/0", proxy.port);
    let writer = start(config, database).await;
    writer.wait_for_redis("up").await;
    let tokens: Vec<String> = (0..8).map(|_| writer.token(Uuid::new_v4())).collect();
    for token in &tokens {
        writer.leads_count(token).await;
        assert_eq!(writer.leads_count(token).await.1, "HIT L1");
    }

    proxy.stop().await;
    time_until_redis(&writer, "down", Duration::from_secs(3)).await;
    for token in &tokens {
        writer.create("leads", token, minimal("leads")).await;
        assert_eq!(
            writer.leads_count(token).await.0,
            1,
            "the writer shows its write"
        );
    }

    // Redis is back but every increment fails: the instance stays degraded, backing off.
    proxy.cut_every("EVALSHA", &[]);
    proxy.restart().await;
    let (accepted, started) = (proxy.accepted(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = proxy.accepted() - accepted;
    let (_, health) = ready(&writer).await;
    assert_eq!(health["redis"], "down", "{health}");
    eprintln!(
        "{attempts} connections in {:?} while the relay kept failing",
        started.elapsed()
    );
    assert!(
        attempts <= 30,
        "{attempts} new connections in 3 s: the reconnect does not back off"
    );

    // The relay on reconnect fails at the third tenant, then succeeds on a later attempt.
    proxy.clear_cuts();
    proxy.cut_on_command("EVALSHA", &["number"], 3);
    time_until_redis(&writer, "up", Duration::from_secs(15)).await;
    assert!(proxy.cuts_done());
    let reader = start(template, writer.database.clone()).await;
    reader.wait_for_redis("up").await;
    for token in &tokens {
        assert_eq!(
            reader.leads_count(token).await.0,
            1,
            "an acknowledged write never reached Redis"
        );
        assert_eq!(writer.leads_count(token).await.0, 1);
    }
    assert_eq!(outbox_rows(&writer).await, 0);
}

/// Writes refused before their transaction began leave every entry reachable: with the
/// database down, clients retrying writes do not take the fail-safe answers away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_leave_fail_safe_answers_served_stale() {
    let redis = RedisServer::start().await;
    for redis_url in ["none".to_owned(), redis.url()] {
        let database = std::sync::Arc::new(TestDatabase::create().await);
        let (_, upstream) = through_proxy(&database.url, 0);
        let mut proxy = Proxy::start(&upstream).await;
        let (url, _) = through_proxy(&database.url, proxy.port);
        let mut config = test_config(&url);
        config.redis_url = redis_url.clone();
        config.db_acquire_timeout_ms = 500;
        config.db_statement_timeout_ms = 1_000;
        config.cache_fail_safe_secs = 30;
        config.cache_ttl_overrides = HashMap::from([("LEADS_COUNT".to_owned(), 1)]);
        let app = start(config, database.clone()).await;
        if redis_url != "none" {
            app.wait_for_redis("up").await;
        }
        let token = app.token(Uuid::new_v4());
        let lead = app.create("leads", &token, minimal("leads")).await;
        let path = format!("/api/v2/leads/{}", lead["id"].as_str().expect("an id"));
        let (stored, _, _) = app.get_cached("/api/v2/leads/count", &token).await;
        let stored_at = Instant::now();
        assert_eq!(stored, "MISS");

        proxy.stop().await;
        // Clients retry every kind of write; each is refused before a transaction began.
        for _ in 0..3 {
            let responses = [
                app.post("/api/v2/leads", &token, &minimal("leads")).await,
                app.patch(&path, &token, &json!({"score": 5})).await,
                app.put(&path, &token, &json!({"score": 6})).await,
                app.delete(&path, &token).await,
            ];
            for response in responses {
                assert_error(response, 503, "database_unavailable").await;
            }
        }
        if let Some(wait) = Duration::from_millis(1_200).checked_sub(stored_at.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let (cache, _, body) = app.get_cached("/api/v2/leads/count", &token).await;
        assert_eq!(
            (cache.as_str(), body["count"].as_i64()),
            ("STALE", Some(1)),
            "REDIS_URL={redis_url}: refused writes made the fail-safe answer unreachable"
        );
        proxy.restart().await;
    }
}

/// A write whose COMMIT never got an answer may have committed: it invalidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_commit_outcome_is_unknown_still_invalidates() {
    let redis = RedisServer::start().await;
    let database = std::sync::Arc::new(TestDatabase::create().await);
    let (_, upstream) = through_proxy(&database.url, 0);
    let proxy = Proxy::start(&upstream).await;
    let (url, _) = through_proxy(&database.url, proxy.port);
    let mut config = test_config(&url);
    config.redis_url = redis.url();
    let app = start(config, database).await;
    app.wait_for_redis("up").await;
    let token = app.token(Uuid::new_v4());
    app.leads_count(&token).await;
    assert_eq!(app.leads_count(&token).await, (0, "HIT L1".to_owned()));

    // The connection is cut as the write's COMMIT leaves (not the outbox relay's, which commits
    // every 200 ms on the same pool): the server rolls back, the service cannot know.
    proxy.cut_on_bytes_after(b"INSERT INTO \"leads\"", b"COMMIT\0", 1);
    // Meanwhile a relay pass commits on the same pool: its COMMIT must not be the one cut.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app.post("/api/v2/leads", &token, &minimal("leads")).await;
    assert!(proxy.cuts_done(), "the COMMIT was cut");
    assert_error(response, 503, "database_unavailable").await;
    assert_eq!(
        app.leads_count(&token).await,
        (0, "MISS ".to_owned()),
        "an unknown outcome invalidates (and nothing was committed)"
    );
}

/// `aishacrm seed --tenant` on a tenant a live cluster has cached: every instance shows the
/// seeded records within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_a_live_tenant_invalidates_it_everywhere() {
    let apps = spawn_replicas_on(2, &crate::helpers::redis_url(), |_| {}).await;
    let tenant = Uuid::new_v4();
    let token = apps[0].token(tenant);
    for app in &apps {
        app.leads_count(&token).await;
        assert_eq!(app.leads_count(&token).await, (0, "HIT L1".to_owned()));
    }
    let config = &apps[0].config;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args([
            "seed",
            "--tenant",
            &tenant.to_string(),
            "--per-tenant",
            "10",
        ])
        .env("DATABASE_URL", &config.database_url)
        .env("REDIS_URL", &config.redis_url)
        .env("CACHE_KEY_PREFIX", &config.cache_key_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running aishacrm seed");
    assert!(output.status.success(), "{output:?}");
    let seeded = Instant::now();
    for app in &apps {
        app.until_leads_count(&token, 2, Duration::from_secs(1))
            .await;
    }
    eprintln!(
        "the seed showed on both instances {:?} after it ended",
        seeded.elapsed()
    );
}

/// A writer cut off from Redis keeps writing; every other instance shows each write within a
/// second of its commit, from the outbox its relay reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cut_off_from_redis_is_shown_elsewhere_within_1_s_while_it_keeps_writing() {
    let redis = RedisServer::start().await;
    let mut proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
    let apps = spawn_replicas_on(1, &redis.url(), |_| {}).await;
    let other = &apps[0];
    let writer = other.another_replica_behind(&proxy).await;
    let token = other.token(Uuid::new_v4());
    other.leads_count(&token).await;
    assert_eq!(other.leads_count(&token).await.1, "HIT L1");

    proxy.stop().await;
    time_until_redis(&writer, "down", Duration::from_secs(3)).await;
    for written in 1..=3 {
        writer.create("leads", &token, minimal("leads")).await;
        assert_eq!(
            writer.leads_count(&token).await.0,
            written,
            "the writer at once"
        );
        let shown = other
            .until_leads_count(&token, written, Duration::from_secs(1))
            .await;
        eprintln!("write {written} of the cut-off writer showed elsewhere after {shown:?}");
    }
    until_outbox_empty(other, Duration::from_secs(1)).await;
}
