//! A write is one transaction, its statements sent together: whatever fails inside it, the
//! outbox row included, changes nothing, and its connection goes back to the pool outside any
//! transaction.

use diesel_async::SimpleAsyncConnection;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_error, spawn_app_with};

#[tokio::test]
async fn a_write_failing_inside_its_transaction_changes_nothing_and_leaves_its_connection_clean() {
    // One connection: every request after the failed write runs on the connection it used.
    let app = spawn_app_with(|config| {
        config.redis_url = crate::helpers::redis_url();
        config.db_pool_size = 1;
    })
    .await;
    let token = app.token(Uuid::new_v4());
    let kept = app
        .create(
            "accounts",
            &token,
            json!({"name": "Kept", "industry": "retail"}),
        )
        .await;
    let id = kept["id"].as_str().expect("id").to_owned();
    // Refused by the database inside the transaction, which is then rolled back.
    let refused = app
        .post(
            "/api/v2/opportunities",
            &token,
            &json!({"name": "Orphan", "account_id": Uuid::new_v4()}),
        )
        .await;
    assert_error(refused, 422, "invalid_reference").await;
    let (status, _) = app.get_json("/api/v2/opportunities/count", &token).await;
    assert_eq!(
        status, 200,
        "the connection was left in the failed transaction"
    );

    let mut db = app.db().await;
    db.batch_execute(
        "ALTER TABLE cache_outbox ADD CONSTRAINT refuse_rows CHECK (tenant_id IS NULL) NOT VALID",
    )
    .await
    .expect("refusing outbox rows");
    let created = app
        .post(
            "/api/v2/accounts",
            &token,
            &json!({"name": "Lost", "industry": "media"}),
        )
        .await;
    assert_error(created, 500, "internal").await;
    let (path, renamed) = (format!("/api/v2/accounts/{id}"), json!({"name": "Renamed"}));
    let rename = || app.patch(&path, &token, &renamed);
    assert_error(rename().await, 500, "internal").await;
    let deleted = app.delete(&path, &token).await;
    assert_error(deleted, 500, "internal").await;

    // Nothing of the three happened, and the connection answers outside any transaction.
    let (status, listed) = app.get_json("/api/v2/accounts", &token).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|account| account["name"].as_str())
        .collect();
    assert_eq!(names, ["Kept"]);

    db.batch_execute("ALTER TABLE cache_outbox DROP CONSTRAINT refuse_rows")
        .await
        .expect("accepting outbox rows again");
    assert_eq!(rename().await.status().as_u16(), 200);
    let (_, account) = app.get_json(&path, &token).await;
    assert_eq!(account["name"], "Renamed");
}
