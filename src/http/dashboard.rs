//! `GET /api/v2/dashboard/bundle`: everything a dashboard shows after login, in one answer,
//! composed from parts cached on their own: each entity's count and newest records under that
//! entity's module, and the stage breakdown (the whole-tenant stats answer). A write rebuilds
//! only the parts of the modules it changes. Each part is read in one snapshot; the parts are
//! not one snapshot together.
//!
//! The composed answer is cached too, depending on what every part depends on, so that a bundle
//! whose parts have not changed costs one lookup instead of six lookups and a re-serialisation
//! (a third of the throughput, measured).

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::cached::{json_body, read_of, respond, CachePolicy};
use super::entities::record_tags;
use super::only;
use super::opportunities::{stats_body, STATS};
use crate::auth::Principal;
use crate::cache::{Answer, Composition, Read};
use crate::db::accounts::Accounts;
use crate::db::activities::Activities;
use crate::db::contacts::Contacts;
use crate::db::entity::page;
use crate::db::leads::Leads;
use crate::db::opportunities::Opportunities;
use crate::db::Entity;
use crate::domain::query::{parse_none, Params, StatsQuery};
use crate::domain::tags::Tag;
use crate::domain::{Module, Operation, TenantId};
use crate::errors::ApiError;
use crate::state::AppState;

/// How many of the newest records of each entity the bundle carries.
pub const RECENT: i64 = 5;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v2/dashboard/bundle")
            // Cached: `BUNDLE`.
            .route(web::get().to(bundle))
            .default_service(only("GET")),
    );
}

#[derive(Serialize, Default)]
struct PerEntity<T> {
    accounts: T,
    contacts: T,
    leads: T,
    opportunities: T,
    activities: T,
}

/// One entity's part of the bundle, as its cache entry holds it.
#[derive(Serialize)]
struct SummaryBody<R> {
    count: i64,
    recent: Vec<R>,
    generated_at: DateTime<Utc>,
}

/// A part read back for composing; the records stay the JSON text they were stored as.
#[derive(Deserialize)]
struct SummaryPart<'a> {
    count: i64,
    #[serde(borrow)]
    recent: &'a RawValue,
    generated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct StagesPart<'a> {
    #[serde(borrow)]
    stages: &'a RawValue,
}

#[derive(Serialize)]
struct BundleBody<'a> {
    counts: PerEntity<i64>,
    opportunity_stages: &'a RawValue,
    recent: PerEntity<&'a RawValue>,
    generated_at: DateTime<Utc>,
}

/// The cache policy of the bundle, as the contract's route table gives it: of the composed
/// answer, and of each entity's part (under that entity's module, operation `bundle`). The stage
/// breakdown is the whole-tenant stats answer ([`STATS`]).
pub const BUNDLE: CachePolicy = CachePolicy::new(Module::Dashboard, Operation::Bundle, 60);

/// The cache policy of entity `E`'s part of the bundle.
fn part_policy<E: Entity>() -> CachePolicy {
    CachePolicy::new(E::SPEC.module, Operation::Bundle, BUNDLE.ttl_secs)
}

/// The JSON of entity `E`'s part: its count and newest records, read in one statement; tagged
/// with all of `E`'s records, its newest ones, and the dashboard (whose admin invalidation drops
/// every part).
async fn part_body<E: Entity>(state: &AppState, tenant: TenantId) -> Result<Composition, ApiError> {
    let mut db = state.db(tenant).await?;
    let (count, rows) = db
        .run(|conn| E::newest_with_count(conn, tenant, RECENT))
        .await?;
    let recent = page(rows, RECENT).data;
    let mut tags = vec![Tag::module(Module::Dashboard), Tag::members(E::SPEC.module)];
    tags.extend(record_tags::<E>(&recent));
    let body = json_body(&SummaryBody {
        count,
        recent,
        generated_at: crate::db::now(),
    })?;
    Ok(Composition::tagged(body, tags))
}

async fn part<E: Entity>(
    state: &AppState,
    tenant: TenantId,
    read: Read,
) -> Result<Answer, ApiError> {
    let params = Params::new();
    let lookup = part_policy::<E>().lookup(tenant, &params, read);
    state
        .cache
        .get_or_load(&lookup, part_body::<E>(state, tenant))
        .await
}

/// The bundle's parts, in the order [`compose`] reads them: the five entities, then the stages.
async fn parts(state: &AppState, tenant: TenantId, read: Read) -> Result<[Answer; 6], ApiError> {
    let whole_tenant = StatsQuery { account: None };
    let params = whole_tenant.canonical();
    let stages = state
        .cache
        .get_or_load(
            &STATS.lookup(tenant, &params, read),
            stats_body(state, tenant, whole_tenant),
        )
        .await?;
    Ok([
        part::<Accounts>(state, tenant, read).await?,
        part::<Contacts>(state, tenant, read).await?,
        part::<Leads>(state, tenant, read).await?,
        part::<Opportunities>(state, tenant, read).await?,
        part::<Activities>(state, tenant, read).await?,
        stages,
    ])
}

/// The bundle's JSON out of its parts' stored bytes. `generated_at` is the oldest part's.
fn compose(parts: &[Answer; 6]) -> Result<Bytes, ApiError> {
    let summary = |at: usize| {
        serde_json::from_slice::<SummaryPart>(&parts[at].entry.body).map_err(ApiError::internal)
    };
    let [accounts, contacts, leads, opportunities, activities] = [
        summary(0)?,
        summary(1)?,
        summary(2)?,
        summary(3)?,
        summary(4)?,
    ];
    let stages =
        serde_json::from_slice::<StagesPart>(&parts[5].entry.body).map_err(ApiError::internal)?;
    let generated_at = [&accounts, &contacts, &leads, &opportunities, &activities]
        .iter()
        .map(|part| part.generated_at)
        .min()
        .unwrap_or_else(crate::db::now);
    json_body(&BundleBody {
        counts: PerEntity {
            accounts: accounts.count,
            contacts: contacts.count,
            leads: leads.count,
            opportunities: opportunities.count,
            activities: activities.count,
        },
        opportunity_stages: stages.stages,
        recent: PerEntity {
            accounts: accounts.recent,
            contacts: contacts.recent,
            leads: leads.recent,
            opportunities: opportunities.recent,
            activities: activities.recent,
        },
        generated_at,
    })
}

/// The bundle of `tenant`, composed from its parts as `read` reads them (a warm fills the
/// missing parts, a fresh read recomputes every part).
pub async fn bundle_body(
    state: &AppState,
    tenant: TenantId,
    read: Read,
) -> Result<Composition, ApiError> {
    // On the heap, and only once polled (on a miss): six loads inline made every bundle future,
    // a hit's too, kilobytes to move (a hit ran at 0.7 times the throughput).
    let parts = Box::pin(parts(state, tenant, read)).await?;
    Ok(Composition::new(compose(&parts)?, &parts))
}

async fn bundle(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = parse_none(req.query_string())?;
    let tenant = principal.tenant;
    let read = read_of(&req);
    respond(
        &req,
        &state,
        tenant,
        BUNDLE,
        &params,
        bundle_body(&state, tenant, read),
    )
    .await
}
