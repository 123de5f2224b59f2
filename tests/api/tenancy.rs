//! Tenant isolation: a tenant never sees, changes or counts another tenant's records, and the
//! tenant comes from the token only, never from a body or a query parameter.

use std::collections::HashSet;

use aishacrm::db::accounts::AccountRow;
use aishacrm::db::schema::accounts;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, into_json, minimal, spawn_app, TestApp, MODULES};

fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}

/// A valid update body for `module` that would visibly change a record.
fn change(module: &str) -> Value {
    match module {
        "accounts" | "opportunities" => json!({"name": "Hijacked"}),
        "contacts" | "leads" => json!({"last_name": "Hijacked"}),
        "activities" => json!({"subject": "Hijacked"}),
        other => panic!("unknown module {other}"),
    }
}

/// Every id in every page of `module` for `token` (following cursors).
async fn listed_ids(app: &TestApp, token: &str, module: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut path = format!("/api/v2/{module}?limit=200");
    loop {
        let (status, body) = app.get_json(&path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        for record in body["data"].as_array().expect("data array") {
            assert!(ids.insert(id_of(record)), "{module}: a record listed twice");
        }
        match body["next_cursor"].as_str() {
            None => return ids,
            Some(cursor) => {
                let cursor = serde_urlencoded::to_string([("cursor", cursor)]).unwrap();
                path = format!("/api/v2/{module}?limit=200&{cursor}");
            }
        }
    }
}

async fn count(app: &TestApp, token: &str, module: &str) -> i64 {
    let (status, body) = app
        .get_json(&format!("/api/v2/{module}/count"), token)
        .await;
    assert_eq!(status, 200, "{module}: {body}");
    body["count"].as_i64().expect("count")
}

/// What a tenant can see of itself: every list, count, the stats and the bundle (without its
/// `generated_at`).
async fn snapshot(app: &TestApp, token: &str) -> Value {
    let mut seen = serde_json::Map::new();
    for module in MODULES {
        let (status, list) = app
            .get_json(&format!("/api/v2/{module}?limit=200"), token)
            .await;
        assert_eq!(status, 200);
        seen.insert(format!("{module} list"), list);
        seen.insert(
            format!("{module} count"),
            json!(count(app, token, module).await),
        );
    }
    let (status, stats) = app.get_json("/api/v2/opportunities/stats", token).await;
    assert_eq!(status, 200, "{stats}");
    seen.insert("stats".into(), stats);
    let (status, mut bundle) = app.get_json("/api/v2/dashboard/bundle", token).await;
    assert_eq!(status, 200, "{bundle}");
    assert!(bundle["generated_at"].is_string(), "{bundle}");
    bundle
        .as_object_mut()
        .expect("bundle object")
        .remove("generated_at");
    seen.insert("bundle".into(), bundle);
    Value::Object(seen)
}

/// Creates a small set of related records of every entity for a tenant; returns them by module.
async fn populate(app: &TestApp, token: &str, label: &str) -> Vec<(&'static str, Vec<Value>)> {
    let account = app
        .create(
            "accounts",
            token,
            json!({"name": format!("{label} account"), "industry": "tech"}),
        )
        .await;
    let account_id = id_of(&account);
    let contact = app
        .create(
            "contacts",
            token,
            json!({"last_name": format!("{label} contact"), "account_id": account_id}),
        )
        .await;
    let lead = app
        .create(
            "leads",
            token,
            json!({"last_name": format!("{label} lead"), "source": "web"}),
        )
        .await;
    let mut deals = Vec::new();
    for (stage, amount) in [("proposal", 100), ("closed_won", 250), ("proposal", 5)] {
        deals.push(
            app.create(
                "opportunities",
                token,
                json!({"name": format!("{label} deal"), "stage": stage, "amount": amount,
                       "account_id": account_id, "contact_id": id_of(&contact)}),
            )
            .await,
        );
    }
    let activity = app
        .create(
            "activities",
            token,
            json!({"type": "call", "subject": format!("{label} call"),
                   "related_type": "account", "related_id": account_id}),
        )
        .await;
    vec![
        ("accounts", vec![account]),
        ("contacts", vec![contact]),
        ("leads", vec![lead]),
        ("opportunities", deals),
        ("activities", vec![activity]),
    ]
}

fn ids(records: &[Value]) -> HashSet<String> {
    records.iter().map(id_of).collect()
}

#[tokio::test]
async fn another_tenants_record_is_not_found_by_id_and_stays_unchanged() {
    let app = spawn_app().await;
    let owner = app.token(Uuid::new_v4());
    let intruder = app.token(Uuid::new_v4());
    // The intruder has records of its own, so it is not an empty tenant.
    for module in MODULES {
        app.create(module, &intruder, minimal(module)).await;
    }
    for module in MODULES {
        let record = app.create(module, &owner, minimal(module)).await;
        let path = format!("/api/v2/{module}/{}", id_of(&record));

        assert_error(app.get(&path, &intruder).await, 404, "not_found").await;
        assert_error(
            app.put(&path, &intruder, &change(module)).await,
            404,
            "not_found",
        )
        .await;
        assert_error(
            app.patch(&path, &intruder, &change(module)).await,
            404,
            "not_found",
        )
        .await;
        assert_error(
            app.patch(&path, &intruder, &json!({})).await,
            404,
            "not_found",
        )
        .await;
        assert_error(app.delete(&path, &intruder).await, 404, "not_found").await;

        // Exactly as if the record did not exist.
        let missing = format!("/api/v2/{module}/{}", Uuid::new_v4());
        let (_, theirs) = into_json(app.get(&path, &intruder).await).await;
        let (_, nothing) = into_json(app.get(&missing, &intruder).await).await;
        assert_eq!(theirs, nothing, "{module}");

        let (status, after) = app.get_json(&path, &owner).await;
        assert_eq!(status, 200, "{module}: the owner still has it");
        assert_eq!(after, record, "{module}: unchanged, updated_at included");
        assert_eq!(count(&app, &owner, module).await, 1);
        assert_eq!(count(&app, &intruder, module).await, 1);
    }
}

#[tokio::test]
async fn lists_counts_stats_and_bundle_show_only_the_callers_records() {
    let app = spawn_app().await;
    let token_a = app.token(Uuid::new_v4());
    let token_b = app.token(Uuid::new_v4());
    let records_a = populate(&app, &token_a, "Alpha").await;
    let records_b = populate(&app, &token_b, "Beta").await;
    // B has one more lead than A so that counts tell the tenants apart.
    let extra = app
        .create("leads", &token_b, json!({"last_name": "Extra"}))
        .await;

    for ((module, of_a), (_, of_b)) in records_a.iter().zip(&records_b) {
        let mut of_b = of_b.clone();
        if *module == "leads" {
            of_b.push(extra.clone());
        }
        assert_eq!(
            listed_ids(&app, &token_a, module).await,
            ids(of_a),
            "{module}"
        );
        assert_eq!(
            listed_ids(&app, &token_b, module).await,
            ids(&of_b),
            "{module}"
        );
        assert_eq!(count(&app, &token_a, module).await, of_a.len() as i64);
        assert_eq!(count(&app, &token_b, module).await, of_b.len() as i64);
    }

    let expected_stats = json!({
        "stages": [
            {"stage": "prospecting", "count": 0, "amount": 0.0},
            {"stage": "qualification", "count": 0, "amount": 0.0},
            {"stage": "proposal", "count": 2, "amount": 105.0},
            {"stage": "negotiation", "count": 0, "amount": 0.0},
            {"stage": "closed_won", "count": 1, "amount": 250.0},
            {"stage": "closed_lost", "count": 0, "amount": 0.0},
        ],
        "total": {"count": 3, "amount": 355.0},
    });
    for token in [&token_a, &token_b] {
        let (status, stats) = app.get_json("/api/v2/opportunities/stats", token).await;
        assert_eq!(status, 200);
        assert_eq!(
            stats, expected_stats,
            "each tenant's stats hold only its own deals"
        );
    }

    // Filters and searches naming the other tenant's data find nothing.
    let account_a = id_of(&records_a[0].1[0]);
    let zero_stats = app
        .get_json(
            &format!("/api/v2/opportunities/stats?account_id={account_a}"),
            &token_b,
        )
        .await;
    assert_eq!(zero_stats.0, 200);
    assert_eq!(zero_stats.1["total"], json!({"count": 0, "amount": 0.0}));
    for path in [
        format!("/api/v2/opportunities?account_id={account_a}"),
        format!("/api/v2/contacts?account_id={account_a}"),
        format!("/api/v2/activities?related_id={account_a}"),
        "/api/v2/accounts?q=alpha".to_owned(),
        "/api/v2/opportunities?q=alpha".to_owned(),
        "/api/v2/leads?q=alpha".to_owned(),
    ] {
        let (status, body) = app.get_json(&path, &token_b).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, json!({"data": [], "next_cursor": null}), "{path}");
        let (_, own) = app.get_json(&path, &token_a).await;
        assert!(
            !own["data"].as_array().unwrap().is_empty(),
            "{path} finds A's own"
        );
    }
    let (_, industry) = app
        .get_json("/api/v2/accounts/count?industry=tech", &token_b)
        .await;
    assert_eq!(industry, json!({"count": 1}));

    // The bundle.
    for (token, own, other, leads) in [
        (&token_a, &records_a, &records_b, 1),
        (&token_b, &records_b, &records_a, 2),
    ] {
        let (status, bundle) = app.get_json("/api/v2/dashboard/bundle", token).await;
        assert_eq!(status, 200, "{bundle}");
        assert_eq!(
            bundle["counts"],
            json!({"accounts": 1, "contacts": 1, "leads": leads, "opportunities": 3,
                   "activities": 1})
        );
        assert_eq!(bundle["opportunity_stages"], expected_stats["stages"]);
        for ((module, mine), (_, theirs)) in own.iter().zip(other) {
            let recent: HashSet<String> = bundle["recent"][*module]
                .as_array()
                .unwrap_or_else(|| panic!("recent {module}: {bundle}"))
                .iter()
                .map(id_of)
                .collect();
            assert!(
                recent.is_disjoint(&ids(theirs)),
                "{module}: other tenant's records"
            );
            assert!(
                recent.is_superset(&ids(mine)),
                "{module}: own records missing"
            );
        }
    }
}

#[tokio::test]
async fn one_tenants_writes_do_not_change_what_another_sees() {
    let app = spawn_app().await;
    let token_a = app.token(Uuid::new_v4());
    let token_b = app.token(Uuid::new_v4());
    populate(&app, &token_a, "Alpha").await;
    let before = snapshot(&app, &token_a).await;
    assert_eq!(before["opportunities count"], json!(3));

    // B creates, updates and deletes records of every entity.
    let records_b = populate(&app, &token_b, "Beta").await;
    for (module, records) in &records_b {
        let first = id_of(&records[0]);
        let (status, _) = into_json(
            app.patch(
                &format!("/api/v2/{module}/{first}"),
                &token_b,
                &change(module),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
        app.create(module, &token_b, minimal(module)).await;
    }
    for (module, records) in records_b.iter().rev() {
        let response = app
            .delete(
                &format!("/api/v2/{module}/{}", id_of(&records[0])),
                &token_b,
            )
            .await;
        assert_eq!(response.status().as_u16(), 204, "{module}");
    }
    let after = snapshot(&app, &token_a).await;
    assert_eq!(
        after, before,
        "A sees exactly what it saw before B's writes"
    );

    // B's own view changed as its writes said: the extra records remain, plus two deals.
    for (module, expected) in [
        ("accounts", 1),
        ("contacts", 1),
        ("leads", 1),
        ("opportunities", 3),
        ("activities", 1),
    ] {
        assert_eq!(count(&app, &token_b, module).await, expected, "{module}");
    }
}

#[tokio::test]
async fn an_id_that_exists_in_two_tenants_resolves_per_tenant() {
    let app = spawn_app().await;
    let (tenant_a, tenant_b) = (Uuid::new_v4(), Uuid::new_v4());
    let token_a = app.token(tenant_a);
    let token_b = app.token(tenant_b);
    let record = app
        .create("accounts", &token_a, json!({"name": "A's"}))
        .await;
    let id: Uuid = id_of(&record).parse().unwrap();
    // The same id for tenant B, written directly: the key is (tenant_id, id).
    let now = aishacrm::db::now();
    let mut conn = app.db().await;
    diesel::insert_into(accounts::table)
        .values(AccountRow {
            id,
            tenant_id: tenant_b,
            name: "B's".into(),
            industry: None,
            website: None,
            phone: None,
            annual_revenue: None,
            employee_count: None,
            created_at: now,
            updated_at: now,
        })
        .execute(&mut conn)
        .await
        .expect("inserting B's account");

    let path = format!("/api/v2/accounts/{id}");
    let (_, seen_by_b) = app.get_json(&path, &token_b).await;
    assert_eq!(seen_by_b["name"], "B's");
    assert_eq!(seen_by_b["tenant_id"], json!(tenant_b));
    let (status, patched) = into_json(
        app.patch(&path, &token_b, &json!({"name": "B renamed"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["tenant_id"], json!(tenant_b));
    assert_eq!(app.get_json(&path, &token_a).await.1, record);

    let response = app.delete(&path, &token_b).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_error(app.get(&path, &token_b).await, 404, "not_found").await;
    assert_eq!(app.get_json(&path, &token_a).await, (200, record));
}

#[tokio::test]
async fn a_tenant_id_in_a_body_is_refused() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let other = Uuid::new_v4();
    let other_token = app.token(other);
    for module in MODULES {
        for tenant_id in [json!(other), json!(tenant), json!(null), json!("x")] {
            let mut body = minimal(module);
            body["tenant_id"] = tenant_id;
            let message = assert_error(
                app.post(&format!("/api/v2/{module}"), &token, &body).await,
                400,
                "validation_failed",
            )
            .await;
            assert!(message.contains("tenant_id"), "{module}: {message}");
        }
        assert_eq!(count(&app, &token, module).await, 0, "{module}");
        assert_eq!(count(&app, &other_token, module).await, 0, "{module}");

        let record = app.create(module, &token, minimal(module)).await;
        let path = format!("/api/v2/{module}/{}", id_of(&record));
        for body in [json!({"tenant_id": other}), {
            let mut body = change(module);
            body["tenant_id"] = json!(tenant);
            body
        }] {
            assert_error(
                app.put(&path, &token, &body).await,
                400,
                "validation_failed",
            )
            .await;
            assert_error(
                app.patch(&path, &token, &body).await,
                400,
                "validation_failed",
            )
            .await;
        }
        assert_eq!(app.get_json(&path, &token).await, (200, record.clone()));
        assert_error(app.get(&path, &other_token).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_tenant_id_query_parameter_is_refused() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let other = Uuid::new_v4();
    let other_token = app.token(other);
    for module in MODULES {
        app.create(module, &other_token, minimal(module)).await;
    }
    let mut paths = vec![
        format!("/api/v2/opportunities/stats?tenant_id={other}"),
        format!("/api/v2/dashboard/bundle?tenant_id={other}"),
    ];
    for module in MODULES {
        paths.push(format!("/api/v2/{module}?tenant_id={other}"));
        paths.push(format!("/api/v2/{module}?limit=5&tenant_id={tenant}"));
        paths.push(format!("/api/v2/{module}/count?tenant_id={other}"));
    }
    for path in paths {
        assert_error(app.get(&path, &token).await, 400, "invalid_query").await;
    }
    for module in MODULES {
        assert_eq!(count(&app, &token, module).await, 0, "{module}");
    }
}
