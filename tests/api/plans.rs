//! The planner uses an index for one tenant's list, count, stats and search on a table big
//! enough for a sequential scan to be tempting.

use crate::support::explain::explain;
use aishacrm::auth::TenantId;
use aishacrm::db::{contacts, leads, opportunities, seed};
use aishacrm::domain::cursor::Cursor;
use aishacrm::domain::entities::{CONTACTS, LEADS, OPPORTUNITIES};
use aishacrm::domain::query::{parse_count, Filters, ListQuery};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::helpers::TestDatabase;

fn assert_indexed(plan: &str, what: &str) {
    assert!(
        !plan.contains("Seq Scan"),
        "{what} scans the table:\n{plan}"
    );
    assert!(plan.contains("Index"), "{what} uses no index:\n{plan}");
}

/// Whether `plan` scans `index` with the search pattern in its condition (an index of the
/// tenant and trigrams can also serve the tenant alone, then every row of it is matched).
fn searched_in_index(plan: &str, index: &str) -> bool {
    let mut lines = plan.lines().skip_while(|line| !line.contains(index));
    lines.next().is_some()
        && lines
            .next()
            .is_some_and(|line| line.contains("Index Cond") && line.contains("~~*"))
}

#[tokio::test]
async fn tenant_queries_use_indexes() {
    let database = TestDatabase::create().await;
    let mut conn = <AsyncPgConnection as AsyncConnection>::establish(&database.url)
        .await
        .expect("connect");
    let tenants: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let hidden = ProgressBar::hidden();
    for tenant in &tenants {
        seed::seed_tenant(&mut conn, *tenant, 3_000, &hidden)
            .await
            .expect("seeding");
    }
    seed::analyze(&mut conn).await.expect("analyze");
    let tenant = TenantId(tenants[3]);

    let first_page = ListQuery {
        limit: 50,
        cursor: None,
        filters: Filters::default(),
    };
    let plan = explain(&mut conn, opportunities::list_query(tenant, &first_page))
        .await
        .unwrap();
    assert_indexed(&plan, "list");

    let last: (chrono::DateTime<chrono::Utc>, Uuid) = aishacrm::db::schema::opportunities::table
        .filter(aishacrm::db::schema::opportunities::tenant_id.eq(tenant.0))
        .select((
            aishacrm::db::schema::opportunities::created_at,
            aishacrm::db::schema::opportunities::id,
        ))
        .order(aishacrm::db::schema::opportunities::created_at.desc())
        .offset(1500)
        .first(&mut conn)
        .await
        .unwrap();
    let later_page = ListQuery {
        cursor: Some(Cursor {
            created_at: last.0,
            id: last.1,
        }),
        ..first_page.clone()
    };
    let plan = explain(&mut conn, opportunities::list_query(tenant, &later_page))
        .await
        .unwrap();
    assert_indexed(&plan, "list after a cursor");
    assert!(
        plan.contains("ROW(created_at, id) <") || plan.contains("(created_at, id) <"),
        "keyset in the index condition:\n{plan}"
    );

    let plan = explain(
        &mut conn,
        opportunities::filtered(tenant, &Filters::default()).count(),
    )
    .await
    .unwrap();
    assert_indexed(&plan, "count");

    let plan = explain(&mut conn, opportunities::stats_query(tenant, None))
        .await
        .unwrap();
    assert_indexed(&plan, "stats");
    let plan = explain(
        &mut conn,
        opportunities::stats_query(tenant, Some(Uuid::new_v4())),
    )
    .await
    .unwrap();
    assert_indexed(&plan, "stats for one account");

    let search = parse_count(&OPPORTUNITIES, "q=Renewal").unwrap();
    let plan = explain(
        &mut conn,
        opportunities::list_query(
            tenant,
            &ListQuery {
                filters: search.clone(),
                ..first_page.clone()
            },
        ),
    )
    .await
    .unwrap();
    assert_indexed(&plan, "search list");
    let plan = explain(&mut conn, opportunities::filtered(tenant, &search).count())
        .await
        .unwrap();
    assert_indexed(&plan, "search count");
    // The matches of the tenant, not every row of the tenant matched one by one.
    assert!(
        searched_in_index(&plan, "opportunities_tenant_name_trgm_idx"),
        "search count without the tenant's trigram index:\n{plan}"
    );
    // Leads and contacts search several fields: one index over them all, not one per field,
    // each of which starts from every row of the tenant.
    let search = parse_count(&LEADS, "q=hooli").unwrap();
    let plan = explain(&mut conn, leads::filtered(tenant, &search).count())
        .await
        .unwrap();
    assert!(
        searched_in_index(&plan, "leads_tenant_search_trgm_idx"),
        "lead search without the joined fields' index:\n{plan}"
    );
    let search = parse_count(&CONTACTS, "q=garcia").unwrap();
    let plan = explain(&mut conn, contacts::filtered(tenant, &search).count())
        .await
        .unwrap();
    assert!(
        searched_in_index(&plan, "contacts_tenant_search_trgm_idx"),
        "contact search without the joined fields' index:\n{plan}"
    );
    drop(conn);
}
