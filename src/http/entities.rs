//! The six routes every entity has, written once for any [`Entity`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use uuid::Uuid;

use super::body::JsonObject;
use super::cached::{json_body, respond, CachePolicy};
use super::invalidate::{invalidate, MayHaveCommitted};
use super::only;
use crate::auth::Principal;
use crate::cache::Composition;
use crate::db::entity::{page, Keyed};
use crate::db::{Commit, Entity, Write};
use crate::domain::bodies::Body;
use crate::domain::query::{parse_count, Filters, ListQuery};
use crate::domain::tags::{read_tags, Tag};
use crate::domain::{Module, Operation, TenantId};
use crate::errors::ApiError;
use crate::state::AppState;

/// The collection routes of entity `E` (list, create, count) with their cache policy, in the
/// contract's table order. [`super::configure`] registers every entity's collection routes before
/// any record route: a cached read then meets only fixed paths on its way through the router,
/// never an `{id}` pattern (a regex), and `count` is never read as an id.
pub fn collection_routes<E: Entity>(cfg: &mut web::ServiceConfig) {
    let written: &'static [Module] = std::slice::from_ref(&E::SPEC.module);
    let base = format!("/api/v2/{}", E::SPEC.module);
    cfg.service(
        web::resource(base.clone())
            // Cached: `list_policy::<E>()`.
            .route(web::get().to(list::<E>))
            .route(web::post().to(create::<E>).wrap(invalidate(written)))
            .default_service(only("GET, POST")),
    )
    .service(
        web::resource(format!("{base}/count"))
            // Cached: `count_policy::<E>()`.
            .route(web::get().to(count::<E>))
            .default_service(only("GET")),
    );
}

/// The cache policy of `GET /api/v2/E`, as the contract's route table gives it.
pub fn list_policy<E: Entity>() -> CachePolicy {
    CachePolicy::new(E::SPEC.module, Operation::List, LIST_TTL_SECS)
}

/// The cache policy of `GET /api/v2/E/count`.
pub fn count_policy<E: Entity>() -> CachePolicy {
    CachePolicy::new(E::SPEC.module, Operation::Count, COUNT_TTL_SECS)
}

/// The record routes of entity `E` (`/{id}`: read, update, delete).
pub fn record_routes<E: Entity>(cfg: &mut web::ServiceConfig) {
    let written: &'static [Module] = std::slice::from_ref(&E::SPEC.module);
    cfg.service(
        web::resource(format!("/api/v2/{}/{{id}}", E::SPEC.module))
            .route(web::get().to(get::<E>))
            .route(web::put().to(update::<E>).wrap(invalidate(written)))
            .route(web::patch().to(update::<E>).wrap(invalidate(written)))
            .route(
                web::delete()
                    .to(delete::<E>)
                    .wrap(invalidate(E::SPEC.delete_invalidates)),
            )
            .default_service(only("GET, PUT, PATCH, DELETE")),
    );
}

/// Default TTLs of the contract's route table.
pub const LIST_TTL_SECS: u64 = 180;
pub const COUNT_TTL_SECS: u64 = 600;

/// A path id that is not a UUID names no record.
fn path_id(req: &HttpRequest) -> Result<Uuid, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or(ApiError::NotFound)
}

#[derive(Serialize)]
struct ListBody<R> {
    data: Vec<R>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CountBody {
    pub count: i64,
}

/// The JSON of one list page, as `GET /api/v2/E` answers `query`, tagged with the sets it
/// enumerates and the records it contains.
pub async fn list_body<E: Entity>(
    state: &AppState,
    tenant: TenantId,
    query: &ListQuery,
) -> Result<Composition, ApiError> {
    let mut db = state.db(tenant).await?;
    let rows = db.run(|conn| E::list(conn, tenant, query)).await?;
    let page = page(rows, query.limit);
    let mut tags = read_tags(E::SPEC, &query.filters);
    tags.extend(record_tags::<E>(&page.data));
    let body = json_body(&ListBody {
        data: page.data,
        next_cursor: page
            .next
            .map(|cursor| state.cursors.encode(tenant, E::SPEC.module, cursor)),
    })?;
    Ok(Composition::tagged(body, tags))
}

/// The tags of the records an answer contains.
pub fn record_tags<E: Entity>(records: &[E::Record]) -> impl Iterator<Item = Tag> + '_ {
    records
        .iter()
        .map(|record| Tag::record(E::SPEC.module, record.cursor().id))
}

/// The JSON of `GET /api/v2/E/count` for `filters`, tagged with the sets it counts.
pub async fn count_body<E: Entity>(
    state: &AppState,
    tenant: TenantId,
    filters: &Filters,
) -> Result<Composition, ApiError> {
    let mut db = state.db(tenant).await?;
    let count = db.run(|conn| E::count(conn, tenant, filters)).await?;
    Ok(Composition::tagged(
        json_body(&CountBody { count })?,
        read_tags(E::SPEC, filters),
    ))
}

async fn list<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.tenant;
    let query = ListQuery::parse(E::SPEC, req.query_string(), &state.cursors, tenant)?;
    let params = query.canonical();
    let load = list_body::<E>(&state, tenant, &query);
    respond(&req, &state, tenant, list_policy::<E>(), &params, load).await
}

async fn count<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.tenant;
    let filters = parse_count(E::SPEC, req.query_string())?;
    let params = filters.canonical();
    let load = count_body::<E>(&state, tenant, &filters);
    respond(&req, &state, tenant, count_policy::<E>(), &params, load).await
}

async fn get<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut db = state.db(principal.tenant).await?;
    let record = db.run(|conn| E::get(conn, principal.tenant, id)).await?;
    Ok(HttpResponse::Ok().json(record))
}

/// The tenant whose outbox a write's transaction records its tags in: only when other
/// instances need telling.
fn outbox(state: &AppState, principal: &Principal) -> Option<TenantId> {
    state.cache.uses_outbox().then_some(principal.tenant)
}

/// The answer of a write: `ok` of its value, or its error; marked for invalidation when the
/// data layer says it may have committed.
fn answer<T>(write: Write<T>, ok: impl FnOnce(T) -> HttpResponse) -> HttpResponse {
    let mut response = match write.result {
        Ok(value) => ok(value),
        Err(error) => ApiError::from(error).error_response(),
    };
    if let Commit::Maybe(row) = write.commit {
        response.extensions_mut().insert(MayHaveCommitted {
            row,
            tags: write.tags,
        });
    }
    response
}

async fn create<E: Entity>(
    principal: Principal,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let new = E::New::parse(body.0)?;
    let mut db = state.db(principal.tenant).await?;
    let tenant = principal.tenant;
    let write = db
        .write(outbox(&state, &principal), async |conn| {
            E::create(conn, tenant, new).await
        })
        .await;
    Ok(answer(write, |record| {
        let location = format!("/api/v2/{}/{}", E::SPEC.module, record.cursor().id);
        HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .json(record)
    }))
}

async fn update<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let changes = E::Changes::parse(body.0)?;
    let mut db = state.db(principal.tenant).await?;
    let tenant = principal.tenant;
    let write = db
        .write(outbox(&state, &principal), async |conn| {
            E::update(conn, tenant, id, changes).await
        })
        .await;
    Ok(answer(write, |record| HttpResponse::Ok().json(record)))
}

async fn delete<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut db = state.db(principal.tenant).await?;
    let tenant = principal.tenant;
    let write = db
        .write(outbox(&state, &principal), async |conn| {
            E::delete(conn, tenant, id).await
        })
        .await;
    Ok(answer(write, |()| HttpResponse::NoContent().finish()))
}
