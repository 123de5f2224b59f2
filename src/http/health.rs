//! Liveness and readiness probes (no auth).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use diesel_async::RunQueryDsl;
use serde_json::json;

use super::only;
use crate::state::AppState;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health/live")
            .route(web::get().to(live))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/health/ready")
            .route(web::get().to(ready))
            .default_service(only("GET")),
    );
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn database_up(state: &AppState) -> bool {
    let probe = async {
        let mut conn = state.pool.get().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(_))
    )
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = database_up(&state).await;
    let redis = state.cache.redis_state();
    if !database {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable", "database": "down", "redis": redis
        }));
    }
    let status = if redis == "down" { "degraded" } else { "ok" };
    HttpResponse::Ok().json(json!({"status": status, "database": "up", "redis": redis}))
}
