//! Per-tenant aggregates (each entity's record count; the opportunities' count and amount per
//! stage) that the triggers of migration `tenant_aggregates` keep in the transaction of every
//! write, spread over slots so that writers of one tenant do not queue on one row. Here: reading
//! them, checking them against the rows (`aishacrm aggregates verify`) and rebuilding them
//! (`aishacrm aggregates rebuild`).

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Numeric, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use uuid::Uuid;

use super::error::Result;
use super::fixed::fixed;
use super::opportunities::StageRow;
use super::schema::stage_totals;
use crate::domain::query::Filters;
use crate::domain::{Module, TenantId};

/// The count of all of `module`'s records, as an expression a query of that module's rows can
/// select: one statement reads both in one snapshot.
pub fn record_count<QS: 'static>(
    tenant: TenantId,
    module: Module,
) -> Box<dyn BoxableExpression<QS, diesel::pg::Pg, SqlType = BigInt>> {
    Box::new(
        fixed::<BigInt>(
            "(SELECT coalesce(sum(count), 0)::int8 FROM tenant_counts WHERE tenant_id = ",
        )
        .bind(tenant.0)
        .sql(" AND module = ")
        .bind(module.name())
        .sql(")"),
    )
}

/// The count of `module`'s records matching `filters` when the aggregates hold it: with no
/// filter at all, or an opportunity count by `stage` alone. `None`: the rows must be counted.
pub async fn count(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    module: Module,
    filters: &Filters,
) -> Result<Option<i64>> {
    // Slot sums: PostgreSQL's sum of int8 is numeric, cast back.
    let total = || fixed::<Nullable<BigInt>>("sum(count)::int8");
    if filters.is_empty() {
        let count = diesel::select(record_count(tenant, module))
            .get_result(conn)
            .await?;
        return Ok(Some(count));
    }
    match filters.sole_text("stage") {
        Some(stage) if module == Module::Opportunities => {
            let count: Option<i64> = stage_totals::table
                .filter(stage_totals::tenant_id.eq(tenant.0))
                .filter(stage_totals::stage.eq(stage))
                .select(total())
                .first(conn)
                .await?;
            Ok(Some(count.unwrap_or(0)))
        }
        _ => Ok(None),
    }
}

/// The tenant's opportunity count and amount per stage, stages without opportunities absent.
pub async fn stages(conn: &mut AsyncPgConnection, tenant: TenantId) -> Result<Vec<StageRow>> {
    Ok(stage_totals::table
        .filter(stage_totals::tenant_id.eq(tenant.0))
        .group_by(stage_totals::stage)
        .having(fixed::<diesel::sql_types::Bool>("sum(count) > 0"))
        .select((
            stage_totals::stage,
            fixed::<BigInt>("sum(count)::int8"),
            fixed::<Nullable<Numeric>>("sum(amount)"),
        ))
        .load(conn)
        .await?)
}

/// One figure whose kept value differs from what the rows say.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Drift {
    #[diesel(sql_type = SqlUuid)]
    pub tenant_id: Uuid,
    /// `accounts count`, `stage proposal count`, `stage proposal amount`, …
    #[diesel(sql_type = Text)]
    pub figure: String,
    #[diesel(sql_type = Text)]
    pub kept: String,
    #[diesel(sql_type = Text)]
    pub actual: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tenant {}: {} is {} in the aggregates, {} in the rows",
            self.tenant_id, self.figure, self.kept, self.actual
        )
    }
}

/// The figures the rows say, per tenant: `(tenant_id, figure, value)`.
const ACTUAL: &str = "
    SELECT tenant_id, 'accounts count' AS figure, count(*)::numeric AS value FROM accounts GROUP BY 1
    UNION ALL SELECT tenant_id, 'contacts count', count(*) FROM contacts GROUP BY 1
    UNION ALL SELECT tenant_id, 'leads count', count(*) FROM leads GROUP BY 1
    UNION ALL SELECT tenant_id, 'opportunities count', count(*) FROM opportunities GROUP BY 1
    UNION ALL SELECT tenant_id, 'activities count', count(*) FROM activities GROUP BY 1
    UNION ALL SELECT tenant_id, 'stage ' || stage || ' count', count(*)
        FROM opportunities GROUP BY tenant_id, stage
    UNION ALL SELECT tenant_id, 'stage ' || stage || ' amount', sum(amount)
        FROM opportunities GROUP BY tenant_id, stage";

/// The same figures as the aggregates keep them, summed over their slots.
const KEPT: &str = "
    SELECT tenant_id, module || ' count' AS figure, sum(count)::numeric AS value
        FROM tenant_counts GROUP BY tenant_id, module
    UNION ALL SELECT tenant_id, 'stage ' || stage || ' count', sum(count)
        FROM stage_totals GROUP BY tenant_id, stage
    UNION ALL SELECT tenant_id, 'stage ' || stage || ' amount', sum(amount)
        FROM stage_totals GROUP BY tenant_id, stage";

/// Every figure of every tenant whose aggregate differs from its rows (a figure absent on one
/// side counts as 0), read in one snapshot so that writes under way cannot show as drift.
pub async fn drift(conn: &mut AsyncPgConnection) -> Result<Vec<Drift>> {
    let query = format!(
        "SELECT tenant_id, figure, coalesce(kept.value, 0)::text AS kept,
                coalesce(actual.value, 0)::text AS actual
         FROM ({ACTUAL}) AS actual FULL JOIN ({KEPT}) AS kept USING (tenant_id, figure)
         WHERE coalesce(kept.value, 0) <> coalesce(actual.value, 0)
         ORDER BY tenant_id, figure"
    );
    let drift = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run(async move |conn| diesel::sql_query(query).load(conn).await)
        .await?;
    Ok(drift)
}

/// Recomputes the aggregates of `tenant` (of every tenant when `None`) from the rows, with the
/// migration's `rebuild_aggregates`. Writers wait meanwhile (the tables are locked in SHARE
/// mode; readers go on), so that no write falls between the count and the replacement.
pub async fn rebuild(conn: &mut AsyncPgConnection, tenant: Option<TenantId>) -> Result<()> {
    let only = tenant.map(|tenant| tenant.0);
    conn.transaction(async move |conn| {
        conn.batch_execute(
            "LOCK TABLE accounts, contacts, leads, opportunities, activities IN SHARE MODE",
        )
        .await?;
        diesel::sql_query("SELECT rebuild_aggregates($1)")
            .bind::<Nullable<SqlUuid>, _>(only)
            .execute(conn)
            .await
    })
    .await?;
    Ok(())
}
