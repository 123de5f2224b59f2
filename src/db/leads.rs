//! Leads: prospects not yet qualified into contacts and opportunities.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::impl_entity;
use super::schema::leads;
use crate::domain::bodies::{LeadChanges, NewLead};
use crate::domain::choices::LeadStatus;
use crate::domain::entities::LEADS;
use crate::domain::query::{like_pattern, Filters};
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

/// A new row; `None` in a defaulted column lets the database default apply.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = leads)]
pub struct LeadRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub source: Option<String>,
    pub status: Option<&'static str>,
    pub score: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl LeadRow {
    pub fn new(tenant: TenantId, new: NewLead) -> Self {
        let now = super::now();
        LeadRow {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            first_name: new.first_name,
            last_name: new.last_name,
            email: new.email,
            company: new.company,
            source: new.source,
            status: new.status.map(LeadStatus::as_str),
            score: new.score,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = leads)]
pub struct LeadChangeset {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<String>,
    pub email: Option<Option<String>>,
    pub company: Option<Option<String>>,
    pub source: Option<Option<String>>,
    pub status: Option<&'static str>,
    pub score: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

impl LeadChangeset {
    pub fn new(changes: LeadChanges) -> Self {
        LeadChangeset {
            first_name: changes.first_name,
            last_name: changes.last_name,
            email: changes.email,
            company: changes.company,
            source: changes.source,
            status: changes.status.map(LeadStatus::as_str),
            score: changes.score,
            updated_at: super::now(),
        }
    }
}

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
        query = query.filter(super::search_document(SEARCH_DOCUMENT, &pattern));
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

/// The fields `q` searches, joined as `leads_tenant_search_trgm_idx` indexes them.
const SEARCH_DOCUMENT: &str = "(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' \
     || coalesce(email, '') || ' ' || coalesce(company, ''))";

impl_entity!(
    Leads,
    LEADS,
    leads,
    Lead,
    NewLead => LeadRow,
    LeadChanges => LeadChangeset
);
