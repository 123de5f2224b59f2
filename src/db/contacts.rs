//! Contacts: people, optionally working at an account.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::{impl_entity, References};
use super::schema::contacts;
use crate::domain::entities::CONTACTS;
use crate::domain::fields::ValidBody;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::Invalid;
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

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = contacts)]
pub struct NewContact {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
    pub account_id: Option<Uuid>,
    pub status: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl NewContact {
    pub fn from_body(tenant: TenantId, mut body: ValidBody) -> Result<Self, Invalid> {
        let now = super::now();
        Ok(NewContact {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            first_name: body.value("first_name"),
            last_name: body.required("last_name")?,
            email: body.value("email"),
            phone: body.value("phone"),
            title: body.value("title"),
            account_id: body.value("account_id"),
            status: body.value("status"),
            created_at: now,
            updated_at: now,
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = contacts)]
pub struct ContactChanges {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<String>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub account_id: Option<Option<Uuid>>,
    pub status: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl ContactChanges {
    pub fn from_body(mut body: ValidBody) -> Result<Self, Invalid> {
        Ok(ContactChanges {
            first_name: body.take("first_name"),
            last_name: body.value("last_name"),
            email: body.take("email"),
            phone: body.take("phone"),
            title: body.take("title"),
            account_id: body.take("account_id"),
            status: body.value("status"),
            updated_at: super::now(),
        })
    }
}

impl References for NewContact {}
impl References for ContactChanges {}

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
        query = query.filter(
            contacts::first_name
                .ilike(pattern.clone())
                .or(contacts::last_name.ilike(pattern.clone()).nullable())
                .or(contacts::email.ilike(pattern)),
        );
    }
    query
}

impl_entity!(
    Contacts,
    CONTACTS,
    contacts,
    Contact,
    NewContact,
    ContactChanges
);
