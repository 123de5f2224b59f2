//! Every query a cached read runs on a miss is a prepared statement of its connection, parsed
//! once and run again: a miss costs one round trip to the database, not a parse and then a run.

use aishacrm::auth::TenantId;
use aishacrm::db::accounts::Accounts;
use aishacrm::db::activities::Activities;
use aishacrm::db::contacts::Contacts;
use aishacrm::db::leads::Leads;
use aishacrm::db::opportunities::{self, Opportunities};
use aishacrm::db::{aggregates, Entity};
use aishacrm::domain::cursor::Cursor;
use aishacrm::domain::query::{parse_count, Filters, ListQuery};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::helpers::TestDatabase;

/// Runs every read `E` answers on a miss (first and later pages, with and without filters and
/// `q`, counts, the bundle part) for `tenant`; how many statements that ran.
async fn read_all<E: Entity>(conn: &mut AsyncPgConnection, tenant: TenantId, q: &str) -> usize {
    // Every entity has fields `q` searches.
    let searched = parse_count(E::SPEC, &format!("q={q}")).expect("q");
    let lists = [Filters::default(), searched.clone()];
    let mut ran = 0;
    for filters in &lists {
        for cursor in [
            None,
            Some(Cursor {
                created_at: aishacrm::db::now(),
                id: Uuid::new_v4(),
            }),
        ] {
            let query = ListQuery {
                limit: 50,
                cursor,
                filters: filters.clone(),
            };
            E::list(conn, tenant, &query).await.expect("list");
            ran += 1;
        }
    }
    for filters in [Filters::default(), searched] {
        E::count(conn, tenant, &filters).await.expect("count");
        ran += 1;
    }
    E::newest_with_count(conn, tenant, 5)
        .await
        .expect("bundle part");
    ran + 1
}

async fn read_everything(conn: &mut AsyncPgConnection, tenant: TenantId, q: &str) -> usize {
    let mut ran = read_all::<Accounts>(conn, tenant, q).await
        + read_all::<Contacts>(conn, tenant, q).await
        + read_all::<Leads>(conn, tenant, q).await
        + read_all::<Opportunities>(conn, tenant, q).await
        + read_all::<Activities>(conn, tenant, q).await;
    for account in [None, Some(Uuid::new_v4())] {
        opportunities::stats(conn, tenant, account)
            .await
            .expect("stats");
        ran += 1;
    }
    let by_stage = parse_count(Opportunities::SPEC, "stage=proposal").expect("stage");
    aggregates::count(conn, tenant, Opportunities::SPEC.module, &by_stage)
        .await
        .expect("count by stage")
        .expect("kept in the aggregates");
    ran + 1
}

#[derive(diesel::QueryableByName)]
struct Prepared {
    #[diesel(sql_type = BigInt)]
    statements: i64,
    #[diesel(sql_type = BigInt)]
    runs: i64,
}

/// The statements this session keeps prepared, and how often they ran. Asked with a statement
/// that is itself not kept, so that it does not count itself.
async fn prepared(conn: &mut AsyncPgConnection) -> Prepared {
    diesel::sql_query(
        "SELECT count(*) AS statements, \
         coalesce(sum(generic_plans + custom_plans), 0)::int8 AS runs \
         FROM pg_prepared_statements",
    )
    .get_result(conn)
    .await
    .expect("pg_prepared_statements")
}

#[tokio::test]
async fn every_read_of_a_miss_is_a_statement_prepared_once() {
    let database = TestDatabase::create().await;
    let mut conn = <AsyncPgConnection as AsyncConnection>::establish(&database.url)
        .await
        .expect("connect");
    // What connecting itself prepared.
    let before = prepared(&mut conn).await;
    let first = read_everything(&mut conn, TenantId(Uuid::new_v4()), "an").await;
    let after_first = prepared(&mut conn).await;
    assert_eq!(
        after_first.runs - before.runs,
        first as i64,
        "of {first} statements run, only {} ran as prepared statements",
        after_first.runs - before.runs
    );
    // Another tenant, other search text, other cursors: the same statements, run again.
    let second = read_everything(&mut conn, TenantId(Uuid::new_v4()), "zq").await;
    let after_second = prepared(&mut conn).await;
    assert_eq!(
        after_second.statements, after_first.statements,
        "the second round prepared statements again"
    );
    assert_eq!(after_second.runs - before.runs, (first + second) as i64);
}
