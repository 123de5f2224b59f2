//! Opportunities: records, keyset lists, counts and the per-stage stats.

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::dsl::{count_star, sum};
use diesel::expression::BoxableExpression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Numeric, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::entity::impl_entity;
use super::schema::opportunities;
use crate::domain::bodies::{NewOpportunity, OpportunityChanges};
use crate::domain::choices::Stage;
use crate::domain::entities::OPPORTUNITIES;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::TenantId;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = opportunities, check_for_backend(Pg))]
pub struct Opportunity {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub account_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub stage: String,
    #[serde(serialize_with = "super::serialize_money")]
    pub amount: BigDecimal,
    pub probability: i32,
    pub close_date: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new row; `None` in a defaulted column lets the database default apply.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = opportunities)]
pub struct OpportunityRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub account_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub stage: Option<&'static str>,
    pub amount: Option<BigDecimal>,
    pub probability: Option<i32>,
    pub close_date: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OpportunityRow {
    pub fn new(tenant: TenantId, new: NewOpportunity) -> Self {
        let now = super::now();
        OpportunityRow {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            name: new.name,
            account_id: new.account_id,
            contact_id: new.contact_id,
            stage: new.stage.map(Stage::as_str),
            amount: new.amount,
            probability: new.probability,
            close_date: new.close_date,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The fields an update changes; `None` leaves a column as it is.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = opportunities)]
pub struct OpportunityChangeset {
    pub name: Option<String>,
    pub account_id: Option<Option<Uuid>>,
    pub contact_id: Option<Option<Uuid>>,
    pub stage: Option<&'static str>,
    pub amount: Option<BigDecimal>,
    pub probability: Option<i32>,
    pub close_date: Option<Option<NaiveDate>>,
    pub updated_at: DateTime<Utc>,
}

impl OpportunityChangeset {
    pub fn new(changes: OpportunityChanges) -> Self {
        OpportunityChangeset {
            name: changes.name,
            account_id: changes.account_id,
            contact_id: changes.contact_id,
            stage: changes.stage.map(Stage::as_str),
            amount: changes.amount,
            probability: changes.probability,
            close_date: changes.close_date,
            updated_at: super::now(),
        }
    }
}

/// The tenant's opportunities matching `filters`, not yet ordered or selected.
pub fn filtered(tenant: TenantId, filters: &Filters) -> opportunities::BoxedQuery<'static, Pg> {
    let mut query = opportunities::table
        .filter(opportunities::tenant_id.eq(tenant.0))
        .into_boxed();
    if let Some(stage) = filters.text("stage") {
        query = query.filter(opportunities::stage.eq(stage.to_owned()));
    }
    if let Some(account) = filters.uuid("account_id") {
        query = query.filter(opportunities::account_id.eq(account));
    }
    if let Some(q) = &filters.q {
        query = query.filter(opportunities::name.ilike(like_pattern(q)));
    }
    query
}

/// Count, stage and amount sum per stage (stages without rows are absent).
pub type StageRow = (String, i64, Option<BigDecimal>);

/// The stats query exactly as the service runs it (public for plan checks).
pub fn stats_query(
    tenant: TenantId,
    account: Option<Uuid>,
) -> impl Query<SqlType = (Text, BigInt, Nullable<Numeric>)> + QueryFragment<Pg> + QueryId + Send + 'static
{
    // diesel cannot group a boxed query, so the optional filter is the boxed part.
    let by_account: Box<dyn BoxableExpression<opportunities::table, Pg, SqlType = Nullable<Bool>>> =
        match account {
            Some(account) => Box::new(opportunities::account_id.eq(account)),
            None => Box::new(super::fixed::fixed::<Nullable<Bool>>("TRUE")),
        };
    opportunities::table
        .filter(opportunities::tenant_id.eq(tenant.0))
        .filter(by_account)
        .group_by(opportunities::stage)
        .select((
            opportunities::stage,
            count_star(),
            sum(opportunities::amount),
        ))
}

/// Per stage: from the kept aggregates for the whole tenant, from the rows for one account.
pub async fn stats(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    account: Option<Uuid>,
) -> super::Result<Vec<StageRow>> {
    if account.is_none() {
        return super::aggregates::stages(conn, tenant).await;
    }
    Ok(stats_query(tenant, account).load(conn).await?)
}

impl_entity!(
    Opportunities,
    OPPORTUNITIES,
    opportunities,
    Opportunity,
    NewOpportunity => OpportunityRow,
    OpportunityChanges => OpportunityChangeset
);
