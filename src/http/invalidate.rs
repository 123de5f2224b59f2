//! Write routes' invalidation, declared next to each route:
//! `web::post().to(create).wrap(invalidate(&[Module::Opportunities]))`.

use std::time::SystemTime;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, HttpMessage};
use futures_util::future::LocalBoxFuture;

use crate::auth::{JwtKeys, Principal};
use crate::domain::tags::{modules_of, Tag};
use crate::domain::Module;
use crate::state::AppState;

type Reply = LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, Error>>;

/// After a write that may have committed, evicts the caller tenant's answers that depend on the
/// tags it changed, everywhere. `modules` declares where those tags may lie (the contract's
/// "invalidates E").
pub fn invalidate<S>(
    modules: &'static [Module],
) -> impl Transform<
    S,
    ServiceRequest,
    Response = ServiceResponse<BoxBody>,
    Error = Error,
    InitError = (),
> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    from_fn(move |req: ServiceRequest, next: Next<BoxBody>| -> Reply {
        Box::pin(invalidating(modules, req, next))
    })
}

/// Put on a write's response by its handler when the write may have committed (it did, or its
/// outcome is unknown), with the tags it changed and its outbox row if it recorded one. Without
/// it, nothing is invalidated: a write refused before or inside its transaction changed nothing.
#[derive(Debug, Clone)]
pub struct MayHaveCommitted {
    pub row: Option<i64>,
    pub tags: Vec<Tag>,
}

/// The caller, resolved once here and kept for the handler's `Principal` extractor.
fn principal(req: &ServiceRequest) -> Option<Principal> {
    let keys = req.app_data::<web::Data<JwtKeys>>()?;
    let principal = keys.principal_of(req.request()).ok()?;
    req.extensions_mut().insert(principal.clone());
    Some(principal)
}

async fn invalidating(
    modules: &'static [Module],
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let principal = principal(&req);
    let mut response = next.call(req).await?;
    let committed = response
        .response_mut()
        .extensions_mut()
        .remove::<MayHaveCommitted>();
    if let (Some(MayHaveCommitted { row, tags }), Some(state), Some(principal)) =
        (committed, state, principal)
    {
        debug_assert!(
            modules_of(&tags)
                .iter()
                .all(|module| modules.contains(module)),
            "a write changed tags outside the modules its route declares"
        );
        let committed_at = SystemTime::now();
        // Tests kill the writer here to show that the outbox survives it.
        fail::fail_point!("cache::after_commit", |_| std::process::abort());
        let acknowledged = state
            .cache
            .invalidate(principal.tenant, &tags, committed_at, row)
            .await;
        if let (true, Some(row)) = (acknowledged, row) {
            state.outbox.acknowledged(row);
        }
    }
    Ok(response)
}
