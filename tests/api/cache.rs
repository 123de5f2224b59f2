//! The cache seen from outside: two instances on one database and one Redis.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_error, header, into_json, minimal, spawn_app_with, spawn_replicas, TestApp,
};

/// Polls `path` on `app` until its JSON satisfies `done`; returns how long it took.
async fn until(app: &TestApp, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = app.get_json(path, token).await;
        if status == 200 && done(&body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} never showed the change: {body}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn miss_then_l1_hit_and_the_other_instance_hits_l2_then_l1_with_the_same_bytes() {
    let apps = spawn_replicas(2, |_| {}).await;
    let token = apps[0].token(Uuid::new_v4());
    apps[0]
        .create("accounts", &token, minimal("accounts"))
        .await;

    let first = apps[0].get("/api/v2/accounts", &token).await;
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(header(&first, "x-cache-tier"), "");
    let etag = header(&first, "etag");
    assert!(
        etag.starts_with('"') && etag.len() > 2,
        "strong ETag: {etag}"
    );
    let content_type = header(&first, "content-type");
    let bytes = first.bytes().await.unwrap();

    for (app, tier) in [(&apps[0], "L1"), (&apps[1], "L2"), (&apps[1], "L1")] {
        let response = app.get("/api/v2/accounts", &token).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(header(&response, "x-cache"), "HIT");
        assert_eq!(header(&response, "x-cache-tier"), tier);
        assert_eq!(header(&response, "etag"), etag);
        assert_eq!(header(&response, "content-type"), content_type);
        assert_eq!(
            response.bytes().await.unwrap(),
            bytes,
            "same bytes as the miss"
        );
    }
    // Routes that are not cached carry no X-Cache.
    let id = serde_json::from_slice::<Value>(&bytes).unwrap()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = apps[0].get(&format!("/api/v2/accounts/{id}"), &token).await;
    assert_eq!(header(&response, "x-cache"), "");
}

#[tokio::test]
async fn a_write_on_one_instance_is_seen_by_the_other_within_100_ms() {
    let apps = spawn_replicas(2, |_| {}).await;
    let token = apps[0].token(Uuid::new_v4());
    let mut slowest = Duration::ZERO;
    for expected in 1..=20 {
        // Both tiers of the other instance hold the old answer before the write.
        apps[1].get("/api/v2/leads/count", &token).await;
        let (cache, _, _) = apps[1].get_cached("/api/v2/leads/count", &token).await;
        assert_eq!(cache, "HIT");
        apps[0].create("leads", &token, minimal("leads")).await;
        // Read-your-writes on the writing instance: at once.
        let (_, count) = apps[0].get_json("/api/v2/leads/count", &token).await;
        assert_eq!(count["count"], expected);
        let took = until(&apps[1], "/api/v2/leads/count", &token, |body| {
            body["count"] == expected
        })
        .await;
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_millis(100), "slowest {slowest:?}");
}

#[tokio::test]
async fn invalidation_is_scoped_to_the_tenant_and_the_modules_that_depend_on_the_write() {
    let apps = spawn_replicas(2, |_| {}).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (token_a, token_b) = (apps[0].token(a), apps[0].token(b));
    let routes = [
        "/api/v2/accounts",
        "/api/v2/accounts/count",
        "/api/v2/opportunities",
        "/api/v2/opportunities/count",
        "/api/v2/opportunities/stats",
        "/api/v2/dashboard/bundle",
        "/api/v2/leads/count",
    ];
    for token in [&token_a, &token_b] {
        for route in routes {
            for app in &apps {
                app.get(route, token).await;
            }
        }
    }
    apps[0]
        .create("opportunities", &token_a, json!({"name": "Deal"}))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Each instance reads every route once more. An evicted answer is reloaded by the first
    // instance (MISS) and then found in L2 by the second; it is never the old L1 copy.
    for (index, app) in apps.iter().enumerate() {
        for route in routes {
            let (cache, tier, _) = app.get_cached(route, &token_b).await;
            assert_eq!(
                (cache.as_str(), tier.as_str()),
                ("HIT", "L1"),
                "tenant B's {route}"
            );
            let (cache, tier, _) = app.get_cached(route, &token_a).await;
            let evicted = route.contains("opportunities") || route.contains("dashboard");
            let expected = match (evicted, index) {
                (false, _) => ("HIT", "L1"),
                (true, 0) => ("MISS", ""),
                (true, _) => ("HIT", "L2"),
            };
            assert_eq!(
                (cache.as_str(), tier.as_str()),
                expected,
                "tenant A's {route} on instance {index}"
            );
        }
    }
    let (_, _, count) = apps[1]
        .get_cached("/api/v2/opportunities/count", &token_a)
        .await;
    assert_eq!(count["count"], 1);
}

async fn warm(app: &TestApp, token: &str, routes: &[&str]) {
    for route in routes {
        app.get(route, token).await;
        let (cache, _, _) = app.get_cached(route, token).await;
        assert_eq!(cache, "HIT", "{route} cached");
    }
}

#[tokio::test]
async fn deletes_cascade_to_the_modules_whose_references_they_clear_and_updates_do_not() {
    let prefix = crate::helpers::test_prefix();
    let apps = spawn_app_with(|config| {
        config.redis_url = crate::helpers::redis_url();
        config.cache_key_prefix = prefix.clone();
    })
    .await;
    let app = &apps;
    app.wait_for_redis("up").await;
    let token = app.token(Uuid::new_v4());
    let account = app.create("accounts", &token, minimal("accounts")).await;
    let contact = app
        .create(
            "contacts",
            &token,
            json!({"last_name": "Khan", "account_id": account["id"]}),
        )
        .await;
    app.create(
        "opportunities",
        &token,
        json!({"name": "Deal", "account_id": account["id"], "contact_id": contact["id"]}),
    )
    .await;
    let routes = [
        "/api/v2/contacts",
        "/api/v2/opportunities",
        "/api/v2/leads",
        "/api/v2/activities",
    ];

    // An update does not cascade.
    warm(app, &token, &routes).await;
    let account_path = format!("/api/v2/accounts/{}", account["id"].as_str().unwrap());
    let response = app
        .patch(&account_path, &token, &json!({"name": "Renamed"}))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    for route in routes {
        let (cache, _, _) = app.get_cached(route, &token).await;
        assert_eq!(cache, "HIT", "{route} after an account update");
    }

    // A contact delete evicts opportunities (their contact_id changed).
    let contact_path = format!("/api/v2/contacts/{}", contact["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&contact_path, &token).await.status().as_u16(),
        204
    );
    let (cache, _, body) = app.get_cached("/api/v2/opportunities", &token).await;
    assert_eq!(cache, "MISS");
    assert_eq!(body["data"][0]["contact_id"], Value::Null);
    let (cache, _, _) = app.get_cached("/api/v2/leads", &token).await;
    assert_eq!(cache, "HIT");

    // An account delete evicts contacts and opportunities.
    let other = app
        .create(
            "contacts",
            &token,
            json!({"last_name": "Silva", "account_id": account["id"]}),
        )
        .await;
    warm(app, &token, &routes).await;
    assert_eq!(
        app.delete(&account_path, &token).await.status().as_u16(),
        204
    );
    for route in routes {
        let (cache, _, body) = app.get_cached(route, &token).await;
        let evicted = route.ends_with("contacts") || route.ends_with("opportunities");
        assert_eq!(
            cache == "MISS",
            evicted,
            "{route} after an account delete: {cache}"
        );
        if route.ends_with("contacts") {
            assert_eq!(body["data"][0]["id"], other["id"]);
            assert_eq!(body["data"][0]["account_id"], Value::Null);
        }
    }
}

#[tokio::test]
async fn equal_queries_share_one_entry_whatever_the_order_or_defaults() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    let (first, _, body) = app
        .get_cached("/api/v2/opportunities?stage=proposal&limit=50", &token)
        .await;
    assert_eq!(first, "MISS");
    for same in [
        "/api/v2/opportunities?limit=50&stage=proposal",
        "/api/v2/opportunities?stage=proposal",
        "/api/v2/opportunities?stage=proposal&q=",
    ] {
        let (cache, _, same_body) = app.get_cached(same, &token).await;
        assert_eq!(cache, "HIT", "{same}");
        assert_eq!(same_body, body);
    }
    let (cache, _, _) = app
        .get_cached("/api/v2/opportunities?stage=negotiation", &token)
        .await;
    assert_eq!(cache, "MISS", "another filter is another entry");
}

#[tokio::test]
async fn if_none_match_answers_304_without_a_body() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    let response = app.get("/api/v2/accounts/count", &token).await;
    let etag = header(&response, "etag");
    for extra in [&etag, &format!("\"nope\", {etag}"), &"*".to_owned()] {
        let response = app
            .get_with(
                "/api/v2/accounts/count",
                &token,
                &[("If-None-Match", extra)],
            )
            .await;
        assert_eq!(response.status().as_u16(), 304, "If-None-Match: {extra}");
        assert_eq!(header(&response, "etag"), etag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let response = app
        .get_with(
            "/api/v2/accounts/count",
            &token,
            &[("If-None-Match", "\"other\"")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    // After a write the ETag changes and the old one no longer matches.
    app.create("accounts", &token, minimal("accounts")).await;
    let response = app
        .get_with(
            "/api/v2/accounts/count",
            &token,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "x-cache"), "MISS");
    assert_ne!(header(&response, "etag"), etag);
}

#[tokio::test]
async fn errors_are_never_cached_and_no_cache_reads_fresh() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    for _ in 0..2 {
        let response = app.get("/api/v2/opportunities?stage=won", &token).await;
        assert_eq!(header(&response, "x-cache"), "");
        assert_error(response, 400, "invalid_query").await;
        let response = app.get("/api/v2/opportunities", "not-a-token").await;
        assert_eq!(header(&response, "x-cache"), "");
        assert_error(response, 401, "unauthorized").await;
    }
    app.get("/api/v2/leads/count", &token).await;
    let response = app
        .get_with(
            "/api/v2/leads/count",
            &token,
            &[("Cache-Control", "no-cache")],
        )
        .await;
    assert_eq!(header(&response, "x-cache"), "BYPASS");
    assert!(!header(&response, "etag").is_empty());
    let (cache, _, _) = app.get_cached("/api/v2/leads/count", &token).await;
    assert_eq!(cache, "HIT");
}

#[tokio::test]
async fn cache_disabled_bypasses_everything() {
    let app = spawn_app_with(|config| config.cache_enabled = false).await;
    let token = app.token(Uuid::new_v4());
    for _ in 0..2 {
        let (cache, tier, body) = app.get_cached("/api/v2/accounts/count", &token).await;
        assert_eq!((cache.as_str(), tier.as_str()), ("BYPASS", ""));
        assert_eq!(body, json!({"count": 0}));
    }
    app.create("accounts", &token, minimal("accounts")).await;
    let (_, _, body) = app.get_cached("/api/v2/accounts/count", &token).await;
    assert_eq!(body, json!({"count": 1}));
}

#[tokio::test]
async fn ttl_overrides_apply_per_module_and_operation() {
    let apps = spawn_replicas(1, |config| {
        config
            .cache_ttl_overrides
            .insert("ACCOUNTS_COUNT".into(), 1);
    })
    .await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    app.get("/api/v2/accounts/count", &token).await;
    app.get("/api/v2/accounts", &token).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (cache, _, _) = app.get_cached("/api/v2/accounts/count", &token).await;
    assert_eq!(cache, "MISS", "1 s TTL");
    let (cache, _, _) = app.get_cached("/api/v2/accounts", &token).await;
    assert_eq!(cache, "HIT", "default 180 s TTL");
}

#[tokio::test]
async fn warm_fills_the_bundle_and_first_pages_and_counts() {
    let apps = spawn_replicas(2, |_| {}).await;
    let token = apps[0].token(Uuid::new_v4());
    apps[0]
        .create("opportunities", &token, minimal("opportunities"))
        .await;
    let response = apps[0]
        .request(
            reqwest::Method::POST,
            "/api/v2/cache/warm",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let mut paths = vec!["/api/v2/dashboard/bundle".to_owned()];
    for module in crate::helpers::MODULES {
        paths.push(format!("/api/v2/{module}"));
        paths.push(format!("/api/v2/{module}/count"));
    }
    let started = Instant::now();
    for path in &paths {
        loop {
            // The other instance finds every warmed answer in L2.
            let (cache, tier, _) = apps[1].get_cached(path, &token).await;
            if cache == "HIT" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} never warmed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tier;
        }
    }
    // Warmed bytes are what the route answers.
    let (_, _, bundle) = apps[0].get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(bundle["counts"]["opportunities"], 1);
}

#[tokio::test]
async fn admin_invalidate_and_stats_are_admin_only_and_tenant_scoped() {
    let apps = spawn_replicas(2, |_| {}).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (token_a, token_b) = (apps[0].token(a), apps[0].token(b));
    let member = apps[0].token_as(a, aishacrm::auth::Role::Member);
    let body = json!({"module": "accounts"});
    assert_error(
        apps[0]
            .post("/api/v2/cache/invalidate", &member, &body)
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        apps[0].get("/api/v2/cache/stats", &member).await,
        403,
        "forbidden",
    )
    .await;
    for bad in [
        json!({"module": "widgets"}),
        json!({}),
        json!({"module": 1}),
        json!({"module": "all", "x": 1}),
    ] {
        assert_error(
            apps[0]
                .post("/api/v2/cache/invalidate", &token_a, &bad)
                .await,
            400,
            "validation_failed",
        )
        .await;
    }

    for token in [&token_a, &token_b] {
        for route in [
            "/api/v2/accounts",
            "/api/v2/dashboard/bundle",
            "/api/v2/leads",
        ] {
            for app in &apps {
                app.get(route, token).await;
            }
        }
    }
    let (status, answer) = into_json(
        apps[0]
            .post(
                "/api/v2/cache/invalidate",
                &token_a,
                &json!({"module": "dashboard"}),
            )
            .await,
    )
    .await;
    assert_eq!(
        (status, answer),
        (200, json!({"invalidated": ["dashboard"]}))
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (index, app) in apps.iter().enumerate() {
        let (cache, tier, _) = app.get_cached("/api/v2/dashboard/bundle", &token_a).await;
        let expected = if index == 0 {
            ("MISS", "")
        } else {
            ("HIT", "L2")
        };
        assert_eq!((cache.as_str(), tier.as_str()), expected);
        assert_eq!(app.get_cached("/api/v2/accounts", &token_a).await.1, "L1");
        assert_eq!(
            app.get_cached("/api/v2/dashboard/bundle", &token_b).await.1,
            "L1"
        );
    }
    let (status, answer) = into_json(
        apps[1]
            .post(
                "/api/v2/cache/invalidate",
                &token_a,
                &json!({"module": "all"}),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["invalidated"].as_array().unwrap().len(), 6);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (index, app) in apps.iter().enumerate() {
        let (cache, tier, _) = app.get_cached("/api/v2/leads", &token_a).await;
        let expected = if index == 0 {
            ("MISS", "")
        } else {
            ("HIT", "L2")
        };
        assert_eq!((cache.as_str(), tier.as_str()), expected);
        assert_eq!(app.get_cached("/api/v2/leads", &token_b).await.1, "L1");
    }

    let (status, stats) = apps[0].get_json("/api/v2/cache/stats", &token_a).await;
    assert_eq!(status, 200);
    assert!(stats["hits"]["l1"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["misses"].as_u64().unwrap() >= 6, "{stats}");
    assert!(
        stats["invalidations"]["local"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["invalidations"]["remote"].as_u64().unwrap() >= 6,
        "{stats}"
    );
    assert!(stats["l1"]["entries"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["redis"], "up");
    let rate = stats["hit_rate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 1.0, "{stats}");
}

#[tokio::test]
async fn metrics_count_cache_results_without_tenant_ids() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    app.get("/api/v2/opportunities/stats", &token).await;
    app.get("/api/v2/opportunities/stats", &token).await;
    app.create("opportunities", &token, minimal("opportunities"))
        .await;
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "aishacrm_cache_requests_total{module=\"opportunities\",operation=\"stats\",result=\"miss\",tier=\"none\"} 1",
        "aishacrm_cache_requests_total{module=\"opportunities\",operation=\"stats\",result=\"hit\",tier=\"l1\"} 1",
        "aishacrm_cache_invalidations_total{module=\"opportunities\",source=\"local\"} 1",
        "aishacrm_cache_bus_connected 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(text.contains("aishacrm_cache_l1_entries"));
    assert!(text.contains("aishacrm_cache_l1_bytes"));
    assert!(text.contains(
        "aishacrm_http_request_duration_seconds_count{route=\"/api/v2/opportunities/stats\",method=\"GET\",status=\"200\"} 2"
    ), "{text}");
    assert!(
        !text.contains(&tenant.to_string()),
        "no tenant ids in labels"
    );
}

#[tokio::test]
async fn cache_flush_removes_only_this_services_entries_and_drops_every_l1() {
    let prefix = crate::helpers::test_prefix();
    let apps = spawn_replicas(2, |config| config.cache_key_prefix = prefix.clone()).await;
    let token = apps[0].token(Uuid::new_v4());
    for app in &apps {
        app.get("/api/v2/accounts/count", &token).await;
        let (cache, tier, _) = app.get_cached("/api/v2/accounts/count", &token).await;
        assert_eq!((cache.as_str(), tier.as_str()), ("HIT", "L1"));
    }
    // Another deployment's entry in the same Redis must survive.
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let foreign = format!("aishacrm-other-{}:{{t}}:c:00", Uuid::new_v4().simple());
    redis::cmd("SET")
        .arg(&foreign)
        .arg("x")
        .arg("EX")
        .arg(60)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args(["cache", "flush"])
        .env("REDIS_URL", crate::helpers::redis_url())
        .env("CACHE_KEY_PREFIX", &prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("removed 1 cache entries"), "{stdout}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let (cache, _, _) = apps[1].get_cached("/api/v2/accounts/count", &token).await;
    assert_eq!(cache, "MISS", "L1 dropped and L2 emptied");
    let (cache, tier, _) = apps[0].get_cached("/api/v2/accounts/count", &token).await;
    assert_eq!(
        (cache.as_str(), tier.as_str()),
        ("HIT", "L2"),
        "L1 dropped, refilled L2 used"
    );
    let left: Option<String> = redis::cmd("GET")
        .arg(&foreign)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(left.as_deref(), Some("x"));
    redis::cmd("DEL")
        .arg(&foreign)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
}
