//! Activities: calls, emails, meetings, tasks and notes, optionally about another record.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::entity::{impl_entity, References};
use super::schema::activities;
use crate::domain::entities::ACTIVITIES;
use crate::domain::fields::ValidBody;
use crate::domain::query::{like_pattern, Filters};
use crate::domain::Invalid;
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

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = activities)]
pub struct NewActivity {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub type_: String,
    pub subject: String,
    pub body: Option<String>,
    pub status: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub related_type: Option<String>,
    pub related_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `related_type` and `related_id` come together or not at all, both set or both null.
fn related_pair(body: &mut ValidBody) -> Result<Option<Option<(String, Uuid)>>, Invalid> {
    let pair_error = || {
        Invalid::Body(
            "field `related_id` must be given together with `related_type` (both set or both null)"
                .into(),
        )
    };
    match (
        body.take::<String>("related_type"),
        body.take::<Uuid>("related_id"),
    ) {
        (None, None) => Ok(None),
        (Some(None), Some(None)) => Ok(Some(None)),
        (Some(Some(kind)), Some(Some(id))) => Ok(Some(Some((kind, id)))),
        _ => Err(pair_error()),
    }
}

impl NewActivity {
    pub fn from_body(tenant: TenantId, mut body: ValidBody) -> Result<Self, Invalid> {
        let now = super::now();
        let related = related_pair(&mut body)?.flatten();
        Ok(NewActivity {
            id: Uuid::new_v4(),
            tenant_id: tenant.0,
            type_: body.required("type")?,
            subject: body.required("subject")?,
            body: body.value("body"),
            status: body.value("status"),
            due_at: body.value("due_at"),
            related_type: related.as_ref().map(|(kind, _)| kind.clone()),
            related_id: related.map(|(_, id)| id),
            created_at: now,
            updated_at: now,
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = activities)]
pub struct ActivityChanges {
    pub type_: Option<String>,
    pub subject: Option<String>,
    pub body: Option<Option<String>>,
    pub status: Option<String>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub related_type: Option<Option<String>>,
    pub related_id: Option<Option<Uuid>>,
    pub updated_at: DateTime<Utc>,
}

impl ActivityChanges {
    pub fn from_body(mut body: ValidBody) -> Result<Self, Invalid> {
        let related = related_pair(&mut body)?;
        Ok(ActivityChanges {
            type_: body.value("type"),
            subject: body.value("subject"),
            body: body.take("body"),
            status: body.value("status"),
            due_at: body.take("due_at"),
            related_type: related
                .as_ref()
                .map(|pair| pair.as_ref().map(|(kind, _)| kind.clone())),
            related_id: related.map(|pair| pair.map(|(_, id)| id)),
            updated_at: super::now(),
        })
    }
}

impl References for NewActivity {
    fn references(&self) -> Option<(&str, Uuid)> {
        Some((self.related_type.as_deref()?, self.related_id?))
    }
}

impl References for ActivityChanges {
    fn references(&self) -> Option<(&str, Uuid)> {
        Some((
            self.related_type.as_ref()?.as_deref()?,
            (*self.related_id.as_ref()?)?,
        ))
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
    NewActivity,
    ActivityChanges
);
