//! Contacts: people, optionally working at an account.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::impl_entity;
use super::schema::contacts;
use crate::domain::bodies::{ContactChanges, NewContact};
use crate::domain::choices::ContactStatus;
use crate::domain::entities::CONTACTS;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::TenantId;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = contacts, check_for_backend(Pg))]
pub struct Contact {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
    pub account_id: Option<Uuid>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new row; `None` in a defaulted column lets the database default apply.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = contacts)]
pub struct ContactRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
    pub account_id: Option<Uuid>,
    pub status: Option<&'static str>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ContactRow {
    pub fn new(tenant: TenantId, new: NewContact) -> Self {
        let now = super::now();
        ContactRow {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            first_name: new.first_name,
            last_name: new.last_name,
            email: new.email,
            phone: new.phone,
            title: new.title,
            account_id: new.account_id,
            status: new.status.map(ContactStatus::as_str),
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = contacts)]
pub struct ContactChangeset {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<String>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub account_id: Option<Option<Uuid>>,
    pub status: Option<&'static str>,
    pub updated_at: DateTime<Utc>,
}

impl ContactChangeset {
    pub fn new(changes: ContactChanges) -> Self {
        ContactChangeset {
            first_name: changes.first_name,
            last_name: changes.last_name,
            email: changes.email,
            phone: changes.phone,
            title: changes.title,
            account_id: changes.account_id,
            status: changes.status.map(ContactStatus::as_str),
            updated_at: super::now(),
        }
    }
}

/// The tenant's contacts matching `filters`, not yet ordered or selected.
pub fn filtered(tenant: TenantId, filters: &Filters) -> contacts::BoxedQuery<'static, Pg> {
    let mut query = contacts::table
        .filter(contacts::tenant_id.eq(tenant.0))
        .into_boxed();
    if let Some(account) = filters.uuid("account_id") {
        query = query.filter(contacts::account_id.eq(account));
    }
    if let Some(status) = filters.text("status") {
        query = query.filter(contacts::status.eq(status.to_owned()));
    }
    if let Some(q) = &filters.q {
        let pattern = like_pattern(q);
        query = query.filter(super::search_document(SEARCH_DOCUMENT, &pattern));
        query = query.filter(
            contacts::first_name
                .ilike(pattern.clone())
                .or(contacts::last_name.ilike(pattern.clone()).nullable())
                .or(contacts::email.ilike(pattern)),
        );
    }
    query
}

/// The fields `q` searches, joined as `contacts_tenant_search_trgm_idx` indexes them.
const SEARCH_DOCUMENT: &str =
    "(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, ''))";

impl_entity!(
    Contacts,
    CONTACTS,
    contacts,
    Contact,
    NewContact => ContactRow,
    ContactChanges => ContactChangeset
);
