//! The per-tenant aggregates the database keeps with every write, and the `aggregates verify` /
//! `aggregates rebuild` commands that check and repair them.

use std::process::{Command, Output};

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::{json, Value};
use uuid::Uuid;

use aishacrm::db::aggregates;
use aishacrm::domain::TenantId;

use crate::helpers::{spawn_app, TestApp};

fn aishacrm(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args(args)
        .env("DATABASE_URL", &app.database.url)
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("running aishacrm")
}

/// Slot 15 may already hold the tenant's figures: a writer's slot is its backend's pid modulo
/// 16, so a plain insert there collides once in sixteen runs.
fn add_to_stage_slot_15(tenant: Uuid, stage: &str, count: i64, amount: i64) -> String {
    format!(
        "INSERT INTO stage_totals AS s VALUES ('{tenant}', '{stage}', 15, {count}, {amount})
         ON CONFLICT (tenant_id, stage, slot)
         DO UPDATE SET count = s.count + {count}, amount = s.amount + {amount};"
    )
}

fn id(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}

/// Writes of every kind in two tenants: creates, stage and amount updates, deletes, and the
/// deletes of an account and a contact whose references the database sets to null.
async fn write_everything(app: &TestApp, token: &str) {
    let account = app.create("accounts", token, json!({"name": "Acme"})).await;
    let contact = app
        .create(
            "contacts",
            token,
            json!({"last_name": "Lovelace", "account_id": id(&account)}),
        )
        .await;
    app.create("leads", token, json!({"last_name": "Lead"}))
        .await;
    let mut deals = Vec::new();
    for (stage, amount) in [
        ("prospecting", 10.5),
        ("proposal", 20.0),
        ("closed_won", 30.25),
    ] {
        let body = json!({"name": "Deal", "stage": stage, "amount": amount,
                          "account_id": id(&account), "contact_id": id(&contact)});
        deals.push(app.create("opportunities", token, body).await);
    }
    app.create(
        "activities",
        token,
        json!({"type": "call", "subject": "Hi", "related_type": "account", "related_id": id(&account)}),
    )
    .await;
    let path = |record: &Value| format!("/api/v2/opportunities/{}", id(record));
    let moved = app
        .patch(
            &path(&deals[0]),
            token,
            &json!({"stage": "negotiation", "amount": 99.99}),
        )
        .await;
    assert_eq!(moved.status().as_u16(), 200);
    let renamed = app
        .patch(&path(&deals[1]), token, &json!({"name": "Renamed"}))
        .await;
    assert_eq!(renamed.status().as_u16(), 200);
    assert_eq!(
        app.delete(&path(&deals[2]), token).await.status().as_u16(),
        204
    );
    let refused = app
        .patch(&path(&deals[1]), token, &json!({"stage": "nope"}))
        .await;
    assert_eq!(refused.status().as_u16(), 400);
    let contact_path = format!("/api/v2/contacts/{}", id(&contact));
    assert_eq!(
        app.delete(&contact_path, token).await.status().as_u16(),
        204
    );
    let account_path = format!("/api/v2/accounts/{}", id(&account));
    assert_eq!(
        app.delete(&account_path, token).await.status().as_u16(),
        204
    );
}

#[tokio::test]
async fn every_kind_of_write_keeps_the_aggregates_equal_to_the_rows() {
    let app = spawn_app().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    write_everything(&app, &app.token(a)).await;
    write_everything(&app, &app.token(b)).await;

    let mut conn = app.db().await;
    assert_eq!(aggregates::drift(&mut conn).await.expect("drift"), vec![]);
    let counts: Vec<(String, i64)> = diesel::sql_query(format!(
        "SELECT module, sum(count)::int8 AS n FROM tenant_counts WHERE tenant_id = '{a}'
         GROUP BY module ORDER BY module"
    ))
    .load::<CountRow>(&mut conn)
    .await
    .expect("counts")
    .into_iter()
    .map(|row| (row.module, row.n))
    .collect();
    // The account, its contact and one deal are gone; the rest stay.
    assert_eq!(
        counts,
        vec![
            ("accounts".to_owned(), 0),
            ("activities".to_owned(), 1),
            ("contacts".to_owned(), 0),
            ("leads".to_owned(), 1),
            ("opportunities".to_owned(), 2),
        ]
    );
}

#[derive(diesel::QueryableByName)]
struct CountRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    module: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn verify_names_a_drifted_figure_and_rebuild_repairs_only_the_tenant_asked() {
    let app = spawn_app().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    write_everything(&app, &app.token(a)).await;
    write_everything(&app, &app.token(b)).await;
    let output = aishacrm(&app, &["aggregates", "verify"]);
    assert!(output.status.success(), "{output:?}");

    let mut conn = app.db().await;
    conn.batch_execute(&format!(
        "UPDATE tenant_counts SET count = count + 3 WHERE tenant_id IN ('{a}', '{b}')
           AND module = 'leads' AND count <> 0;
         {}",
        add_to_stage_slot_15(a, "proposal", 0, 5)
    ))
    .await
    .expect("corrupting the aggregates");
    let drift = aggregates::drift(&mut conn).await.expect("drift");
    let named: Vec<String> = drift.iter().map(ToString::to_string).collect();
    assert_eq!(
        named
            .iter()
            .filter(|line| line.contains("leads count is 4 in the aggregates, 1 in the rows"))
            .count(),
        2,
        "{named:?}"
    );
    assert!(
        named.contains(&format!(
            "tenant {a}: stage proposal amount is 25.00 in the aggregates, 20.00 in the rows"
        )),
        "{named:?}"
    );
    let output = aishacrm(&app, &["aggregates", "verify"]);
    assert!(
        !output.status.success(),
        "drift must fail verify: {output:?}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("tenant {a}: leads count")),
        "{stdout}"
    );

    aggregates::rebuild(&mut conn, Some(TenantId(a)))
        .await
        .expect("rebuild");
    let left = aggregates::drift(&mut conn).await.expect("drift");
    assert!(
        !left.is_empty() && left.iter().all(|d| d.tenant_id == b),
        "{left:?}"
    );

    let output = aishacrm(&app, &["aggregates", "rebuild"]);
    assert!(output.status.success(), "{output:?}");
    let output = aishacrm(&app, &["aggregates", "verify"]);
    assert!(output.status.success(), "{output:?}");
}

/// Which answers read the kept aggregates: an aggregate moved by hand shows in the unfiltered
/// count, the count by stage alone and the whole-tenant stats, and in no answer that has to
/// count rows (another filter, `q`, stats of one account).
#[tokio::test]
async fn unfiltered_counts_stage_counts_and_stats_read_the_aggregates() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let account = app
        .create("accounts", &token, json!({"name": "Acme"}))
        .await;
    let body =
        json!({"name": "Deal", "stage": "proposal", "amount": 20, "account_id": id(&account)});
    app.create("opportunities", &token, body).await;
    let mut conn = app.db().await;
    conn.batch_execute(&format!(
        "INSERT INTO tenant_counts AS t VALUES ('{tenant}', 'accounts', 15, 5)
           ON CONFLICT (tenant_id, module, slot) DO UPDATE SET count = t.count + 5;
         {}",
        add_to_stage_slot_15(tenant, "proposal", 2, 7)
    ))
    .await
    .expect("moving the aggregates");

    let fresh = |path: &str| {
        let path = path.to_owned();
        let app = &app;
        let token = &token;
        async move {
            let response = app
                .get_with(&path, token, &[("cache-control", "no-cache")])
                .await;
            crate::helpers::into_json(response).await
        }
    };
    assert_eq!(
        fresh("/api/v2/accounts/count").await,
        (200, json!({"count": 6}))
    );
    assert_eq!(
        fresh("/api/v2/accounts/count?q=Acme").await,
        (200, json!({"count": 1}))
    );
    assert_eq!(
        fresh("/api/v2/opportunities/count?stage=proposal").await,
        (200, json!({"count": 3}))
    );
    let by_account = format!(
        "/api/v2/opportunities/count?stage=proposal&account_id={}",
        id(&account)
    );
    assert_eq!(fresh(&by_account).await, (200, json!({"count": 1})));

    let (status, stats) = fresh("/api/v2/opportunities/stats").await;
    assert_eq!(status, 200);
    let proposal = stats["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|stage| stage["stage"] == "proposal")
        .cloned()
        .expect("the proposal stage");
    assert_eq!(proposal["count"], json!(3), "{stats}");
    assert_eq!(proposal["amount"].as_f64(), Some(27.0), "{stats}");
    let (_, one_account) = fresh(&format!(
        "/api/v2/opportunities/stats?account_id={}",
        id(&account)
    ))
    .await;
    assert_eq!(one_account["total"]["count"], json!(1), "{one_account}");
}
