//! Keyset paging: walking every page returns every record exactly once, newest first
//! (`created_at` descending, then `id` descending), and cursors are opaque and bound to the
//! tenant and entity that issued them.

use std::collections::HashSet;

use aishacrm::db::accounts::AccountRow;
use aishacrm::db::activities::ActivityRow;
use aishacrm::db::contacts::ContactRow;
use aishacrm::db::leads::LeadRow;
use aishacrm::db::opportunities::OpportunityRow;
use aishacrm::db::schema::{accounts, activities, contacts, leads, opportunities};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, minimal, spawn_app, TestApp, MODULES};

/// A record's position in the contract's order.
fn key(record: &Value) -> (DateTime<Utc>, Uuid) {
    let created_at = record["created_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no created_at in {record}"))
        .parse()
        .unwrap_or_else(|_| panic!("created_at is not RFC 3339 in {record}"));
    let id = record["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {record}"))
        .parse()
        .unwrap_or_else(|_| panic!("id is not a UUID in {record}"));
    (created_at, id)
}

/// Sorts records into `created_at DESC, id DESC`.
fn newest_first(records: &mut [Value]) {
    records.sort_by_key(|record| std::cmp::Reverse(key(record)));
}

/// Appends `cursor` (URL-encoded, it is opaque) to `path`.
fn with_cursor(path: &str, cursor: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    let encoded = serde_urlencoded::to_string([("cursor", cursor)]).expect("encoding the cursor");
    format!("{path}{separator}{encoded}")
}

/// One list page: its records and its `next_cursor`.
async fn page(app: &TestApp, token: &str, path: &str) -> (Vec<Value>, Option<String>) {
    let (status, body) = app.get_json(path, token).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    let data = body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no data array in {body}"))
        .clone();
    let next = match &body["next_cursor"] {
        Value::Null => None,
        Value::String(cursor) => {
            assert!(!cursor.is_empty(), "GET {path}: empty next_cursor");
            Some(cursor.clone())
        }
        other => panic!("GET {path}: next_cursor is neither a string nor null: {other}"),
    };
    (data, next)
}

/// Follows `next_cursor` from the first page of `path` until it is null; returns every page.
async fn walk(app: &TestApp, token: &str, path: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut seen_cursors = HashSet::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            None => path.to_owned(),
            Some(cursor) => with_cursor(path, cursor),
        };
        let (data, cursor) = page(app, token, &url).await;
        pages.push(data);
        match cursor {
            None => return pages,
            Some(cursor) => {
                assert!(
                    seen_cursors.insert(cursor.clone()),
                    "walking {path}: next_cursor {cursor} came back a second time"
                );
                assert!(pages.len() < 500, "walking {path} never ends");
                next = Some(cursor);
            }
        }
    }
}

/// Walks `path` (which carries `limit`) and asserts the pages hold exactly `expected` (already
/// in the contract's order), `limit` to a page, every page but the last full, none empty
/// unless there is nothing at all.
async fn assert_walk(app: &TestApp, token: &str, path: &str, limit: usize, expected: &[Value]) {
    let pages = walk(app, token, path).await;
    let (last, full) = pages.split_last().expect("at least one page");
    for (number, data) in full.iter().enumerate() {
        assert_eq!(
            data.len(),
            limit,
            "{path}: page {number} is not full though another follows"
        );
    }
    assert!(last.len() <= limit, "{path}: last page is over the limit");
    if !expected.is_empty() {
        assert!(!last.is_empty(), "{path}: the last page is empty");
    }
    let walked: Vec<Value> = pages.into_iter().flatten().collect();
    let ids: Vec<&str> = walked
        .iter()
        .map(|record| record["id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{path}: a record came twice");
    assert_eq!(
        walked.len(),
        expected.len(),
        "{path}: walked {} records, expected {}",
        walked.len(),
        expected.len()
    );
    for (position, (got, want)) in walked.iter().zip(expected).enumerate() {
        assert_eq!(
            got, want,
            "{path}: record {position} differs or is out of order"
        );
    }
}

/// A create body for `module` whose name field carries `i`.
fn numbered(module: &str, i: usize) -> Value {
    let mut body = minimal(module);
    let field = match module {
        "accounts" | "opportunities" => "name",
        "contacts" | "leads" => "last_name",
        "activities" => "subject",
        other => panic!("unknown module {other}"),
    };
    body[field] = json!(format!("{module} number {i}"));
    body
}

/// Creates `n` records of `module` over HTTP; returns them in the contract's order.
async fn create_many(app: &TestApp, token: &str, module: &str, n: usize) -> Vec<Value> {
    let mut created = Vec::with_capacity(n);
    for i in 0..n {
        created.push(app.create(module, token, numbered(module, i)).await);
    }
    newest_first(&mut created);
    created
}

/// Inserts one row of `module` for `tenant` directly, with the given `created_at`; returns its id.
async fn insert_at(
    conn: &mut AsyncPgConnection,
    module: &str,
    tenant: Uuid,
    at: DateTime<Utc>,
) -> Uuid {
    let id = Uuid::new_v4();
    let label = format!("inserted {id}");
    let inserted = match module {
        "accounts" => {
            diesel::insert_into(accounts::table)
                .values(AccountRow {
                    id,
                    tenant_id: tenant,
                    name: label,
                    industry: None,
                    website: None,
                    phone: None,
                    annual_revenue: None,
                    employee_count: None,
                    created_at: at,
                    updated_at: at,
                })
                .execute(conn)
                .await
        }
        "contacts" => {
            diesel::insert_into(contacts::table)
                .values(ContactRow {
                    id,
                    tenant_id: tenant,
                    first_name: None,
                    last_name: label,
                    email: None,
                    phone: None,
                    title: None,
                    account_id: None,
                    status: None,
                    created_at: at,
                    updated_at: at,
                })
                .execute(conn)
                .await
        }
        "leads" => {
            diesel::insert_into(leads::table)
                .values(LeadRow {
                    id,
                    tenant_id: tenant,
                    first_name: None,
                    last_name: label,
                    email: None,
                    company: None,
                    source: None,
                    status: None,
                    score: None,
                    created_at: at,
                    updated_at: at,
                })
                .execute(conn)
                .await
        }
        "opportunities" => {
            diesel::insert_into(opportunities::table)
                .values(OpportunityRow {
                    id,
                    tenant_id: tenant,
                    name: label,
                    account_id: None,
                    contact_id: None,
                    stage: None,
                    amount: None,
                    probability: None,
                    close_date: None,
                    created_at: at,
                    updated_at: at,
                })
                .execute(conn)
                .await
        }
        "activities" => {
            diesel::insert_into(activities::table)
                .values(ActivityRow {
                    id,
                    tenant_id: tenant,
                    type_: "task",
                    subject: label,
                    body: None,
                    status: None,
                    due_at: None,
                    related_type: None,
                    related_id: None,
                    created_at: at,
                    updated_at: at,
                })
                .execute(conn)
                .await
        }
        other => panic!("unknown module {other}"),
    };
    assert_eq!(inserted.expect("inserting a row"), 1);
    id
}

/// Fetches each id over HTTP, so that the expected records are exactly what the API shows.
async fn fetch_all(app: &TestApp, token: &str, module: &str, ids: &[Uuid]) -> Vec<Value> {
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        let (status, record) = app.get_json(&format!("/api/v2/{module}/{id}"), token).await;
        assert_eq!(status, 200, "{module} {id}: {record}");
        records.push(record);
    }
    newest_first(&mut records);
    records
}

/// The microsecond-precise timestamps the database stores.
fn stamp() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[tokio::test]
async fn walking_23_accounts_five_at_a_time_returns_each_once_newest_first() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let created = create_many(&app, &token, "accounts", 23).await;

    let pages = walk(&app, &token, "/api/v2/accounts?limit=5").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![5, 5, 5, 5, 3]);
    assert_walk(&app, &token, "/api/v2/accounts?limit=5", 5, &created).await;
}

#[tokio::test]
async fn walking_23_opportunities_five_at_a_time_returns_each_once_newest_first() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let created = create_many(&app, &token, "opportunities", 23).await;

    let pages = walk(&app, &token, "/api/v2/opportunities?limit=5").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![5, 5, 5, 5, 3]);
    assert_walk(&app, &token, "/api/v2/opportunities?limit=5", 5, &created).await;

    // The newest record comes first: the last one created.
    let (first, _) = page(&app, &token, "/api/v2/opportunities?limit=1").await;
    assert_eq!(first[0]["name"], "opportunities number 22");
}

#[tokio::test]
async fn every_entity_pages_through_all_its_records() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        let created = create_many(&app, &token, module, 11).await;
        let pages = walk(&app, &token, &format!("/api/v2/{module}?limit=5")).await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![5, 5, 1], "{module}");
        assert_walk(
            &app,
            &token,
            &format!("/api/v2/{module}?limit=5"),
            5,
            &created,
        )
        .await;
        assert_walk(
            &app,
            &token,
            &format!("/api/v2/{module}?limit=1"),
            1,
            &created,
        )
        .await;
        assert_walk(
            &app,
            &token,
            &format!("/api/v2/{module}?limit=4"),
            4,
            &created,
        )
        .await;
        assert_walk(
            &app,
            &token,
            &format!("/api/v2/{module}?limit=11"),
            11,
            &created,
        )
        .await;
    }
}

#[tokio::test]
async fn a_last_page_that_is_exactly_full_has_a_null_next_cursor() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let created = create_many(&app, &token, "leads", 10).await;

    let (data, next) = page(&app, &token, "/api/v2/leads?limit=10").await;
    assert_eq!(data, created);
    assert_eq!(next, None, "nothing follows a page holding every record");

    let (data, next) = page(&app, &token, "/api/v2/leads?limit=5").await;
    assert_eq!(data, created[..5]);
    let next = next.expect("a second page follows");
    let (data, next) = page(&app, &token, &with_cursor("/api/v2/leads?limit=5", &next)).await;
    assert_eq!(data, created[5..]);
    assert_eq!(next, None);
}

#[tokio::test]
async fn an_empty_list_is_one_page_with_a_null_cursor() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        let (status, body) = app
            .get_json(&format!("/api/v2/{module}?limit=5"), &token)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"data": [], "next_cursor": null}), "{module}");
    }
}

#[tokio::test]
async fn default_limit_is_50_and_limit_200_is_accepted() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let start = stamp();
    let mut conn = app.db().await;
    let mut ids = Vec::new();
    for i in 0..57 {
        ids.push(
            insert_at(
                &mut conn,
                "leads",
                tenant,
                start - Duration::milliseconds(i),
            )
            .await,
        );
    }
    let expected = fetch_all(&app, &token, "leads", &ids).await;

    let (data, next) = page(&app, &token, "/api/v2/leads").await;
    assert_eq!(data.len(), 50, "the default limit is 50");
    assert_eq!(data, expected[..50]);
    let next = next.expect("a second page after the default 50");
    let (data, next) = page(&app, &token, &with_cursor("/api/v2/leads", &next)).await;
    assert_eq!(data, expected[50..]);
    assert_eq!(next, None);

    // limit=50 is the same as no limit.
    let (data, _) = page(&app, &token, "/api/v2/leads?limit=50").await;
    assert_eq!(data, expected[..50]);

    let (data, next) = page(&app, &token, "/api/v2/leads?limit=200").await;
    assert_eq!(data, expected);
    assert_eq!(next, None);

    let (data, next) = page(&app, &token, "/api/v2/leads?limit=56").await;
    assert_eq!(data, expected[..56]);
    assert!(next.is_some());

    assert_walk(&app, &token, "/api/v2/leads", 50, &expected).await;
    assert_walk(&app, &token, "/api/v2/leads?limit=200", 200, &expected).await;
}

#[tokio::test]
async fn limit_200_returns_up_to_200_records() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let start = stamp();
    let mut conn = app.db().await;
    let mut ids = Vec::new();
    for i in 0..203 {
        ids.push(
            insert_at(
                &mut conn,
                "accounts",
                tenant,
                start - Duration::milliseconds(i),
            )
            .await,
        );
    }
    let (data, next) = page(&app, &token, "/api/v2/accounts?limit=200").await;
    assert_eq!(data.len(), 200);
    let next = next.expect("three records remain");
    let (rest, next) = page(
        &app,
        &token,
        &with_cursor("/api/v2/accounts?limit=200", &next),
    )
    .await;
    assert_eq!(rest.len(), 3);
    assert_eq!(next, None);
    let walked: HashSet<Uuid> = data.iter().chain(&rest).map(|r| key(r).1).collect();
    assert_eq!(walked, ids.into_iter().collect::<HashSet<_>>());
}

#[tokio::test]
async fn out_of_range_limits_are_invalid_queries() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        for limit in ["0", "201", "-1", "abc", "5.5", "", "1e2"] {
            assert_error(
                app.get(&format!("/api/v2/{module}?limit={limit}"), &token)
                    .await,
                400,
                "invalid_query",
            )
            .await;
        }
        for limit in ["1", "200"] {
            let (status, body) = app
                .get_json(&format!("/api/v2/{module}?limit={limit}"), &token)
                .await;
            assert_eq!(status, 200, "{module} limit={limit}: {body}");
        }
    }
}

#[tokio::test]
async fn records_with_identical_created_at_page_by_id_descending() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let same = stamp() - Duration::minutes(10);
    let mut conn = app.db().await;
    for module in MODULES {
        let mut ids = Vec::new();
        // A group of 12 with one timestamp, between records a second newer and a second older.
        for _ in 0..3 {
            ids.push(insert_at(&mut conn, module, tenant, same + Duration::seconds(1)).await);
        }
        for _ in 0..12 {
            ids.push(insert_at(&mut conn, module, tenant, same).await);
        }
        for _ in 0..3 {
            ids.push(insert_at(&mut conn, module, tenant, same - Duration::seconds(1)).await);
        }
        let expected = fetch_all(&app, &token, module, &ids).await;
        // The expected order is fixed by the ids inside the group, not by insertion.
        let tied: Vec<Uuid> = expected
            .iter()
            .map(key)
            .filter(|(at, _)| *at == same)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(tied.len(), 12, "{module}: created_at round-trips exactly");
        assert!(tied.windows(2).all(|pair| pair[0] > pair[1]));

        for limit in [1, 2, 5, 7] {
            assert_walk(
                &app,
                &token,
                &format!("/api/v2/{module}?limit={limit}"),
                limit,
                &expected,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn many_opportunities_with_one_created_at_page_correctly() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let same = stamp();
    let mut conn = app.db().await;
    let mut ids = Vec::new();
    for _ in 0..23 {
        ids.push(insert_at(&mut conn, "opportunities", tenant, same).await);
    }
    let expected = fetch_all(&app, &token, "opportunities", &ids).await;
    let mut by_id = ids.clone();
    by_id.sort_by(|a, b| b.cmp(a));
    let order: Vec<Uuid> = expected.iter().map(|record| key(record).1).collect();
    assert_eq!(order, by_id);
    assert_walk(&app, &token, "/api/v2/opportunities?limit=5", 5, &expected).await;
    assert_walk(&app, &token, "/api/v2/opportunities?limit=3", 3, &expected).await;
}

#[tokio::test]
async fn a_tampered_cursor_is_an_invalid_query() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    create_many(&app, &token, "accounts", 4).await;
    let (_, next) = page(&app, &token, "/api/v2/accounts?limit=2").await;
    let cursor = next.expect("a next page");
    // The genuine cursor works.
    let (data, _) = page(
        &app,
        &token,
        &with_cursor("/api/v2/accounts?limit=2", &cursor),
    )
    .await;
    assert_eq!(data.len(), 2);

    let mut tampered = Vec::new();
    for position in [0, cursor.len() / 2, cursor.len() - 2] {
        let mut chars: Vec<char> = cursor.chars().collect();
        chars[position] = if chars[position] == 'A' { 'B' } else { 'A' };
        tampered.push(chars.into_iter().collect::<String>());
    }
    tampered.push(cursor[..cursor.len() - 1].to_owned());
    tampered.push(format!("{cursor}A"));
    tampered.push(format!("{cursor}AAAA"));
    tampered.push(cursor.to_uppercase());
    tampered.push(String::new());
    tampered.push("abc".into());
    tampered.push("not a cursor".into());
    tampered.push("%%%".into());
    tampered.push(Uuid::new_v4().to_string());
    for bad in tampered {
        assert_ne!(bad, cursor);
        assert_error(
            app.get(&with_cursor("/api/v2/accounts?limit=2", &bad), &token)
                .await,
            400,
            "invalid_query",
        )
        .await;
    }
}

#[tokio::test]
async fn a_cursor_of_another_tenant_is_an_invalid_query() {
    let app = spawn_app().await;
    let token_a = app.token(Uuid::new_v4());
    let token_b = app.token(Uuid::new_v4());
    for module in MODULES {
        create_many(&app, &token_a, module, 3).await;
        create_many(&app, &token_b, module, 3).await;
        let path = format!("/api/v2/{module}?limit=1");
        let (_, next) = page(&app, &token_a, &path).await;
        let cursor = next.expect("tenant A has a second page");
        let (_, own) = page(&app, &token_a, &with_cursor(&path, &cursor)).await;
        assert!(
            own.is_some(),
            "{module}: the cursor works for its own tenant"
        );
        assert_error(
            app.get(&with_cursor(&path, &cursor), &token_b).await,
            400,
            "invalid_query",
        )
        .await;
    }
}

#[tokio::test]
async fn a_cursor_of_another_entity_is_an_invalid_query() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let mut cursors = Vec::new();
    for module in MODULES {
        create_many(&app, &token, module, 2).await;
        let (_, next) = page(&app, &token, &format!("/api/v2/{module}?limit=1")).await;
        cursors.push((module, next.expect("a second page")));
    }
    for (issuer, cursor) in &cursors {
        for module in MODULES {
            let path = with_cursor(&format!("/api/v2/{module}?limit=1"), cursor);
            if module == *issuer {
                let (data, next) = page(&app, &token, &path).await;
                assert_eq!(data.len(), 1);
                assert_eq!(next, None);
            } else {
                let message =
                    assert_error(app.get(&path, &token).await, 400, "invalid_query").await;
                assert!(!message.is_empty(), "a cursor of {issuer} used on {module}");
            }
        }
    }
}

#[tokio::test]
async fn count_takes_neither_limit_nor_cursor() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    create_many(&app, &token, "contacts", 2).await;
    let (_, next) = page(&app, &token, "/api/v2/contacts?limit=1").await;
    let cursor = next.expect("a second page");
    assert_error(
        app.get("/api/v2/contacts/count?limit=1", &token).await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get(&with_cursor("/api/v2/contacts/count", &cursor), &token)
            .await,
        400,
        "invalid_query",
    )
    .await;
    let (status, count) = app.get_json("/api/v2/contacts/count", &token).await;
    assert_eq!(status, 200);
    assert_eq!(count, json!({"count": 2}));
}

#[tokio::test]
async fn filters_keep_working_across_pages() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = app
        .create("accounts", &token, json!({"name": "Anchor"}))
        .await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let stages = ["proposal", "prospecting", "negotiation"];
    let mut created = Vec::new();
    for i in 0..24 {
        let mut body = json!({
            "name": if i % 2 == 0 { format!("Even deal {i}") } else { format!("Odd deal {i}") },
            "stage": stages[i % 3],
        });
        if i % 4 == 0 {
            body["account_id"] = json!(account_id);
        }
        created.push(app.create("opportunities", &token, body).await);
    }
    newest_first(&mut created);

    let only = |keep: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        created.iter().filter(|r| keep(r)).cloned().collect()
    };
    let proposal = only(&|r| r["stage"] == "proposal");
    assert_eq!(proposal.len(), 8);
    assert_walk(
        &app,
        &token,
        "/api/v2/opportunities?stage=proposal&limit=3",
        3,
        &proposal,
    )
    .await;

    let anchored = only(&|r| r["account_id"] == json!(account_id));
    assert_eq!(anchored.len(), 6);
    assert_walk(
        &app,
        &token,
        &format!("/api/v2/opportunities?account_id={account_id}&limit=4"),
        4,
        &anchored,
    )
    .await;

    let even = only(&|r| r["name"].as_str().unwrap().starts_with("Even"));
    assert_eq!(even.len(), 12);
    assert_walk(
        &app,
        &token,
        "/api/v2/opportunities?q=EVEN&limit=5",
        5,
        &even,
    )
    .await;

    let even_proposal =
        only(&|r| r["stage"] == "proposal" && r["name"].as_str().unwrap().starts_with("Even"));
    assert_eq!(even_proposal.len(), 4);
    assert_walk(
        &app,
        &token,
        "/api/v2/opportunities?limit=1&q=even&stage=proposal",
        1,
        &even_proposal,
    )
    .await;

    // The same walk with the parameters in another order.
    assert_walk(
        &app,
        &token,
        "/api/v2/opportunities?stage=proposal&q=even&limit=1",
        1,
        &even_proposal,
    )
    .await;
}

#[tokio::test]
async fn filtered_contacts_and_activities_walk_across_pages() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let mut contacts = Vec::new();
    let mut activities = Vec::new();
    for i in 0..13 {
        let status = if i % 3 == 0 { "inactive" } else { "active" };
        contacts.push(
            app.create(
                "contacts",
                &token,
                json!({"last_name": format!("Person {i}"), "status": status}),
            )
            .await,
        );
        let kind = if i % 2 == 0 { "call" } else { "email" };
        activities.push(
            app.create(
                "activities",
                &token,
                json!({"type": kind, "subject": format!("Touch {i}")}),
            )
            .await,
        );
    }
    newest_first(&mut contacts);
    newest_first(&mut activities);

    let active: Vec<Value> = contacts
        .iter()
        .filter(|r| r["status"] == "active")
        .cloned()
        .collect();
    assert_eq!(active.len(), 8);
    assert_walk(
        &app,
        &token,
        "/api/v2/contacts?status=active&limit=3",
        3,
        &active,
    )
    .await;

    let calls: Vec<Value> = activities
        .iter()
        .filter(|r| r["type"] == "call")
        .cloned()
        .collect();
    assert_eq!(calls.len(), 7);
    assert_walk(
        &app,
        &token,
        "/api/v2/activities?type=call&limit=2",
        2,
        &calls,
    )
    .await;
}
