//! `EXPLAIN` of any diesel query, so tests can check the plans of the very queries the service
//! runs.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Wraps a query in `EXPLAIN`.
#[derive(Debug, Clone, Copy)]
pub struct Explain<Q>(pub Q);

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explain<Q> {
    type SqlType = diesel::sql_types::Text;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("EXPLAIN ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> diesel::RunQueryDsl<AsyncPgConnection> for Explain<Q> {}

/// The plan PostgreSQL chooses for `query`, one line per plan node.
pub async fn explain<Q>(conn: &mut AsyncPgConnection, query: Q) -> QueryResult<String>
where
    Q: QueryFragment<Pg> + Send + 'static,
{
    let lines: Vec<String> = Explain(query).load(conn).await?;
    Ok(lines.join("\n"))
}
