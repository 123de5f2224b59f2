//! `/api/v2/cache/*`: warm, invalidate (admin) and stats (admin).

use std::future::Future;
use std::sync::atomic::Ordering;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::body::JsonObject;
use super::dashboard::{bundle_body, BUNDLE_TTL_SECS};
use super::entities::{count_body, list_body, COUNT_TTL_SECS, LIST_TTL_SECS};
use super::only;
use crate::auth::{Admin, Principal, TenantId};
use crate::cache::key::{canonical_params, MODULES};
use crate::cache::Found;
use crate::db::accounts::Accounts;
use crate::db::activities::Activities;
use crate::db::contacts::Contacts;
use crate::db::leads::Leads;
use crate::db::opportunities::Opportunities;
use crate::db::Entity;
use crate::domain::entities;
use crate::errors::ApiError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v2/cache/warm")
            .route(web::post().to(warm))
            .default_service(only("POST")),
    )
    .service(
        web::resource("/api/v2/cache/invalidate")
            .route(web::post().to(invalidate))
            .default_service(only("POST")),
    )
    .service(
        web::resource("/api/v2/cache/stats")
            .route(web::get().to(stats))
            .default_service(only("GET")),
    );
}

/// Fills the caller tenant's bundle and the first default page and count of each entity, in
/// the background, with exactly the bytes the routes would answer.
async fn warm(principal: Principal, state: web::Data<AppState>) -> HttpResponse {
    let tenant = principal.tenant;
    // A warm of this tenant already under way: this call joins it.
    if let Some(turn) = state.warming.start(tenant) {
        actix_web::rt::spawn(async move {
            let _slot = turn.slot().await;
            let filled = warm_tenant(&state, tenant).await;
            if filled > 0 {
                log::info!("[Cache] Warmed: {filled} answers for tenant {tenant}");
            }
        });
    }
    HttpResponse::Accepted().json(json!({"warming": ["dashboard", "accounts", "contacts", "leads", "opportunities", "activities"]}))
}

/// Loads and stores one answer unless it is already cached; whether it stored one.
async fn warm_one(
    state: &AppState,
    tenant: TenantId,
    module: &'static str,
    operation: &'static str,
    default_ttl: u64,
    body: impl Future<Output = Result<Bytes, ApiError>>,
) -> bool {
    let cache = &state.cache;
    let params = canonical_params(module, operation, "").unwrap_or_default();
    let ttl = cache.ttl(module, operation, default_ttl);
    let lookup = cache.lookup(tenant, module, operation, &params, ttl).await;
    if matches!(cache.find(&lookup).await, Found::Fresh(..)) {
        return false;
    }
    match body.await {
        Ok(body) => cache
            .store(&lookup, body, HeaderValue::from_static("application/json"))
            .await
            .is_some(),
        Err(error) => {
            log::warn!("[Cache] warm of {module} {operation} for tenant {tenant} failed: {error}");
            false
        }
    }
}

async fn warm_entity<E: Entity>(state: &AppState, tenant: TenantId) -> usize {
    let module = E::SPEC.module;
    let list = warm_one(
        state,
        tenant,
        module,
        "list",
        LIST_TTL_SECS,
        list_body::<E>(state, tenant, ""),
    )
    .await;
    let count = warm_one(
        state,
        tenant,
        module,
        "count",
        COUNT_TTL_SECS,
        count_body::<E>(state, tenant, ""),
    )
    .await;
    usize::from(list) + usize::from(count)
}

/// Warms every answer `warm` promises; how many it stored.
pub async fn warm_tenant(state: &AppState, tenant: TenantId) -> usize {
    if !state.cache.enabled {
        return 0;
    }
    let bundle = warm_one(
        state,
        tenant,
        "dashboard",
        "bundle",
        BUNDLE_TTL_SECS,
        bundle_body(state, tenant),
    )
    .await;
    usize::from(bundle)
        + warm_entity::<Accounts>(state, tenant).await
        + warm_entity::<Contacts>(state, tenant).await
        + warm_entity::<Leads>(state, tenant).await
        + warm_entity::<Opportunities>(state, tenant).await
        + warm_entity::<Activities>(state, tenant).await
}

async fn invalidate(
    Admin(principal): Admin,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut body = body.0;
    let module = match body.remove("module") {
        Some(Value::String(module)) => module,
        Some(_) => {
            return Err(ApiError::Validation(
                "field `module` must be a string".into(),
            ))
        }
        None => return Err(ApiError::Validation("field `module` is required".into())),
    };
    if let Some(unknown) = body.keys().next() {
        return Err(ApiError::Validation(format!(
            "unknown field {}",
            crate::domain::echo(unknown)
        )));
    }
    let modules: Vec<&'static str> = match module.as_str() {
        "all" => MODULES.to_vec(),
        "dashboard" => vec!["dashboard"],
        name => match entities::ALL.iter().find(|spec| spec.module == name) {
            Some(spec) => vec![spec.module],
            None => {
                return Err(ApiError::Validation(
                    "field `module` must be an entity, `dashboard` or `all`".into(),
                ))
            }
        },
    };
    state
        .cache
        .invalidate(principal.tenant, &modules, std::time::SystemTime::now())
        .await;
    Ok(HttpResponse::Ok().json(json!({"invalidated": modules})))
}

async fn stats(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cache = &state.cache;
    cache.l1.settle().await;
    let metrics = &state.metrics;
    let (l1, l2, misses, rate) = metrics.hit_counts();
    Ok(HttpResponse::Ok().json(json!({
        "enabled": cache.enabled,
        "hits": {"l1": l1, "l2": l2, "total": l1 + l2},
        "misses": misses,
        "stale": metrics.stale.load(Ordering::Relaxed),
        "bypass": metrics.bypass.load(Ordering::Relaxed),
        "hit_rate": rate,
        "invalidations": {
            "local": metrics.invalidations_local.load(Ordering::Relaxed),
            "remote": metrics.invalidations_remote.load(Ordering::Relaxed),
        },
        "l1": {
            "entries": cache.l1.entries(),
            "bytes": cache.l1.bytes(),
            "max_bytes": cache.l1.max_bytes(),
        },
        "redis": cache.redis_state(),
    })))
}
