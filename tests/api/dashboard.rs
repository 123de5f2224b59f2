//! Opportunity stats and the dashboard bundle.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, minimal, spawn_app, MODULES};

fn stage<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["stages"]
        .as_array()
        .and_then(|stages| stages.iter().find(|s| s["stage"] == name))
        .unwrap_or_else(|| panic!("stage {name} missing in {stats}"))
}

#[tokio::test]
async fn stats_lists_all_six_stages_in_order_with_sums() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let (status, empty) = app.get_json("/api/v2/opportunities/stats", &token).await;
    assert_eq!(status, 200);
    let order: Vec<&str> = empty["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "prospecting",
            "qualification",
            "proposal",
            "negotiation",
            "closed_won",
            "closed_lost"
        ]
    );
    assert_eq!(empty["total"], json!({"count": 0, "amount": 0.0}));

    for (stage, amount) in [
        ("proposal", 100.25),
        ("proposal", 50.5),
        ("closed_won", 1000.0),
        ("prospecting", 0.01),
    ] {
        app.create(
            "opportunities",
            &token,
            json!({"name": "Deal", "stage": stage, "amount": amount}),
        )
        .await;
    }
    let (_, stats) = app.get_json("/api/v2/opportunities/stats", &token).await;
    assert_eq!(stage(&stats, "proposal")["count"], json!(2));
    assert_eq!(stage(&stats, "proposal")["amount"], json!(150.75));
    assert_eq!(stage(&stats, "closed_won")["amount"], json!(1000.0));
    assert_eq!(stage(&stats, "negotiation")["count"], json!(0));
    assert_eq!(stage(&stats, "negotiation")["amount"], json!(0.0));
    assert_eq!(stats["total"], json!({"count": 4, "amount": 1150.76}));
}

#[tokio::test]
async fn stats_refuses_unknown_or_bad_parameters() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for query in ["stage=proposal", "account_id=nope", "limit=5"] {
        assert_error(
            app.get(&format!("/api/v2/opportunities/stats?{query}"), &token)
                .await,
            400,
            "invalid_query",
        )
        .await;
    }
}

#[tokio::test]
async fn bundle_has_counts_stages_and_the_five_newest_of_each_entity() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let mut newest: Vec<Value> = Vec::new();
    for module in MODULES {
        let mut created = Vec::new();
        for _ in 0..7 {
            created.push(app.create(module, &token, minimal(module)).await);
        }
        created.reverse();
        newest.push(json!(created[..5]));
    }
    app.create(
        "opportunities",
        &token,
        json!({"name": "Big", "stage": "closed_won", "amount": 10}),
    )
    .await;

    let (status, bundle) = app.get_json("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(status, 200);
    assert_eq!(
        bundle["counts"],
        json!({"accounts": 7, "contacts": 7, "leads": 7, "opportunities": 8, "activities": 7})
    );
    let stages = bundle["opportunity_stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6);
    assert_eq!(
        stages[0],
        json!({"stage": "prospecting", "count": 7, "amount": 0.0})
    );
    assert_eq!(
        stages[4],
        json!({"stage": "closed_won", "count": 1, "amount": 10.0})
    );
    for (module, expected) in MODULES.iter().zip(&newest) {
        let recent = &bundle["recent"][module];
        assert_eq!(recent.as_array().unwrap().len(), 5, "{module}");
        if *module != "opportunities" {
            assert_eq!(recent, expected, "{module}: the five newest, newest first");
        }
    }
    assert_eq!(bundle["recent"]["opportunities"][0]["name"], "Big");
    assert!(bundle["generated_at"].as_str().unwrap().ends_with('Z'));
}

/// The misses of the bundle's part for `module` this process has counted so far.
async fn part_misses(app: &crate::helpers::TestApp, module: &str) -> u64 {
    misses(app, module, "bundle").await
}

/// The misses of `module`'s `operation` this process has counted so far.
async fn misses(app: &crate::helpers::TestApp, module: &str, operation: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scraping /metrics")
        .text()
        .await
        .expect("metrics text");
    let series = format!(
        r#"aishacrm_cache_requests_total{{module="{module}",operation="{operation}",result="miss""#
    );
    text.lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The bundle is composed from parts: after a lead is created, the next bundle is a MISS (its
/// leads part was rebuilt) that recomputes only the leads part, and shows the new lead; the one
/// after is a HIT (the composed answer, cached) with the same ETag, and a 304 for it.
#[tokio::test]
async fn a_lead_post_rebuilds_only_the_leads_part_of_the_bundle() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        app.create(module, &token, minimal(module)).await;
    }
    let (cache, _, before) = app.get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(cache, "MISS");
    let (cache, tier, _) = app.get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!((cache.as_str(), tier.as_str()), ("HIT", "L1"));
    let misses_before: Vec<u64> =
        futures_util::future::join_all(MODULES.iter().map(|module| part_misses(&app, module)))
            .await;

    app.create("leads", &token, json!({"last_name": "New"}))
        .await;
    let (cache, _, after) = app.get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(cache, "MISS", "a part was rebuilt, so the bundle is no HIT");
    assert_eq!(after["counts"]["leads"], json!(2), "{after}");
    assert_eq!(after["recent"]["leads"][0]["last_name"], json!("New"));
    assert_eq!(after["counts"]["accounts"], before["counts"]["accounts"]);
    for (module, before) in MODULES.iter().zip(misses_before) {
        let rebuilt = part_misses(&app, module).await - before;
        let expected = u64::from(*module == "leads");
        assert_eq!(rebuilt, expected, "{module}'s part rebuilt {rebuilt} times");
    }

    let response = app.get("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(crate::helpers::header(&response, "x-cache"), "HIT");
    let etag = crate::helpers::header(&response, "etag");
    let again = app
        .get_with(
            "/api/v2/dashboard/bundle",
            &token,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(crate::helpers::header(&again, "etag"), etag);
}

/// The composed bundle is fresh only as long as its parts: with the stage breakdown (the stats
/// answer) living 1 s and the bundle 60 s, the bundle is composed again once the breakdown has
/// expired, recomputing the breakdown and nothing else.
#[tokio::test]
async fn the_composed_bundle_expires_with_its_soonest_part() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.cache_ttl_overrides =
            std::collections::HashMap::from([("OPPORTUNITIES_STATS".to_owned(), 1)]);
    })
    .await;
    let token = app.token(Uuid::new_v4());
    app.create("opportunities", &token, minimal("opportunities"))
        .await;
    let (cache, _, first) = app.get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(cache, "MISS");
    let (cache, _, _) = app.get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(cache, "HIT");
    let misses_before: Vec<u64> =
        futures_util::future::join_all(MODULES.iter().map(|module| part_misses(&app, module)))
            .await;
    let stats_before = stats_misses(&app).await;

    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let (cache, _, again) = app.get_cached("/api/v2/dashboard/bundle", &token).await;
    assert_eq!(
        cache, "MISS",
        "the stage breakdown expired, so the bundle did"
    );
    assert_eq!(again["opportunity_stages"], first["opportunity_stages"]);
    assert_eq!(stats_misses(&app).await, stats_before + 1);
    for (module, before) in MODULES.iter().zip(misses_before) {
        assert_eq!(part_misses(&app, module).await, before, "{module}'s part");
    }
}

/// The misses of the opportunities stats answer this process has counted so far.
async fn stats_misses(app: &crate::helpers::TestApp) -> u64 {
    misses(app, "opportunities", "stats").await
}
