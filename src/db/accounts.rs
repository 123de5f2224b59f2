//! Accounts: the companies a tenant sells to.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::impl_entity;
use super::schema::accounts;
use crate::domain::bodies::{AccountChanges, NewAccount};
use crate::domain::entities::ACCOUNTS;
use crate::domain::query::{like_pattern, Filters};
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
pub struct AccountRow {
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

impl AccountRow {
    pub fn new(tenant: TenantId, new: NewAccount) -> Self {
        let now = super::now();
        AccountRow {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            name: new.name,
            industry: new.industry,
            website: new.website,
            phone: new.phone,
            annual_revenue: new.annual_revenue,
            employee_count: new.employee_count,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = accounts)]
pub struct AccountChangeset {
    pub name: Option<String>,
    pub industry: Option<Option<String>>,
    pub website: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub annual_revenue: Option<Option<BigDecimal>>,
    pub employee_count: Option<Option<i32>>,
    pub updated_at: DateTime<Utc>,
}

impl AccountChangeset {
    pub fn new(changes: AccountChanges) -> Self {
        AccountChangeset {
            name: changes.name,
            industry: changes.industry,
            website: changes.website,
            phone: changes.phone,
            annual_revenue: changes.annual_revenue,
            employee_count: changes.employee_count,
            updated_at: super::now(),
        }
    }
}

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
    NewAccount => AccountRow,
    AccountChanges => AccountChangeset
);
