//! `/api/v2/cache/*`: warm, invalidate (admin) and stats (admin).

use crate::domain::tags::Tag;
use std::future::Future;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::body::JsonObject;
use super::cached::CachePolicy;
use super::dashboard;
use super::entities::{count_body, count_policy, list_body, list_policy};
use super::only;
use crate::auth::{Admin, Principal};
use crate::cache::{Composition, Read};
use crate::db::accounts::Accounts;
use crate::db::activities::Activities;
use crate::db::contacts::Contacts;
use crate::db::leads::Leads;
use crate::db::opportunities::Opportunities;
use crate::db::Entity;
use crate::domain::entities;
use crate::domain::query::{Filters, ListQuery, Params};
use crate::domain::{Module, TenantId};
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
    policy: CachePolicy,
    params: &Params<'_>,
    body: impl Future<Output = Result<impl Into<Composition>, ApiError>>,
) -> bool {
    let lookup = policy.lookup(tenant, params, Read::Warm);
    match state.cache.get_or_load(&lookup, body).await {
        Ok(answer) => answer.stored,
        Err(error) => {
            log::warn!(
                "[Cache] warm of {} {} for tenant {tenant} failed: {error}",
                policy.module,
                policy.operation
            );
            false
        }
    }
}

async fn warm_entity<E: Entity>(state: &AppState, tenant: TenantId) -> usize {
    let first_page = ListQuery::first_page();
    let everything = Filters::default();
    let list = warm_one(
        state,
        tenant,
        list_policy::<E>(),
        &first_page.canonical(),
        list_body::<E>(state, tenant, &first_page),
    )
    .await;
    let count = warm_one(
        state,
        tenant,
        count_policy::<E>(),
        &everything.canonical(),
        count_body::<E>(state, tenant, &everything),
    )
    .await;
    usize::from(list) + usize::from(count)
}

/// Warms every answer `warm` promises; how many it stored.
pub async fn warm_tenant(state: &AppState, tenant: TenantId) -> usize {
    if !state.cache.is_enabled() {
        return 0;
    }
    let bundle = warm_one(
        state,
        tenant,
        dashboard::BUNDLE,
        &Params::new(),
        dashboard::bundle_body(state, tenant, Read::Warm),
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
    let modules: Vec<Module> = match module.as_str() {
        "all" => Module::ALL.to_vec(),
        "dashboard" => vec![Module::Dashboard],
        name => match entities::ALL.iter().find(|spec| spec.module.name() == name) {
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
        .invalidate(
            principal.tenant,
            &modules.iter().copied().map(Tag::module).collect::<Vec<_>>(),
            std::time::SystemTime::now(),
            None,
        )
        .await;
    let names: Vec<&str> = modules.iter().map(|module| module.name()).collect();
    Ok(HttpResponse::Ok().json(json!({"invalidated": names})))
}

async fn stats(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cache = state.cache.stats().await;
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
            "entries": cache.l1_entries,
            "bytes": cache.l1_bytes,
            "max_bytes": cache.l1_max_bytes,
        },
        "redis": cache.redis,
    })))
}
