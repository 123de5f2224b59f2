//! `GET /api/v2/opportunities/stats`: count and amount per stage.

use actix_web::{web, HttpRequest, HttpResponse};
use bigdecimal::{BigDecimal, Zero};
use serde::Serialize;

use super::cached::{json_body, respond, CachePolicy};
use super::only;
use crate::auth::Principal;
use crate::cache::Composition;
use crate::db::opportunities::{self, StageRow};
use crate::domain::entities::STAGES;
use crate::domain::query::StatsQuery;
use crate::domain::tags::Tag;
use crate::domain::{Module, Operation, TenantId};
use crate::errors::ApiError;
use crate::state::AppState;

/// Registered before the generic opportunity routes so that `stats` is not read as an id.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v2/opportunities/stats")
            // Cached: `STATS`.
            .route(web::get().to(stats))
            .default_service(only("GET")),
    );
}

#[derive(Debug, Serialize)]
pub struct StageStat {
    pub stage: &'static str,
    pub count: i64,
    #[serde(serialize_with = "crate::db::serialize_money")]
    pub amount: BigDecimal,
}

#[derive(Debug, Serialize)]
pub struct Total {
    pub count: i64,
    #[serde(serialize_with = "crate::db::serialize_money")]
    pub amount: BigDecimal,
}

#[derive(Debug, Serialize)]
pub struct StatsBody {
    pub stages: Vec<StageStat>,
    pub total: Total,
}

/// All six stages in the contract's order, zeros included, and their total.
pub fn summarize(rows: Vec<StageRow>) -> StatsBody {
    let mut total_count = 0;
    let mut total_amount = BigDecimal::zero();
    let stages = STAGES
        .iter()
        .map(|stage| {
            let (count, amount) = rows
                .iter()
                .find(|(name, _, _)| name == stage)
                .map(|(_, count, amount)| (*count, amount.clone().unwrap_or_default()))
                .unwrap_or_default();
            total_count += count;
            total_amount += &amount;
            StageStat {
                stage,
                count,
                amount,
            }
        })
        .collect();
    StatsBody {
        stages,
        total: Total {
            count: total_count,
            amount: total_amount,
        },
    }
}

/// The cache policy of the stats route, as the contract's route table gives it.
pub const STATS: CachePolicy = CachePolicy::new(Module::Opportunities, Operation::Stats, 300);

async fn stats(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = StatsQuery::parse(req.query_string())?;
    let tenant = principal.tenant;
    let params = query.canonical();
    respond(
        &req,
        &state,
        tenant,
        STATS,
        &params,
        stats_body(&state, tenant, query),
    )
    .await
}

/// The JSON of `GET /api/v2/opportunities/stats` for `query`, tagged with what it adds up: the
/// tenant's totals, or those of the account it names and that account's set of records.
pub async fn stats_body(
    state: &AppState,
    tenant: TenantId,
    query: StatsQuery,
) -> Result<Composition, ApiError> {
    let mut db = state.db(tenant).await?;
    let rows = db
        .run(|conn| opportunities::stats(conn, tenant, query.account))
        .await?;
    let module = Module::Opportunities;
    let tags = match query.account {
        None => vec![Tag::totals(module)],
        Some(account) => {
            let account = account.hyphenated().to_string();
            vec![
                Tag::value(module, "account_id", &account),
                Tag::totals_in(module, "account_id", &account),
            ]
        }
    };
    Ok(Composition::tagged(json_body(&summarize(rows))?, tags))
}
