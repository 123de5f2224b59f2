//! Liveness, readiness and the answers of a service whose dependencies are down.

use std::net::TcpListener;

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_error, into_json, minimal, spawn_app, spawn_app_with};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

#[tokio::test]
async fn live_and_ready_need_no_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(into_json(response).await, (200, json!({"status": "ok"})));
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        into_json(response).await,
        (
            200,
            json!({"status": "ok", "database": "up", "redis": "disabled"})
        )
    );
}

#[tokio::test]
async fn ready_reports_redis_up_and_down() {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let app = spawn_app_with(|config| config.redis_url = redis_url).await;
    app.wait_for_redis("up").await;
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        into_json(response).await,
        (
            200,
            json!({"status": "ok", "database": "up", "redis": "up"})
        )
    );

    let port = closed_port();
    let app =
        spawn_app_with(|config| config.redis_url = format!("redis://127.0.0.1:{port}/0")).await;
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        into_json(response).await,
        (
            200,
            json!({"status": "degraded", "database": "up", "redis": "down"})
        )
    );
    // Without Redis every route still answers from PostgreSQL.
    let token = app.token(Uuid::new_v4());
    app.create("accounts", &token, minimal("accounts")).await;
}

#[tokio::test]
async fn database_down_answers_503_quickly_and_ready_says_so() {
    let port = closed_port();
    let app = spawn_app_with(|config| {
        config.database_url = format!("postgres://postgres@127.0.0.1:{port}/aishacrm");
        config.db_acquire_timeout_ms = 500;
    })
    .await;
    let started = std::time::Instant::now();
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        into_json(response).await,
        (
            503,
            json!({"status": "unavailable", "database": "down", "redis": "disabled"})
        )
    );
    let token = app.token(Uuid::new_v4());
    assert_error(
        app.get("/api/v2/accounts", &token).await,
        503,
        "database_unavailable",
    )
    .await;
    assert_error(
        app.post("/api/v2/accounts", &token, &minimal("accounts"))
            .await,
        503,
        "database_unavailable",
    )
    .await;
    assert!(started.elapsed().as_secs() < 10, "answers must not hang");
}
