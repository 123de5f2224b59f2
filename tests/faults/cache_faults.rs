//! The cache when its dependencies fail (contract, "Cache", rules 7 and 8).
//!
//! Redis: a redis-server owned by the test (a child process on a free port) is killed by its PID
//! in the middle of traffic and started again on the same port, while two replicas use it.
//! PostgreSQL: an instance reaches its database through a TCP proxy of the test, which is stopped
//! (cutting the open connections too) and started again on the same port.
//!
//! Every wait is bounded; the redis-server child and the proxy tasks are stopped by guards, also
//! when an assertion fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::time::timeout;
use uuid::Uuid;

use crate::helpers::{
    assert_error, header, into_json, minimal, ready, spawn_replicas_on, start, test_config,
    time_until_redis, TestApp, TestDatabase,
};
use crate::support::proxy::{through_proxy, Proxy};
use crate::support::redis_server::RedisServer;

// ---------------------------------------------------------------------------------------------
// A redis-server of the test's own.

// ---------------------------------------------------------------------------------------------
// Requests.

/// One answer: status, `X-Cache`, `X-Cache-Tier` and the JSON body (`Null` when empty).
struct Answer {
    status: u16,
    cache: String,
    tier: String,
    etag: String,
    body: Value,
}

impl Answer {
    fn is_l1_hit(&self) -> bool {
        self.cache == "HIT" && self.tier == "L1"
    }
}

async fn fetch(app: &TestApp, path: &str, token: &str) -> Answer {
    fetch_with(app, path, token, &[]).await
}

async fn fetch_with(app: &TestApp, path: &str, token: &str, headers: &[(&str, &str)]) -> Answer {
    let response = app.get_with(path, token, headers).await;
    let (cache, tier, etag) = (
        header(&response, "x-cache"),
        header(&response, "x-cache-tier"),
        header(&response, "etag"),
    );
    let (status, body) = into_json(response).await;
    Answer {
        status,
        cache,
        tier,
        etag,
        body,
    }
}

/// `GET path` must answer 200; returns the answer.
async fn fetch_ok(app: &TestApp, path: &str, token: &str) -> Answer {
    let answer = fetch(app, path, token).await;
    assert_eq!(
        answer.status, 200,
        "GET {path} on {}: {}",
        app.address, answer.body
    );
    answer
}

async fn count_of(app: &TestApp, module: &str, token: &str) -> (i64, Answer) {
    let answer = fetch_ok(app, &format!("/api/v2/{module}/count"), token).await;
    let count = answer.body["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("count without a number: {}", answer.body));
    (count, answer)
}

/// What PostgreSQL holds for `module` of `tenant`.
async fn count_in_database(app: &TestApp, module: &str, tenant: Uuid) -> i64 {
    use aishacrm::db::schema::{accounts, leads};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let mut conn = app.db().await;
    let counted = match module {
        "accounts" => {
            accounts::table
                .filter(accounts::tenant_id.eq(tenant))
                .count()
                .get_result(&mut conn)
                .await
        }
        "leads" => {
            leads::table
                .filter(leads::tenant_id.eq(tenant))
                .count()
                .get_result(&mut conn)
                .await
        }
        other => panic!("no database count for {other}"),
    };
    counted.expect("counting in the database")
}

async fn cache_stats(app: &TestApp, token: &str) -> Value {
    fetch_ok(app, "/api/v2/cache/stats", token).await.body
}

// ---------------------------------------------------------------------------------------------
// 1. Redis faults.

/// The writes of one module, all made by one instance, in order.
#[derive(Default)]
struct Ledger {
    /// POSTs sent (acknowledged or not).
    started: AtomicI64,
    /// (when the 201 arrived, how many records that made).
    acked: Mutex<Vec<(Instant, i64)>>,
}

impl Ledger {
    /// The count acknowledged before `moment`.
    fn acked_before(&self, moment: Instant) -> i64 {
        let acked = self.acked.lock().unwrap();
        acked
            .iter()
            .rev()
            .find(|(when, _)| *when < moment)
            .map_or(0, |(_, count)| *count)
    }

    fn acked(&self) -> i64 {
        self.acked.lock().unwrap().last().map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Default)]
struct Traffic {
    reads: u64,
    writes: u64,
    writes_after_kill: u64,
    reads_after_kill: u64,
    l1_hits: u64,
    l2_hits: u64,
    misses: u64,
}

/// How old an answer about another instance's writes may be: the degraded L1 lifetime (1 s)
/// plus room for a slow machine. Far below any configured TTL, so a missed invalidation shows.
const CROSS_INSTANCE_WINDOW: Duration = Duration::from_millis(2_000);

struct Worker<'a> {
    app: &'a TestApp,
    token: &'a str,
    own: &'static str,
    other: &'static str,
    own_ledger: &'a Ledger,
    other_ledger: &'a Ledger,
    killed_at: &'a Mutex<Option<Instant>>,
}

impl Worker<'_> {
    fn after_kill(&self) -> bool {
        self.killed_at.lock().unwrap().is_some()
    }

    fn tally(&self, traffic: &mut Traffic, answer: &Answer) {
        traffic.reads += 1;
        if self.after_kill() {
            traffic.reads_after_kill += 1;
        }
        match (answer.cache.as_str(), answer.tier.as_str()) {
            ("HIT", "L1") => traffic.l1_hits += 1,
            ("HIT", _) => traffic.l2_hits += 1,
            _ => traffic.misses += 1,
        }
    }

    /// A count of the other instance's module must lie between what was acknowledged a
    /// window before the read began and what had been sent by the time it answered.
    fn check_other(&self, what: &str, value: i64, began: Instant) {
        let floor = self
            .other_ledger
            .acked_before(began.checked_sub(CROSS_INSTANCE_WINDOW).unwrap_or(began));
        let ceiling = self.other_ledger.started.load(Ordering::SeqCst);
        assert!(
            (floor..=ceiling).contains(&value),
            "{} (which writes {}): {} {what} = {value}, but {floor} were acknowledged more \
             than {CROSS_INSTANCE_WINDOW:?} before and only {ceiling} were ever sent \
             (after kill: {})",
            self.app.address,
            self.own,
            self.other,
            self.after_kill()
        );
    }

    async fn write(&self, traffic: &mut Traffic) {
        let own = self.own;
        self.own_ledger.started.fetch_add(1, Ordering::SeqCst);
        let response = self
            .app
            .post(&format!("/api/v2/{own}"), self.token, &minimal(own))
            .await;
        let (status, created) = into_json(response).await;
        assert_eq!(
            status,
            201,
            "POST {own} on {} (after kill: {}): {created}",
            self.app.address,
            self.after_kill()
        );
        let total = {
            let mut acked = self.own_ledger.acked.lock().unwrap();
            let total = acked.last().map_or(0, |(_, n)| *n) + 1;
            acked.push((Instant::now(), total));
            total
        };
        traffic.writes += 1;
        if self.after_kill() {
            traffic.writes_after_kill += 1;
        }
        // Read-your-writes on the writing instance, whatever the state of Redis.
        let context = format!(
            "on {} right after its own write #{total} of {own} (after kill: {})",
            self.app.address,
            self.after_kill()
        );
        let (count, answer) = count_of(self.app, own, self.token).await;
        self.tally(traffic, &answer);
        assert_eq!(count, total, "count {context} ({})", answer.cache);
        let answer = fetch_ok(self.app, &format!("/api/v2/{own}?limit=5"), self.token).await;
        self.tally(traffic, &answer);
        assert_eq!(
            answer.body["data"][0]["id"], created["id"],
            "newest of the list {context} ({})",
            answer.cache
        );
        let answer = fetch_ok(self.app, "/api/v2/dashboard/bundle", self.token).await;
        self.tally(traffic, &answer);
        assert_eq!(
            answer.body["counts"][own],
            json!(total),
            "bundle counts {context} ({})",
            answer.cache
        );
        let path = format!("/api/v2/{own}/{}", created["id"].as_str().unwrap());
        let (status, fetched) = self.app.get_json(&path, self.token).await;
        assert_eq!((status, &fetched), (200, &created), "GET by id {context}");
    }

    async fn read(&self, traffic: &mut Traffic, turn: u64) {
        let began = Instant::now();
        match turn % 5 {
            0 => {
                let (count, answer) = count_of(self.app, self.own, self.token).await;
                self.tally(traffic, &answer);
                let acked = self.own_ledger.acked();
                assert_eq!(
                    count,
                    acked,
                    "{} count on {}, which made every one of them (after kill: {})",
                    self.own,
                    self.app.address,
                    self.after_kill()
                );
            }
            1 => {
                let (count, answer) = count_of(self.app, self.other, self.token).await;
                self.tally(traffic, &answer);
                self.check_other("count", count, began);
            }
            2 => {
                let answer = fetch_ok(self.app, "/api/v2/dashboard/bundle", self.token).await;
                self.tally(traffic, &answer);
                let counts = &answer.body["counts"];
                assert_eq!(
                    counts[self.own],
                    json!(self.own_ledger.acked()),
                    "bundle on {} (after kill: {})",
                    self.app.address,
                    self.after_kill()
                );
                self.check_other("bundle count", counts[self.other].as_i64().unwrap(), began);
            }
            3 => {
                let answer = fetch_ok(self.app, "/api/v2/opportunities/stats", self.token).await;
                self.tally(traffic, &answer);
                assert_eq!(answer.body["total"]["count"], json!(0), "{}", answer.body);
            }
            _ => {
                let path = format!("/api/v2/{}?limit=200", self.other);
                let answer = fetch_ok(self.app, &path, self.token).await;
                self.tally(traffic, &answer);
                let listed = answer.body["data"].as_array().unwrap().len() as i64;
                self.check_other("list length", listed, began);
            }
        }
    }

    /// Reads until `until`, writing once every 80 ms or so in between.
    async fn run(&self, until: Instant) -> Traffic {
        let mut traffic = Traffic::default();
        let mut turn = 0u64;
        let mut last_write = Instant::now();
        while Instant::now() < until {
            turn += 1;
            if last_write.elapsed() >= Duration::from_millis(80) {
                self.write(&mut traffic).await;
                last_write = Instant::now();
            } else {
                self.read(&mut traffic, turn).await;
            }
        }
        traffic
    }
}

/// (a) Redis is killed in the middle of reads and writes on two replicas: every answer is a
/// correct 2xx from PostgreSQL or L1, read-your-writes holds on the writing instance, and
/// readiness reports Redis down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_mid_traffic_keeps_every_answer_correct() {
    let mut redis = RedisServer::start().await;
    let apps = spawn_replicas_on(2, &redis.url(), |config| {
        config.cache_degraded_l1_ttl_secs = 1;
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let tenant = Uuid::new_v4();
    let token = a.token(tenant);

    let (accounts, leads) = (Ledger::default(), Ledger::default());
    let killed_at = Mutex::new(None);
    // Warm both instances: a record of each written module, every cached route read twice.
    let worker_a = Worker {
        app: a,
        token: &token,
        own: "accounts",
        other: "leads",
        own_ledger: &accounts,
        other_ledger: &leads,
        killed_at: &killed_at,
    };
    let worker_b = Worker {
        app: b,
        token: &token,
        own: "leads",
        other: "accounts",
        own_ledger: &leads,
        other_ledger: &accounts,
        killed_at: &killed_at,
    };
    let mut warmed = Traffic::default();
    worker_a.write(&mut warmed).await;
    worker_b.write(&mut warmed).await;
    for app in [a, b] {
        for path in [
            "/api/v2/accounts/count",
            "/api/v2/leads/count",
            "/api/v2/accounts?limit=200",
            "/api/v2/leads?limit=200",
            "/api/v2/dashboard/bundle",
            "/api/v2/opportunities/stats",
        ] {
            fetch_ok(app, path, &token).await;
            let again = fetch_ok(app, path, &token).await;
            assert_eq!(again.cache, "HIT", "warm {path} on {}", app.address);
        }
    }

    let pid = redis.pid().expect("redis-server running");
    let traffic_for = Duration::from_millis(3_500);
    let until = Instant::now() + traffic_for;
    let killer = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        *killed_at.lock().unwrap() = Some(Instant::now());
        redis.kill();
    };
    let (traffic_a, traffic_b, ()) = timeout(traffic_for + Duration::from_secs(60), async {
        tokio::join!(worker_a.run(until), worker_b.run(until), killer)
    })
    .await
    .expect("the traffic loop hung");
    eprintln!("redis-server pid {pid} killed; traffic on A: {traffic_a:?}; on B: {traffic_b:?}");
    for (name, traffic) in [("A", &traffic_a), ("B", &traffic_b)] {
        assert!(
            traffic.writes_after_kill >= 1 && traffic.reads_after_kill >= 10,
            "instance {name} did too little after the kill to prove anything: {traffic:?}"
        );
        assert!(
            traffic.l1_hits + traffic.l2_hits > 0,
            "instance {name} never answered from cache: {traffic:?}"
        );
    }

    // Readiness: Redis configured and down.
    for app in [a, b] {
        time_until_redis(app, "down", Duration::from_secs(10)).await;
        assert_eq!(
            ready(app).await,
            (
                200,
                json!({"status": "degraded", "database": "up", "redis": "down"})
            )
        );
    }

    // Once the degraded L1 lifetime has passed, both instances agree with PostgreSQL.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for module in ["accounts", "leads"] {
        let truth = count_in_database(a, module, tenant).await;
        let ledger = if module == "accounts" {
            &accounts
        } else {
            &leads
        };
        assert_eq!(
            truth,
            ledger.acked(),
            "{module}: rows vs acknowledged POSTs"
        );
        for app in [a, b] {
            let (count, answer) = count_of(app, module, &token).await;
            assert_eq!(
                count, truth,
                "{module} count on {} ({})",
                app.address, answer.cache
            );
            let bundle = fetch_ok(app, "/api/v2/dashboard/bundle", &token).await;
            assert_eq!(bundle.body["counts"][module], json!(truth));
        }
    }
}

/// Waits until `app` answers the new `expected` count of `module` (polling every `every`,
/// for at most `limit`); returns how long it took.
async fn time_until_count(
    app: &TestApp,
    module: &str,
    token: &str,
    expected: i64,
    every: Duration,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let (count, answer) = count_of(app, module, token).await;
        if count == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} still answers {module} count {count} ({} {}) instead of {expected} after {limit:?}",
            app.address,
            answer.cache,
            answer.tier
        );
        tokio::time::sleep(every).await;
    }
}

/// (b) With Redis down, another instance's L1 keeps an answer at most
/// `CACHE_DEGRADED_L1_TTL_SECS` (1 s here), whether the entry was stored before the outage or
/// during it; the writing instance sees its own write at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_l1_entries_live_at_most_the_degraded_ttl() {
    let mut redis = RedisServer::start().await;
    let apps = spawn_replicas_on(2, &redis.url(), |config| {
        config.cache_degraded_l1_ttl_secs = 1;
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let token = a.token(Uuid::new_v4());
    a.create("accounts", &token, minimal("accounts")).await;
    // B holds the answer in L1 (600 s TTL) before the outage.
    count_of(b, "accounts", &token).await;
    let (count, answer) = count_of(b, "accounts", &token).await;
    assert_eq!((count, answer.is_l1_hit()), (1, true), "warm L1 on B");

    redis.kill();
    for app in [a, b] {
        time_until_redis(app, "down", Duration::from_secs(10)).await;
    }

    let mut expected = 1;
    let mut lags = Vec::new();
    for round in 0..3 {
        if round > 0 {
            // An entry B stores while Redis is down, as young as possible at the write.
            let (count, first) = count_of(b, "accounts", &token).await;
            let (_, second) = count_of(b, "accounts", &token).await;
            assert_eq!(count, expected);
            eprintln!(
                "round {round}: B answers {} then {} {}",
                first.cache, second.cache, second.tier
            );
        }
        a.create("accounts", &token, minimal("accounts")).await;
        let written = Instant::now();
        expected += 1;
        let (count, answer) = count_of(a, "accounts", &token).await;
        assert_eq!(
            count, expected,
            "read-your-writes on A with Redis down ({})",
            answer.cache
        );
        let lag = time_until_count(
            b,
            "accounts",
            &token,
            expected,
            Duration::from_millis(20),
            Duration::from_secs(5),
        )
        .await;
        let since_write = written.elapsed();
        lags.push(since_write);
        assert!(
            lag < Duration::from_millis(2_000),
            "round {round}: B showed A's write after {lag:?}; CACHE_DEGRADED_L1_TTL_SECS is 1"
        );
        // The bundle (stored on B before the write, or now) agrees as well.
        let bundle = fetch_ok(b, "/api/v2/dashboard/bundle", &token).await;
        let stale_for = written.elapsed();
        if bundle.body["counts"]["accounts"] != json!(expected) {
            assert!(
                stale_for < Duration::from_millis(2_000),
                "B's bundle still says {} {stale_for:?} after the write",
                bundle.body["counts"]["accounts"]
            );
        }
    }
    eprintln!("degraded cross-instance lags (write on A -> B shows it): {lags:?}");
}

/// (c) Redis comes back on the same port: both instances report it up by themselves, drop
/// their L1 once (they may have missed invalidations), and L2 and cross-instance invalidation
/// work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_returns_l2_and_the_bus_resume_and_l1_is_dropped_once() {
    let mut redis = RedisServer::start().await;
    // A long degraded lifetime: what B keeps in L1 during the outage survives until Redis
    // returns, so only the drop on reconnect can make B forget it.
    let apps = spawn_replicas_on(2, &redis.url(), |config| {
        config.cache_degraded_l1_ttl_secs = 60;
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let tenant = Uuid::new_v4();
    let token = a.token(tenant);
    a.create("accounts", &token, minimal("accounts")).await;

    redis.kill();
    let killed = Instant::now();
    for app in [a, b] {
        time_until_redis(app, "down", Duration::from_secs(10)).await;
    }
    eprintln!(
        "both instances reported redis down {:?} after the kill",
        killed.elapsed()
    );

    // During the outage both instances hold the count in L1.
    for app in [a, b] {
        count_of(app, "accounts", &token).await;
        let (count, answer) = count_of(app, "accounts", &token).await;
        assert_eq!(count, 1);
        assert!(
            answer.is_l1_hit(),
            "precondition: {} keeps answers in L1 while Redis is down ({} {})",
            app.address,
            answer.cache,
            answer.tier
        );
    }
    // A write on A that B cannot hear about.
    a.create("accounts", &token, minimal("accounts")).await;
    assert_eq!(count_of(a, "accounts", &token).await.0, 2);
    let (b_during, b_answer) = count_of(b, "accounts", &token).await;
    eprintln!(
        "during the outage B answers {b_during} ({} {}) after A's write",
        b_answer.cache, b_answer.tier
    );
    // A few seconds down, so that the reconnect backoff reaches its cap.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let restarted = Instant::now();
    redis.restart().await;
    let redis_back = restarted.elapsed();
    let (up_a, up_b) = tokio::join!(
        time_until_redis(a, "up", Duration::from_secs(15)),
        time_until_redis(b, "up", Duration::from_secs(15))
    );
    eprintln!(
        "redis-server answered PING {redis_back:?} after restart; instances up after \
         A {:?}, B {:?} (from restart)",
        redis_back + up_a,
        redis_back + up_b
    );
    // Let the reconnect path (replay of writes made while down, drop of L1) finish.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for app in [a, b] {
        assert_eq!(
            ready(app).await,
            (
                200,
                json!({"status": "ok", "database": "up", "redis": "up"})
            )
        );
        let stats = cache_stats(app, &token).await;
        assert_eq!(stats["redis"], "up");
        assert_eq!(
            stats["l1"]["entries"],
            json!(0),
            "L1 of {} after the reconnect, before any read: {stats}",
            app.address
        );
    }

    // The answers held in L1 during the outage are gone: no L1 hit, and B shows A's write.
    for app in [b, a] {
        let (count, answer) = count_of(app, "accounts", &token).await;
        assert!(
            !answer.is_l1_hit(),
            "{} answered from the L1 it had before the reconnect",
            app.address
        );
        assert_eq!(
            count, 2,
            "{} after the reconnect ({} {})",
            app.address, answer.cache, answer.tier
        );
    }
    assert_eq!(count_in_database(a, "accounts", tenant).await, 2);

    // Cross-instance invalidation, both directions, within 100 ms (polling every 5 ms).
    let mut expected = 2;
    let mut lags = Vec::new();
    for round in 0..6 {
        let (writer, reader) = if round % 2 == 0 { (a, b) } else { (b, a) };
        count_of(reader, "accounts", &token).await;
        let (count, answer) = count_of(reader, "accounts", &token).await;
        assert_eq!(count, expected);
        assert!(
            answer.is_l1_hit(),
            "round {round}: {} keeps answers in L1 again after the reconnect (dropped once, \
             not for good): {} {}",
            reader.address,
            answer.cache,
            answer.tier
        );
        writer.create("accounts", &token, minimal("accounts")).await;
        expected += 1;
        let lag = time_until_count(
            reader,
            "accounts",
            &token,
            expected,
            Duration::from_millis(5),
            Duration::from_secs(2),
        )
        .await;
        lags.push(lag);
        assert!(
            lag <= Duration::from_millis(100),
            "round {round}: {} showed the write of {} after {lag:?}",
            reader.address,
            writer.address
        );
    }
    eprintln!("cross-instance invalidation lags after the reconnect: {lags:?}");

    // L2 again: a miss on one instance is an L2 hit on the other.
    for (module, first, second) in [("leads", a, b), ("contacts", b, a)] {
        let path = format!("/api/v2/{module}/count");
        let miss = fetch_ok(first, &path, &token).await;
        assert_eq!(miss.cache, "MISS", "{path} on {}", first.address);
        let hit = fetch_ok(second, &path, &token).await;
        assert_eq!(
            (hit.cache.as_str(), hit.tier.as_str()),
            ("HIT", "L2"),
            "{path} on {} after a miss on {}",
            second.address,
            first.address
        );
        assert_eq!(hit.body, miss.body);
        assert_eq!(hit.etag, miss.etag);
    }
    let stats = cache_stats(b, &token).await;
    assert!(
        stats["invalidations"]["remote"].as_u64().unwrap_or(0) >= 3,
        "B heard A's writes on the bus: {stats}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. PostgreSQL unreachable.

/// An instance whose database connections all go through `proxy`.
async fn start_behind(proxy: &Proxy, database: &Arc<TestDatabase>, fail_safe_secs: u64) -> TestApp {
    let (url, _) = through_proxy(&database.url, proxy.port);
    let mut config = test_config(&url);
    config.redis_url = "none".into();
    config.db_acquire_timeout_ms = 500;
    config.db_statement_timeout_ms = 1_000;
    config.cache_fail_safe_secs = fail_safe_secs;
    config.cache_ttl_overrides = HashMap::from([("ACCOUNTS_COUNT".to_owned(), 1)]);
    // One tenant's requests at once, each waiting on the lost database: its share of the pool
    // would answer 429 before the outage's 503 (tests/api/fairness.rs covers the share).
    config.tenant_max_db_share = 1.0;
    start(config, database.clone()).await
}

/// A bundle whose parts are past their TTL, with PostgreSQL unreachable, answers STALE with the
/// bundle last composed, and again on the next read: a composition of stale parts is never
/// stored as fresh, so no later read takes it for a HIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_of_stale_parts_stays_stale_while_the_database_is_down() {
    let database = Arc::new(TestDatabase::create().await);
    let (_, upstream) = through_proxy(&database.url, 0);
    let mut proxy = Proxy::start(&upstream).await;
    let (url, _) = through_proxy(&database.url, proxy.port);
    let mut config = test_config(&url);
    config.redis_url = "none".into();
    config.db_acquire_timeout_ms = 500;
    config.db_statement_timeout_ms = 1_000;
    config.cache_fail_safe_secs = 30;
    config.cache_ttl_overrides = HashMap::from([("DASHBOARD_BUNDLE".to_owned(), 1)]);
    config.tenant_max_db_share = 1.0;
    let app = start(config, database.clone()).await;
    let token = app.token(Uuid::new_v4());
    app.create("leads", &token, minimal("leads")).await;
    let composed = fetch_ok(&app, "/api/v2/dashboard/bundle", &token).await;
    assert_eq!(composed.cache, "MISS");

    proxy.stop().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for read in ["first", "second"] {
        let started = Instant::now();
        let stale = timeout(
            Duration::from_secs(10),
            fetch(&app, "/api/v2/dashboard/bundle", &token),
        )
        .await
        .expect("the bundle hung with the database down");
        assert_eq!(
            (stale.status, stale.cache.as_str(), &stale.body),
            (200, "STALE", &composed.body),
            "the {read} read of an expired bundle with the database down"
        );
        assert_eq!(stale.etag, composed.etag);
        eprintln!("{read} STALE bundle answered in {:?}", started.elapsed());
    }
}

/// Asserts `503 database_unavailable` for `what`, answered within 5 s.
async fn assert_unavailable(
    what: &str,
    request: impl std::future::Future<Output = reqwest::Response>,
) {
    let started = Instant::now();
    let response = timeout(Duration::from_secs(10), request)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for 10 s with the database down"));
    let elapsed = started.elapsed();
    assert_error(response, 503, "database_unavailable").await;
    assert!(
        elapsed < Duration::from_secs(5),
        "{what} took {elapsed:?} to answer 503"
    );
}

/// With PostgreSQL unreachable, fresh entries still hit, expired ones within fail-safe answer
/// STALE, everything else is a quick 503; with fail-safe off the expired entry is a 503; when
/// the database is back, the pool recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_serves_hits_and_stale_entries_and_recovers() {
    let database = Arc::new(TestDatabase::create().await);
    let (_, upstream) = through_proxy(&database.url, 0);
    let mut proxy = Proxy::start(&upstream).await;
    let safe = start_behind(&proxy, &database, 30).await;
    let unsafe_ = start_behind(&proxy, &database, 0).await;
    let tenant = Uuid::new_v4();
    let (token, token_z) = (safe.token(tenant), unsafe_.token(tenant));

    let account = safe.create("accounts", &token, minimal("accounts")).await;
    safe.create("accounts", &token, minimal("accounts")).await;
    safe.create("opportunities", &token, minimal("opportunities"))
        .await;
    let account_path = format!("/api/v2/accounts/{}", account["id"].as_str().unwrap());

    // Warm: the count of accounts expires after 1 s, that of opportunities after 600 s.
    let accounts_miss = fetch_ok(&safe, "/api/v2/accounts/count", &token).await;
    let stored_at = Instant::now();
    assert_eq!(
        (accounts_miss.cache.as_str(), &accounts_miss.body),
        ("MISS", &json!({"count": 2}))
    );
    let z_miss = fetch_ok(&unsafe_, "/api/v2/accounts/count", &token_z).await;
    assert_eq!(z_miss.body, json!({"count": 2}));
    fetch_ok(&safe, "/api/v2/opportunities/count", &token).await;
    let opportunities = fetch_ok(&safe, "/api/v2/opportunities/count", &token).await;
    assert_eq!(
        (opportunities.cache.as_str(), &opportunities.body),
        ("HIT", &json!({"count": 1}))
    );

    proxy.stop().await;
    let stopped = Instant::now();

    // A fresh entry: a hit, as if nothing happened.
    let hit = fetch(&safe, "/api/v2/opportunities/count", &token).await;
    assert_eq!(
        (hit.status, hit.cache.as_str(), &hit.body),
        (200, "HIT", &opportunities.body),
        "a fresh entry with the database down"
    );
    assert_eq!(hit.etag, opportunities.etag);

    // An expired entry within fail-safe: STALE, the old body and ETag, quickly.
    if let Some(wait) = Duration::from_millis(1_200).checked_sub(stored_at.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let started = Instant::now();
    let stale = timeout(
        Duration::from_secs(10),
        fetch(&safe, "/api/v2/accounts/count", &token),
    )
    .await
    .expect("an expired entry hung with the database down");
    let elapsed = started.elapsed();
    assert_eq!(
        (stale.status, stale.cache.as_str(), &stale.body),
        (200, "STALE", &accounts_miss.body),
        "an expired entry within CACHE_FAIL_SAFE_SECS with the database down"
    );
    assert_eq!(stale.etag, accounts_miss.etag);
    assert!(elapsed < Duration::from_secs(5), "STALE took {elapsed:?}");
    eprintln!("STALE answered in {elapsed:?}");

    // Nothing cached to fall back on: 503 quickly.
    assert_unavailable("a list never read", safe.get("/api/v2/leads", &token)).await;
    assert_unavailable(
        "a count never read",
        safe.get("/api/v2/leads/count", &token),
    )
    .await;
    assert_unavailable("a read by id", safe.get(&account_path, &token)).await;
    assert_unavailable(
        "a create",
        safe.post("/api/v2/accounts", &token, &minimal("accounts")),
    )
    .await;
    assert_unavailable(
        "an update",
        safe.patch(&account_path, &token, &json!({"name": "Renamed"})),
    )
    .await;
    assert_unavailable("a delete", safe.delete(&account_path, &token)).await;
    // Fail-safe off: the expired entry is not served.
    assert_unavailable(
        "an expired entry with CACHE_FAIL_SAFE_SECS=0",
        unsafe_.get("/api/v2/accounts/count", &token_z),
    )
    .await;
    let (status, body) = timeout(Duration::from_secs(10), ready(&safe))
        .await
        .expect("readiness hung");
    assert_eq!(
        (status, &body["database"]),
        (503, &json!("down")),
        "readiness with the database down: {body}"
    );
    let stats = cache_stats(&safe, &token).await;
    assert!(stats["stale"].as_u64().unwrap_or(0) >= 1, "{stats}");
    eprintln!("database down for {:?} of checks", stopped.elapsed());

    // The database returns on the same port: the pools recover by themselves.
    proxy.restart().await;
    let restarted = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let response = timeout(Duration::from_secs(10), safe.get("/api/v2/leads", &token))
            .await
            .expect("a list hung after the database returned");
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "the pool did not recover within 10 s: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the pool recovered {:?} after the proxy returned ({attempts} attempts)",
        restarted.elapsed()
    );
    // Nothing the failed writes sent was committed; reads, writes, reads by id work again.
    let fresh = fetch_ok(&safe, "/api/v2/accounts/count", &token).await;
    assert_eq!(
        (fresh.cache.as_str(), &fresh.body),
        ("MISS", &json!({"count": 2})),
        "after recovery"
    );
    let (status, fetched) = safe.get_json(&account_path, &token).await;
    assert_eq!((status, fetched["name"].clone()), (200, json!("Acme")));
    safe.create("accounts", &token, minimal("accounts")).await;
    assert_eq!(count_of(&safe, "accounts", &token).await.0, 3);
    let (status, _) = into_json(
        timeout(
            Duration::from_secs(10),
            unsafe_.get("/api/v2/accounts/count", &token_z),
        )
        .await
        .expect("the fail-safe-off instance hung after recovery"),
    )
    .await;
    assert_eq!(status, 200, "the second instance recovers too");
    assert_eq!(count_of(&unsafe_, "accounts", &token_z).await.0, 3);
    unsafe_.create("leads", &token_z, minimal("leads")).await;
    let (status, body) = ready(&safe).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "ok", "database": "up", "redis": "disabled"})
        )
    );
}

/// How one request fared, for the report of a test that collects several.
async fn outcome(
    what: &str,
    limit: Duration,
    request: impl std::future::Future<Output = reqwest::Response>,
) -> (String, bool, String) {
    let started = Instant::now();
    match timeout(limit, request).await {
        Err(_) => (
            what.to_owned(),
            false,
            format!("no answer within {limit:?}"),
        ),
        Ok(response) => {
            let elapsed = started.elapsed();
            let cache = header(&response, "x-cache");
            let (status, body) = into_json(response).await;
            let acceptable = elapsed < Duration::from_secs(5)
                && (status == 503 && body["error"]["code"] == "database_unavailable"
                    || status == 200 && matches!(cache.as_str(), "HIT" | "STALE"));
            (
                what.to_owned(),
                acceptable,
                format!("{status} {cache} after {elapsed:?}: {body}"),
            )
        }
    }
}

/// How long a request may take before the partition test gives up on it.
const PARTITION_LIMIT: Duration = Duration::from_secs(8);

/// A partition instead of a clean stop: the proxy keeps every socket open but forwards nothing
/// (as when packets to the database are dropped, or its host freezes). Requests must still
/// answer within a few seconds (503, or a HIT/STALE from cache), never hang; once the
/// partition heals the pool recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_partition_answers_quickly_and_recovers() {
    let database = Arc::new(TestDatabase::create().await);
    let (_, upstream) = through_proxy(&database.url, 0);
    let mut proxy = Proxy::start(&upstream).await;
    let app = start_behind(&proxy, &database, 30).await;
    let token = app.token(Uuid::new_v4());
    let account = app.create("accounts", &token, minimal("accounts")).await;
    let account_path = format!("/api/v2/accounts/{}", account["id"].as_str().unwrap());
    // Cached answers (one expiring after 1 s), and idle pooled connections.
    assert_eq!(
        fetch_ok(&app, "/api/v2/accounts/count", &token).await.cache,
        "MISS"
    );
    let stored_at = Instant::now();
    assert_eq!(
        fetch_ok(&app, "/api/v2/opportunities/count", &token)
            .await
            .cache,
        "MISS"
    );

    proxy.freeze();
    let hit = fetch(&app, "/api/v2/opportunities/count", &token).await;
    assert_eq!((hit.status, hit.cache.as_str()), (200, "HIT"));
    if let Some(wait) = Duration::from_millis(1_200).checked_sub(stored_at.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    // All at once, so that a hang costs PARTITION_LIMIT once.
    let new_account = minimal("accounts");
    let (by_id, expired, list, create) = tokio::join!(
        outcome(
            "a read by id",
            PARTITION_LIMIT,
            app.get(&account_path, &token)
        ),
        outcome(
            "an expired entry (STALE expected)",
            PARTITION_LIMIT,
            app.get("/api/v2/accounts/count", &token),
        ),
        outcome(
            "a list never read",
            PARTITION_LIMIT,
            app.get("/api/v2/leads", &token),
        ),
        outcome(
            "a create",
            PARTITION_LIMIT,
            app.post("/api/v2/accounts", &token, &new_account),
        ),
    );
    let outcomes = [by_id, expired, list, create];
    let report: Vec<String> = outcomes
        .iter()
        .map(|(what, ok, detail)| {
            format!("{what}: {detail}{}", if *ok { "" } else { "  <-- FAILS" })
        })
        .collect();
    eprintln!("database partition:\n  {}", report.join("\n  "));

    // Heal: cut everything (as a restarted network would) and forward again.
    proxy.stop().await;
    proxy.restart().await;
    let restarted = Instant::now();
    loop {
        let response = timeout(Duration::from_secs(10), app.get(&account_path, &token))
            .await
            .expect("a read by id hung after the partition healed");
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "the pool did not recover within 10 s after the partition: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "recovered {:?} after the partition healed",
        restarted.elapsed()
    );
    assert!(
        outcomes.iter().all(|(_, ok, _)| *ok),
        "with the database partitioned away, answers must come within a few seconds:\n  {}",
        report.join("\n  ")
    );
}
