//! The cache outbox: what each committed write must invalidate, recorded in the write's own
//! transaction and removed once Redis has acknowledged it (see the migration for the table).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::cache_outbox;
use crate::domain::tags::{modules_of, Tag};
use crate::domain::{Module, TenantId};

/// A row of the outbox: an invalidation whose write may have committed.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cache_outbox)]
pub struct Pending {
    pub id: i64,
    pub tenant_id: Uuid,
    pub modules: Vec<String>,
    pub committed_at: DateTime<Utc>,
    pub tags: Vec<i64>,
}

impl Pending {
    /// The tags the row's write changed; a row of a version before tags names modules only,
    /// which are then invalidated as a whole (a name no module has is skipped).
    pub fn tags(&self) -> Vec<Tag> {
        if self.tags.is_empty() {
            return self
                .modules
                .iter()
                .filter_map(|name| Module::from_name(name))
                .map(Tag::module)
                .collect();
        }
        // The column is signed; a tag's bits are kept as they are.
        self.tags.iter().map(|&tag| Tag(tag as u64)).collect()
    }
}

/// Records that `tenant`'s answers depending on `tags` must be invalidated once the
/// surrounding transaction commits; returns the row's id.
pub async fn record(
    mut conn: &AsyncPgConnection,
    tenant: TenantId,
    tags: &[Tag],
) -> QueryResult<i64> {
    let names: Vec<&str> = modules_of(tags)
        .iter()
        .map(|module| module.name())
        .collect();
    let tags: Vec<i64> = tags.iter().map(|tag| tag.0 as i64).collect();
    diesel::insert_into(cache_outbox::table)
        .values((
            cache_outbox::tenant_id.eq(tenant.0),
            cache_outbox::modules.eq(names),
            cache_outbox::committed_at.eq(super::now()),
            cache_outbox::tags.eq(tags),
        ))
        .returning(cache_outbox::id)
        .get_result(&mut conn)
        .await
}

/// Up to `limit` rows recorded before `before`, oldest first, locked for the caller's
/// transaction; rows another relay holds are skipped, not waited for.
pub async fn lock_pending(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Pending>> {
    cache_outbox::table
        .filter(cache_outbox::committed_at.lt(before))
        .order(cache_outbox::id)
        .limit(limit)
        .select(Pending::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}

/// Removes rows Redis has acknowledged.
pub async fn remove(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(cache_outbox::table.filter(cache_outbox::id.eq_any(ids)))
        .execute(conn)
        .await
}

/// How many rows wait (tests and tools).
pub async fn waiting(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    cache_outbox::table.count().get_result(conn).await
}
