//! The six routes every entity has, written once for any [`Entity`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use uuid::Uuid;

use super::body::JsonObject;
use super::method_not_allowed;
use crate::auth::Principal;
use crate::db::entity::{page, Keyed};
use crate::db::Entity;
use crate::domain::fields::{parse_body, Mode};
use crate::domain::query::{parse_count, ListQuery};
use crate::errors::ApiError;
use crate::state::AppState;

/// Routes of entity `E`, in the contract's table order. `count` is registered before `{id}` so
/// that it is not read as an id.
pub fn routes<E: Entity>(cfg: &mut web::ServiceConfig) {
    let base = format!("/api/v2/{}", E::SPEC.module);
    cfg.service(
        web::resource(base.clone())
            .route(web::get().to(list::<E>))
            .route(web::post().to(create::<E>))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(format!("{base}/count"))
            .route(web::get().to(count::<E>))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(format!("{base}/{{id}}"))
            .route(web::get().to(get::<E>))
            .route(web::put().to(update::<E>))
            .route(web::patch().to(update::<E>))
            .route(web::delete().to(delete::<E>))
            .default_service(web::to(method_not_allowed)),
    );
}

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

async fn list<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.tenant;
    let query = ListQuery::parse(E::SPEC, req.query_string(), &state.cursors, tenant)?;
    let mut conn = state.pool.get().await?;
    let rows = E::list(&mut conn, tenant, &query).await?;
    let page = page(rows, query.limit);
    Ok(HttpResponse::Ok().json(ListBody {
        data: page.data,
        next_cursor: page
            .next
            .map(|cursor| state.cursors.encode(tenant, E::SPEC.module, cursor)),
    }))
}

async fn count<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filters = parse_count(E::SPEC, req.query_string())?;
    let mut conn = state.pool.get().await?;
    let count = E::count(&mut conn, principal.tenant, &filters).await?;
    Ok(HttpResponse::Ok().json(CountBody { count }))
}

async fn get<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut conn = state.pool.get().await?;
    let record = E::get(&mut conn, principal.tenant, id).await?;
    Ok(HttpResponse::Ok().json(record))
}

async fn create<E: Entity>(
    principal: Principal,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = parse_body(E::SPEC, body.0, Mode::Create)?;
    let mut conn = state.pool.get().await?;
    let record = E::create(&mut conn, principal.tenant, body).await?;
    let location = format!("/api/v2/{}/{}", E::SPEC.module, record.cursor().id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(record))
}

async fn update<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let body = parse_body(E::SPEC, body.0, Mode::Update)?;
    let mut conn = state.pool.get().await?;
    let record = E::update(&mut conn, principal.tenant, id, body).await?;
    Ok(HttpResponse::Ok().json(record))
}

async fn delete<E: Entity>(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut conn = state.pool.get().await?;
    E::delete(&mut conn, principal.tenant, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
