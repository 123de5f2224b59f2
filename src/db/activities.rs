//! Activities: calls, emails, meetings, tasks and notes, optionally about another record.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::impl_entity;
use super::schema::activities;
use crate::domain::bodies::{ActivityChanges, NewActivity};
use crate::domain::choices::{ActivityStatus, ActivityType, RelatedType};
use crate::domain::entities::ACTIVITIES;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::TenantId;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = activities, check_for_backend(Pg))]
pub struct Activity {
    pub id: Uuid,
    pub tenant_id: Uuid,
    #[serde(rename = "type")]
    pub type_: String,
    pub subject: String,
    pub body: Option<String>,
    pub status: String,
    pub due_at: Option<DateTime<Utc>>,
    pub related_type: Option<String>,
    pub related_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new row; `None` in a defaulted column lets the database default apply.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = activities)]
pub struct ActivityRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub type_: &'static str,
    pub subject: String,
    pub body: Option<String>,
    pub status: Option<&'static str>,
    pub due_at: Option<DateTime<Utc>>,
    pub related_type: Option<&'static str>,
    pub related_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ActivityRow {
    pub fn new(tenant: TenantId, new: NewActivity) -> Self {
        let now = super::now();
        ActivityRow {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            type_: new.kind.as_str(),
            subject: new.subject,
            body: new.body,
            status: new.status.map(ActivityStatus::as_str),
            due_at: new.due_at,
            related_type: new.related_type.map(RelatedType::as_str),
            related_id: new.related_id,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = activities)]
pub struct ActivityChangeset {
    pub type_: Option<&'static str>,
    pub subject: Option<String>,
    pub body: Option<Option<String>>,
    pub status: Option<&'static str>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub related_type: Option<Option<&'static str>>,
    pub related_id: Option<Option<Uuid>>,
    pub updated_at: DateTime<Utc>,
}

impl ActivityChangeset {
    pub fn new(changes: ActivityChanges) -> Self {
        ActivityChangeset {
            type_: changes.kind.map(ActivityType::as_str),
            subject: changes.subject,
            body: changes.body,
            status: changes.status.map(ActivityStatus::as_str),
            due_at: changes.due_at,
            related_type: changes
                .related_type
                .map(|kind| kind.map(RelatedType::as_str)),
            related_id: changes.related_id,
            updated_at: super::now(),
        }
    }
}

/// The tenant's activities matching `filters`, not yet ordered or selected.
pub fn filtered(tenant: TenantId, filters: &Filters) -> activities::BoxedQuery<'static, Pg> {
    let mut query = activities::table
        .filter(activities::tenant_id.eq(tenant.0))
        .into_boxed();
    if let Some(kind) = filters.text("type") {
        query = query.filter(activities::type_.eq(kind.to_owned()));
    }
    if let Some(status) = filters.text("status") {
        query = query.filter(activities::status.eq(status.to_owned()));
    }
    if let Some(related_type) = filters.text("related_type") {
        query = query.filter(activities::related_type.eq(related_type.to_owned()));
    }
    if let Some(related_id) = filters.uuid("related_id") {
        query = query.filter(activities::related_id.eq(related_id));
    }
    if let Some(q) = &filters.q {
        query = query.filter(activities::subject.ilike(like_pattern(q)));
    }
    query
}

impl_entity!(
    Activities,
    ACTIVITIES,
    activities,
    Activity,
    NewActivity => ActivityRow,
    ActivityChanges => ActivityChangeset
);
