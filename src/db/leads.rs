//! Leads: prospects not yet qualified into contacts and opportunities.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::{impl_entity, References};
use super::schema::leads;
use crate::domain::entities::LEADS;
use crate::domain::fields::ValidBody;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::Invalid;
use crate::domain::TenantId;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = leads, check_for_backend(Pg))]
pub struct Lead {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub source: Option<String>,
    pub status: String,
    pub score: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = leads)]
pub struct NewLead {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub score: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl NewLead {
    pub fn from_body(tenant: TenantId, mut body: ValidBody) -> Result<Self, Invalid> {
        let now = super::now();
        Ok(NewLead {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            first_name: body.value("first_name"),
            last_name: body.required("last_name")?,
            email: body.value("email"),
            company: body.value("company"),
            source: body.value("source"),
            status: body.value("status"),
            score: body.value("score"),
            created_at: now,
            updated_at: now,
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = leads)]
pub struct LeadChanges {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<String>,
    pub email: Option<Option<String>>,
    pub company: Option<Option<String>>,
    pub source: Option<Option<String>>,
    pub status: Option<String>,
    pub score: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

impl LeadChanges {
    pub fn from_body(mut body: ValidBody) -> Result<Self, Invalid> {
        Ok(LeadChanges {
            first_name: body.take("first_name"),
            last_name: body.value("last_name"),
            email: body.take("email"),
            company: body.take("company"),
            source: body.take("source"),
            status: body.value("status"),
            score: body.value("score"),
            updated_at: super::now(),
        })
    }
}

impl References for NewLead {}
impl References for LeadChanges {}

/// The tenant's leads matching `filters`, not yet ordered or selected.
pub fn filtered(tenant: TenantId, filters: &Filters) -> leads::BoxedQuery<'static, Pg> {
    let mut query = leads::table
        .filter(leads::tenant_id.eq(tenant.0))
        .into_boxed();
    if let Some(status) = filters.text("status") {
        query = query.filter(leads::status.eq(status.to_owned()));
    }
    if let Some(source) = filters.text("source") {
        query = query.filter(leads::source.eq(source.to_owned()));
    }
    if let Some(q) = &filters.q {
        let pattern = like_pattern(q);
        query = query.filter(
            leads::first_name
                .ilike(pattern.clone())
                .or(leads::last_name.ilike(pattern.clone()).nullable())
                .or(leads::email.ilike(pattern.clone()))
                .or(leads::company.ilike(pattern)),
        );
    }
    query
}

impl_entity!(Leads, LEADS, leads, Lead, NewLead, LeadChanges);
