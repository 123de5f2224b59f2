//! Accounts: the companies a tenant sells to.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::{impl_entity, References};
use super::schema::accounts;
use crate::domain::entities::ACCOUNTS;
use crate::domain::fields::ValidBody;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::Invalid;
use crate::domain::TenantId;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = accounts, check_for_backend(Pg))]
pub struct Account {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub industry: Option<String>,
    pub website: Option<String>,
    pub phone: Option<String>,
    #[serde(serialize_with = "super::serialize_optional_money")]
    pub annual_revenue: Option<BigDecimal>,
    pub employee_count: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = accounts)]
pub struct NewAccount {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub industry: Option<String>,
    pub website: Option<String>,
    pub phone: Option<String>,
    pub annual_revenue: Option<BigDecimal>,
    pub employee_count: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl NewAccount {
    pub fn from_body(tenant: TenantId, mut body: ValidBody) -> Result<Self, Invalid> {
        let now = super::now();
        Ok(NewAccount {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            name: body.required("name")?,
            industry: body.value("industry"),
            website: body.value("website"),
            phone: body.value("phone"),
            annual_revenue: body.value("annual_revenue"),
            employee_count: body.value("employee_count"),
            created_at: now,
            updated_at: now,
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = accounts)]
pub struct AccountChanges {
    pub name: Option<String>,
    pub industry: Option<Option<String>>,
    pub website: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub annual_revenue: Option<Option<BigDecimal>>,
    pub employee_count: Option<Option<i32>>,
    pub updated_at: DateTime<Utc>,
}

impl AccountChanges {
    pub fn from_body(mut body: ValidBody) -> Result<Self, Invalid> {
        Ok(AccountChanges {
            name: body.value("name"),
            industry: body.take("industry"),
            website: body.take("website"),
            phone: body.take("phone"),
            annual_revenue: body.take("annual_revenue"),
            employee_count: body.take("employee_count"),
            updated_at: super::now(),
        })
    }
}

impl References for NewAccount {}
impl References for AccountChanges {}

/// The tenant's accounts matching `filters`, not yet ordered or selected.
pub fn filtered(tenant: TenantId, filters: &Filters) -> accounts::BoxedQuery<'static, Pg> {
    let mut query = accounts::table
        .filter(accounts::tenant_id.eq(tenant.0))
        .into_boxed();
    if let Some(industry) = filters.text("industry") {
        query = query.filter(accounts::industry.eq(industry.to_owned()));
    }
    if let Some(q) = &filters.q {
        query = query.filter(accounts::name.ilike(like_pattern(q)));
    }
    query
}

impl_entity!(
    Accounts,
    ACCOUNTS,
    accounts,
    Account,
    NewAccount,
    AccountChanges
);
