//! Create, read, update and delete for every entity.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_error, into_json, minimal, spawn_app, MODULES};

#[tokio::test]
async fn every_entity_round_trips_through_create_get_update_delete() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        let response = app
            .post(&format!("/api/v2/{module}"), &token, &minimal(module))
            .await;
        assert_eq!(response.status().as_u16(), 201, "{module}");
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .expect("Location header");
        let created: serde_json::Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        assert_eq!(location, format!("/api/v2/{module}/{id}"));
        assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(created["created_at"], created["updated_at"]);

        let (status, fetched) = app.get_json(&location, &token).await;
        assert_eq!(status, 200);
        assert_eq!(fetched, created, "{module}: GET returns what POST answered");

        let (status, listed) = app.get_json(&format!("/api/v2/{module}"), &token).await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"], json!([created]));
        assert_eq!(listed["next_cursor"], json!(null));
        let (_, count) = app
            .get_json(&format!("/api/v2/{module}/count"), &token)
            .await;
        assert_eq!(count, json!({"count": 1}));

        let response = app.delete(&location, &token).await;
        assert_eq!(response.status().as_u16(), 204, "{module}");
        assert!(response.bytes().await.unwrap().is_empty());
        assert_error(app.get(&location, &token).await, 404, "not_found").await;
        assert_error(app.delete(&location, &token).await, 404, "not_found").await;
        let (_, count) = app
            .get_json(&format!("/api/v2/{module}/count"), &token)
            .await;
        assert_eq!(count, json!({"count": 0}));
    }
}

#[tokio::test]
async fn create_applies_defaults_and_keeps_every_field() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = app
        .create(
            "accounts",
            &token,
            json!({"name": "Globex", "industry": "energy", "website": "https://globex.example",
                   "phone": "+1 555", "annual_revenue": 1500000.25, "employee_count": 42}),
        )
        .await;
    assert_eq!(account["annual_revenue"], json!(1500000.25));
    assert_eq!(account["employee_count"], json!(42));
    assert_eq!(account["industry"], "energy");

    let opportunity = app
        .create("opportunities", &token, json!({"name": "Deal"}))
        .await;
    assert_eq!(opportunity["stage"], "prospecting");
    assert_eq!(opportunity["amount"], json!(0.0));
    assert_eq!(opportunity["probability"], json!(10));
    assert_eq!(opportunity["account_id"], json!(null));

    let lead = app
        .create("leads", &token, json!({"last_name": "Tanaka"}))
        .await;
    assert_eq!(lead["status"], "new");
    assert_eq!(lead["score"], json!(0));
    let contact = app
        .create("contacts", &token, json!({"last_name": "Silva"}))
        .await;
    assert_eq!(contact["status"], "active");
    let activity = app
        .create(
            "activities",
            &token,
            json!({"type": "meeting", "subject": "Kickoff", "due_at": "2026-12-01T10:00:00+02:00"}),
        )
        .await;
    assert_eq!(activity["status"], "planned");
    assert_eq!(activity["due_at"], "2026-12-01T08:00:00Z");
}

#[tokio::test]
async fn put_and_patch_change_only_the_fields_given() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let created = app
        .create(
            "opportunities",
            &token,
            json!({"name": "Deal", "amount": 100, "close_date": "2027-01-31", "probability": 40}),
        )
        .await;
    let path = format!("/api/v2/opportunities/{}", created["id"].as_str().unwrap());

    let (status, updated) = into_json(
        app.patch(&path, &token, &json!({"stage": "proposal"}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["stage"], "proposal");
    assert_eq!(updated["name"], "Deal");
    assert_eq!(updated["amount"], json!(100.0));
    assert_eq!(updated["close_date"], "2027-01-31");
    assert_eq!(updated["created_at"], created["created_at"]);
    assert!(updated["updated_at"].as_str() > created["updated_at"].as_str());

    let (status, updated) = into_json(
        app.put(&path, &token, &json!({"close_date": null, "amount": 250.5}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["close_date"], json!(null));
    assert_eq!(updated["amount"], json!(250.5));
    assert_eq!(updated["stage"], "proposal");
    assert_eq!(updated["probability"], json!(40));

    let (_, fetched) = app.get_json(&path, &token).await;
    assert_eq!(fetched, updated);

    // An empty update is valid and changes nothing but updated_at.
    let (status, same) = into_json(app.patch(&path, &token, &json!({})).await).await;
    assert_eq!(status, 200);
    assert_eq!(same["name"], "Deal");
}

#[tokio::test]
async fn deleted_rows_are_gone_from_the_database() {
    use aishacrm::db::schema::leads;
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let lead = app.create("leads", &token, minimal("leads")).await;
    let id: Uuid = lead["id"].as_str().unwrap().parse().unwrap();
    let response = app.delete(&format!("/api/v2/leads/{id}"), &token).await;
    assert_eq!(response.status().as_u16(), 204);
    let mut conn = app.db().await;
    let left: i64 = leads::table
        .filter(leads::id.eq(id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn unknown_ids_and_non_uuid_ids_are_not_found() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        let missing = format!("/api/v2/{module}/{}", Uuid::new_v4());
        assert_error(app.get(&missing, &token).await, 404, "not_found").await;
        assert_error(
            app.patch(&missing, &token, &json!({})).await,
            404,
            "not_found",
        )
        .await;
        assert_error(app.delete(&missing, &token).await, 404, "not_found").await;
        let garbage = format!("/api/v2/{module}/not-a-uuid");
        assert_error(app.get(&garbage, &token).await, 404, "not_found").await;
        assert_error(app.delete(&garbage, &token).await, 404, "not_found").await;
    }
}
