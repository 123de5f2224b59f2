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
