//! `GET /api/v2/opportunities/stats`: count and amount per stage.

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use bigdecimal::{BigDecimal, Zero};
use serde::Serialize;
use uuid::Uuid;

use super::entities::json_response;
use super::only;
use crate::auth::{Principal, TenantId};
use crate::cache::middleware::cache_list;
use crate::db::opportunities::{self, StageRow};
use crate::domain::entities::STAGES;
use crate::domain::query::parse_params;
use crate::errors::ApiError;
use crate::state::AppState;

/// Registered before the generic opportunity routes so that `stats` is not read as an id.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v2/opportunities/stats")
            .route(
                web::get()
                    .to(stats)
                    .wrap(cache_list("opportunities", "stats", STATS_TTL_SECS)),
            )
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

/// Default TTL of the stats route.
pub const STATS_TTL_SECS: u64 = 300;

async fn stats(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = stats_body(&state, principal.tenant, req.query_string()).await?;
    Ok(json_response(body))
}

/// The JSON of `GET /api/v2/opportunities/stats?{raw_query}`.
pub async fn stats_body(
    state: &AppState,
    tenant: TenantId,
    raw_query: &str,
) -> Result<Bytes, ApiError> {
    let params = parse_params(raw_query, &["account_id"])?;
    let account = params
        .get("account_id")
        .map(|raw| {
            Uuid::try_parse(raw)
                .map_err(|_| ApiError::InvalidQuery("filter `account_id` must be a UUID".into()))
        })
        .transpose()?;
    let mut db = state.db(tenant).await?;
    let rows = db
        .run(|conn| opportunities::stats(conn, tenant, account))
        .await?;
    serde_json::to_vec(&summarize(rows))
        .map(Bytes::from)
        .map_err(ApiError::internal)
}
