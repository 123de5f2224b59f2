//! `GET /api/v2/dashboard/bundle`: everything a dashboard shows after login, in one answer.

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use serde_json::Value;

use super::cached::{json_body, respond, CachePolicy};
use super::only;
use super::opportunities::{summarize, StageStat};
use crate::auth::Principal;
use crate::db::accounts::Accounts;
use crate::db::activities::Activities;
use crate::db::contacts::Contacts;
use crate::db::entity::page;
use crate::db::leads::Leads;
use crate::db::opportunities::{self, Opportunities};
use crate::db::Entity;
use crate::domain::query::{parse_none, Filters, ListQuery};
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

#[derive(Serialize)]
struct BundleBody {
    counts: PerEntity<i64>,
    opportunity_stages: Vec<StageStat>,
    recent: PerEntity<Value>,
    generated_at: DateTime<Utc>,
}

/// The count and newest records of one entity.
async fn summary<E: Entity>(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
) -> Result<(i64, Value), ApiError> {
    let count = E::count(conn, tenant, &Filters::default()).await?;
    let newest = ListQuery {
        limit: RECENT,
        cursor: None,
        filters: Filters::default(),
    };
    let rows = page(E::list(conn, tenant, &newest).await?, RECENT).data;
    let recent = serde_json::to_value(rows).map_err(ApiError::internal)?;
    Ok((count, recent))
}

/// The cache policy of the bundle, as the contract's route table gives it.
pub const BUNDLE: CachePolicy = CachePolicy::new(Module::Dashboard, Operation::Bundle, 60);

async fn bundle(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = parse_none(req.query_string())?;
    let tenant = principal.tenant;
    respond(
        &req,
        &state,
        tenant,
        BUNDLE,
        &params,
        bundle_body(&state, tenant),
    )
    .await
}

/// The JSON of `GET /api/v2/dashboard/bundle`.
pub async fn bundle_body(state: &AppState, tenant: TenantId) -> Result<Bytes, ApiError> {
    let mut db = state.db(tenant).await?;
    // One snapshot, so that counts, stages and the newest records agree with each other.
    let body = db
        .run(|conn| async move {
            conn.build_transaction()
                .read_only()
                .repeatable_read()
                .run(async |conn| {
                    let accounts = summary::<Accounts>(conn, tenant).await?;
                    let contacts = summary::<Contacts>(conn, tenant).await?;
                    let leads = summary::<Leads>(conn, tenant).await?;
                    let opportunity = summary::<Opportunities>(conn, tenant).await?;
                    let activities = summary::<Activities>(conn, tenant).await?;
                    let stages = opportunities::stats(conn, tenant, None).await?;
                    Ok::<_, ApiError>(BundleBody {
                        counts: PerEntity {
                            accounts: accounts.0,
                            contacts: contacts.0,
                            leads: leads.0,
                            opportunities: opportunity.0,
                            activities: activities.0,
                        },
                        opportunity_stages: summarize(stages).stages,
                        recent: PerEntity {
                            accounts: accounts.1,
                            contacts: contacts.1,
                            leads: leads.1,
                            opportunities: opportunity.1,
                            activities: activities.1,
                        },
                        generated_at: crate::db::now(),
                    })
                })
                .await
        })
        .await?;
    json_body(&body)
}
