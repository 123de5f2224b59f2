//! The HTTP API: one module per route group; handlers stay thin and call the data layer.

pub mod body;
pub mod cache_admin;
pub mod cached;
pub mod dashboard;
pub mod entities;
pub mod health;
pub mod invalidate;
pub mod metrics;
pub mod openapi;
pub mod opportunities;

use actix_web::dev::ServiceRequest;
use actix_web::http::Method;
use actix_web::web;

use crate::db::accounts::Accounts;
use crate::db::activities::Activities;
use crate::db::contacts::Contacts;
use crate::db::leads::Leads;
use crate::db::opportunities::Opportunities;
use crate::errors::ApiError;

/// Every route of the contract. The router tries them in this order: the cached reads (dashboard,
/// stats, lists, counts) first and among fixed paths only; the `{id}` patterns last.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(dashboard::routes)
        .configure(opportunities::routes)
        .configure(entities::collection_routes::<Opportunities>)
        .configure(entities::collection_routes::<Accounts>)
        .configure(entities::collection_routes::<Contacts>)
        .configure(entities::collection_routes::<Leads>)
        .configure(entities::collection_routes::<Activities>)
        .configure(health::routes)
        .configure(metrics::routes)
        .configure(cache_admin::routes)
        .configure(openapi::routes)
        .configure(entities::record_routes::<Opportunities>)
        .configure(entities::record_routes::<Accounts>)
        .configure(entities::record_routes::<Contacts>)
        .configure(entities::record_routes::<Leads>)
        .configure(entities::record_routes::<Activities>);
}

/// The answer for a known path with a method it does not take: `405` naming the `methods` it
/// does take in `Allow`.
pub fn only(methods: &'static str) -> actix_web::Route {
    web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(methods))
    })
}

/// `HEAD` is served by the `GET` route of the same path (RFC 9110: a resource that supports GET
/// supports HEAD), cache and all: the answer keeps every header of the GET, `Content-Length`
/// included, and actix-http sends no body for a HEAD request (it remembers the method it parsed).
pub fn serve_head_as_get(req: &mut ServiceRequest) {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
}

/// The answer for any path the API does not have.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
