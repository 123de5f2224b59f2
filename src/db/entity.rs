//! What every entity's data module provides, so that one set of HTTP handlers serves all five.

use std::future::Future;

use diesel_async::AsyncPgConnection;
use serde::Serialize;
use uuid::Uuid;

use super::error::{Error, Result};
use super::Written;
use crate::domain::bodies::Body;
use crate::domain::choices::RelatedType;
use crate::domain::cursor::Cursor;
use crate::domain::entities::{Cascade, EntitySpec};
use crate::domain::query::{Filters, ListQuery};
use crate::domain::tags::{cascade_tags, changed_tags, Tag};
use crate::domain::TenantId;

/// A record's position in the `created_at DESC, id DESC` order.
pub trait Keyed {
    fn cursor(&self) -> Cursor;
}

/// The tenant-scoped queries of one entity.
pub trait Entity: 'static {
    const SPEC: &'static EntitySpec;
    type Record: Serialize + Keyed + Send;
    type New: Body + Send;
    type Changes: Body + Send;

    /// Up to `query.limit + 1` records after the cursor; the extra one tells a next page exists.
    fn list(
        conn: &mut AsyncPgConnection,
        tenant: TenantId,
        query: &ListQuery,
    ) -> impl Future<Output = Result<Vec<Self::Record>>> + Send;

    fn count(
        conn: &mut AsyncPgConnection,
        tenant: TenantId,
        filters: &Filters,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// The count of all records and the newest `limit` (and one more), in one statement: one
    /// snapshot, one round trip.
    fn newest_with_count(
        conn: &mut AsyncPgConnection,
        tenant: TenantId,
        limit: i64,
    ) -> impl Future<Output = Result<(i64, Vec<Self::Record>)>> + Send;

    fn get(
        conn: &mut AsyncPgConnection,
        tenant: TenantId,
        id: Uuid,
    ) -> impl Future<Output = Result<Self::Record>> + Send;

    /// Writes run inside the caller's transaction ([`crate::db::Checkout::write`]), which also
    /// records their cache invalidation: each answers the cache tags it changed, from the rows
    /// before and after it. They take the connection shared so that their statements go out
    /// together, in one round trip ([`AsyncPgConnection`]'s pipelining): PostgreSQL runs them in
    /// the order sent.
    fn create(
        conn: &AsyncPgConnection,
        tenant: TenantId,
        new: Self::New,
    ) -> impl Future<Output = Result<Written<Self::Record>>> + Send;

    /// Changes only the fields `changes` gives; `NotFound` when the tenant has no such record.
    fn update(
        conn: &AsyncPgConnection,
        tenant: TenantId,
        id: Uuid,
        changes: Self::Changes,
    ) -> impl Future<Output = Result<Written<Self::Record>>> + Send;

    /// `NotFound` when the tenant has no such record. Sets the references to it to null first
    /// ([`EntitySpec::cascades`]), so that the tags of the records it touches are known.
    fn delete(
        conn: &AsyncPgConnection,
        tenant: TenantId,
        id: Uuid,
    ) -> impl Future<Output = Result<Written<()>>> + Send;
}

/// The tags a write of one record of `E` changed, from the record before and after it.
pub fn changed<E: Entity>(
    before: Option<&E::Record>,
    after: Option<&E::Record>,
) -> Result<Vec<Tag>> {
    fn fields<R: Serialize>(
        record: Option<&R>,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let Some(record) = record else {
            return Ok(None);
        };
        match serde_json::to_value(record) {
            Ok(serde_json::Value::Object(fields)) => Ok(Some(fields)),
            Ok(_) => Err(Error::Other("a record is not a JSON object".into())),
            Err(error) => Err(Error::Other(error.to_string())),
        }
    }
    let (before, after) = (fields(before)?, fields(after)?);
    Ok(changed_tags(E::SPEC, before.as_ref(), after.as_ref()))
}

/// Sets `cascade`'s references to record `id` to null, as the foreign key would on delete; the
/// tags of the records it touched. The caller holds the record's row lock, so no reference to
/// it can be added meanwhile.
pub async fn set_null(
    mut conn: &AsyncPgConnection,
    tenant: TenantId,
    cascade: &Cascade,
    id: Uuid,
) -> Result<Vec<Tag>> {
    use diesel::sql_types::Uuid as SqlUuid;
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Touched {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    // Table and column names come from the entity specs, never from a request. The rows are
    // locked in id order first: two cascades over the same rows (an account's and a contact's
    // delete, both referred to by one deal) that locked them in scan order deadlocked.
    let statement = format!(
        "UPDATE {table} SET {column} = NULL WHERE tenant_id = $1 AND id IN \
         (SELECT id FROM {table} WHERE tenant_id = $1 AND {column} = $2 ORDER BY id FOR UPDATE) \
         RETURNING id",
        table = cascade.referrer.module.name(),
        column = cascade.column,
    );
    let touched: Vec<Touched> = diesel::sql_query(statement)
        .bind::<SqlUuid, _>(tenant.0)
        .bind::<SqlUuid, _>(id)
        .load(&mut conn)
        .await?;
    let ids: Vec<Uuid> = touched.into_iter().map(|touched| touched.id).collect();
    Ok(cascade_tags(cascade.referrer, cascade.column, id, &ids))
}

/// One page of a keyset list.
pub struct Page<R> {
    pub data: Vec<R>,
    pub next: Option<Cursor>,
}

/// Cuts the `limit + 1` rows of a list query into a page and the cursor of the next one.
pub fn page<R: Keyed>(mut rows: Vec<R>, limit: i64) -> Page<R> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(Keyed::cursor)
    } else {
        None
    };
    Page { data: rows, next }
}

/// `NotFound` unless a delete removed a row.
pub fn deleted(rows: usize) -> Result<()> {
    if rows == 0 {
        Err(Error::NotFound)
    } else {
        Ok(())
    }
}

/// Fails with `422 invalid_reference` unless the tenant has the record a body points at without
/// a foreign key ([`Body::references`]: an activity's `related_type`/`related_id`), and keeps it
/// from being deleted until the surrounding transaction ends.
pub async fn check_reference(
    mut conn: &AsyncPgConnection,
    tenant: TenantId,
    reference: Option<(RelatedType, Uuid)>,
) -> Result<()> {
    let Some((kind, id)) = reference else {
        return Ok(());
    };
    use super::schema::{accounts, contacts, leads, opportunities};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;

    macro_rules! exists_in {
        ($table:ident) => {
            $table::table
                .filter($table::tenant_id.eq(tenant.0))
                .filter($table::id.eq(id))
                .select($table::id)
                .for_key_share()
                .first::<Uuid>(&mut conn)
                .await
                .optional()?
        };
    }
    let found = match kind {
        RelatedType::Account => exists_in!(accounts),
        RelatedType::Contact => exists_in!(contacts),
        RelatedType::Lead => exists_in!(leads),
        RelatedType::Opportunity => exists_in!(opportunities),
    };
    found
        .map(|_| ())
        .ok_or(Error::InvalidReference("related_id"))
}

/// Implements [`Keyed`], a `list_query` and [`Entity`] for one table. The entity module supplies
/// the record type, the insert row and changeset built (`new`) from the entity's typed bodies,
/// and `filtered`: the only parts that differ between entities.
///
/// A macro rather than default methods of [`Entity`]: each table is its own diesel type, and
/// the bounds a generic insert, update and boxed select need over it are longer than the
/// queries themselves. Everything that is not a diesel query (paging, reference checks, the
/// bodies) lives outside the macro.
macro_rules! impl_entity {
    (
        $entity:ident,
        $spec:path,
        $table:ident,
        $record:ident,
        $new:ident => $row:ident,
        $changes:ident => $changeset:ident
    ) => {
        impl $crate::db::entity::Keyed for $record {
            fn cursor(&self) -> $crate::domain::cursor::Cursor {
                $crate::domain::cursor::Cursor {
                    created_at: self.created_at,
                    id: self.id,
                }
            }
        }

        /// The list query exactly as the service runs it (public for plan checks).
        pub fn list_query(
            tenant: $crate::domain::TenantId,
            query: &$crate::domain::query::ListQuery,
        ) -> $table::BoxedQuery<
            'static,
            diesel::pg::Pg,
            diesel::dsl::AsSelect<$record, diesel::pg::Pg>,
        > {
            let mut statement = filtered(tenant, &query.filters);
            if let Some(cursor) = query.cursor {
                statement = statement.filter($crate::db::after(cursor));
            }
            statement
                .order(($table::created_at.desc(), $table::id.desc()))
                .limit(query.limit + 1)
                .select($record::as_select())
        }

        /// The record as it is before a write, locked until the write's transaction ends.
        async fn locked(
            mut conn: &diesel_async::AsyncPgConnection,
            tenant: $crate::domain::TenantId,
            id: uuid::Uuid,
        ) -> $crate::db::Result<$record> {
            // The primary key is (tenant_id, id).
            Ok($table::table
                .find((tenant.0, id))
                .select($record::as_select())
                .for_update()
                .first(&mut conn)
                .await?)
        }

        /// The tenant's records as an [`Entity`](crate::db::Entity).
        pub struct $entity;

        impl $crate::db::Entity for $entity {
            const SPEC: &'static $crate::domain::entities::EntitySpec = &$spec;
            type Record = $record;
            type New = $new;
            type Changes = $changes;

            async fn list(
                conn: &mut diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                query: &$crate::domain::query::ListQuery,
            ) -> $crate::db::Result<Vec<$record>> {
                Ok(list_query(tenant, query).load(conn).await?)
            }

            async fn count(
                conn: &mut diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                filters: &$crate::domain::query::Filters,
            ) -> $crate::db::Result<i64> {
                let module = <Self as $crate::db::Entity>::SPEC.module;
                if let Some(count) =
                    $crate::db::aggregates::count(conn, tenant, module, filters).await?
                {
                    return Ok(count);
                }
                Ok(filtered(tenant, filters).count().get_result(conn).await?)
            }

            async fn newest_with_count(
                conn: &mut diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                limit: i64,
            ) -> $crate::db::Result<(i64, Vec<$record>)> {
                let newest = $crate::domain::query::ListQuery {
                    limit,
                    cursor: None,
                    filters: Default::default(),
                };
                let module = <Self as $crate::db::Entity>::SPEC.module;
                let rows: Vec<($record, i64)> = list_query(tenant, &newest)
                    .select((
                        $record::as_select(),
                        $crate::db::aggregates::record_count(tenant, module),
                    ))
                    .load(conn)
                    .await?;
                // Every row carries the count; with no row there is nothing to count.
                let count = <[_]>::first(&rows).map_or(0, |(_, count)| *count);
                Ok((count, rows.into_iter().map(|(record, _)| record).collect()))
            }

            async fn get(
                conn: &mut diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                id: uuid::Uuid,
            ) -> $crate::db::Result<$record> {
                Ok($table::table
                    .find((tenant.0, id))
                    .select($record::as_select())
                    .first(conn)
                    .await?)
            }

            async fn create(
                conn: &diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                new: $new,
            ) -> $crate::db::Result<$crate::db::Written<$record>> {
                use $crate::domain::bodies::Body;
                let reference = new.references();
                let insert = async {
                    Ok(diesel::insert_into($table::table)
                        .values($row::new(tenant, new))
                        .returning($record::as_returning())
                        .get_result(&mut &*conn)
                        .await?)
                };
                let ((), record) = futures_util::try_join!(
                    $crate::db::entity::check_reference(conn, tenant, reference),
                    insert,
                )?;
                let tags = $crate::db::entity::changed::<Self>(None, Some(&record))?;
                Ok((record, tags))
            }

            async fn update(
                conn: &diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                id: uuid::Uuid,
                changes: $changes,
            ) -> $crate::db::Result<$crate::db::Written<$record>> {
                use $crate::domain::bodies::Body;
                let reference = changes.references();
                // Without the record the update changes no row, and the lock fails first.
                let update = async {
                    Ok(diesel::update($table::table.find((tenant.0, id)))
                        .set($changeset::new(changes))
                        .returning($record::as_returning())
                        .get_result(&mut &*conn)
                        .await?)
                };
                let ((), before, after) = futures_util::try_join!(
                    $crate::db::entity::check_reference(conn, tenant, reference),
                    locked(conn, tenant, id),
                    update,
                )?;
                let tags = $crate::db::entity::changed::<Self>(Some(&before), Some(&after))?;
                Ok((after, tags))
            }

            async fn delete(
                conn: &diesel_async::AsyncPgConnection,
                tenant: $crate::domain::TenantId,
                id: uuid::Uuid,
            ) -> $crate::db::Result<$crate::db::Written<()>> {
                // Locked first: a record referring to it cannot be added until this commits.
                let cascades = futures_util::future::try_join_all(
                    <Self as $crate::db::Entity>::SPEC
                        .cascades
                        .iter()
                        .map(|cascade| $crate::db::entity::set_null(conn, tenant, cascade, id)),
                );
                let delete = async {
                    Ok(diesel::delete($table::table.find((tenant.0, id)))
                        .execute(&mut &*conn)
                        .await?)
                };
                let (before, touched, rows) =
                    futures_util::try_join!(locked(conn, tenant, id), cascades, delete)?;
                $crate::db::entity::deleted(rows)?;
                let mut tags = $crate::db::entity::changed::<Self>(Some(&before), None)?;
                tags.extend(touched.into_iter().flatten());
                Ok(((), tags))
            }
        }
    };
}
pub(crate) use impl_entity;
