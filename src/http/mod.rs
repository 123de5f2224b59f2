//! The HTTP API: one module per route group; handlers stay thin and call the data layer.

pub mod body;
pub mod cache_admin;
pub mod dashboard;
pub mod entities;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod opportunities;

use actix_web::web;

use crate::db::accounts::Accounts;
use crate::db::activities::Activities;
use crate::db::contacts::Contacts;
use crate::db::leads::Leads;
use crate::db::opportunities::Opportunities;
use crate::errors::ApiError;

/// Every route of the contract.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::routes)
        .configure(metrics::routes)
        .configure(cache_admin::routes)
        .configure(openapi::routes)
        .configure(dashboard::routes)
        .configure(opportunities::routes)
        .configure(entities::routes::<Accounts>)
        .configure(entities::routes::<Contacts>)
        .configure(entities::routes::<Leads>)
        .configure(entities::routes::<Opportunities>)
        .configure(entities::routes::<Activities>);
}

/// The answer for a known path with a method it does not take: `405` naming the `methods` it
/// does take in `Allow`.
pub fn only(methods: &'static str) -> actix_web::Route {
    web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(methods))
    })
}

/// The answer for any path the API does not have.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
