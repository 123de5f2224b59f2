//! Equality filters, the `q` search and the opportunity stats: lists and counts return exactly
//! the matching records.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, spawn_app, TestApp, MODULES};

/// `created_at DESC, id DESC`.
fn newest_first(records: &mut [Value]) {
    records.sort_by_key(|record| {
        let created_at: DateTime<Utc> = record["created_at"].as_str().unwrap().parse().unwrap();
        let id: Uuid = record["id"].as_str().unwrap().parse().unwrap();
        std::cmp::Reverse((created_at, id))
    });
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}

/// Lists `module` with `params` (in one page of 200) and counts it with the same parameters;
/// both must show exactly `expected`, the list in the contract's order.
async fn assert_matches(
    app: &TestApp,
    token: &str,
    module: &str,
    params: &[(&str, &str)],
    expected: &[Value],
) {
    let query = serde_urlencoded::to_string(params).expect("encoding the query");
    let (status, body) = app
        .get_json(&format!("/api/v2/{module}?{query}&limit=200"), token)
        .await;
    assert_eq!(status, 200, "{module}?{query}: {body}");
    assert_eq!(body["next_cursor"], Value::Null, "{module}?{query}");
    let data = body["data"].as_array().expect("data array");
    let mut want = expected.to_vec();
    newest_first(&mut want);
    let got_ids: Vec<String> = data.iter().map(id_of).collect();
    let want_ids: Vec<String> = want.iter().map(id_of).collect();
    assert_eq!(got_ids, want_ids, "{module}?{query}: wrong records");
    assert_eq!(
        data, &want,
        "{module}?{query}: records differ from what was written"
    );

    let path = if query.is_empty() {
        format!("/api/v2/{module}/count")
    } else {
        format!("/api/v2/{module}/count?{query}")
    };
    let (status, count) = app.get_json(&path, token).await;
    assert_eq!(status, 200, "{path}: {count}");
    assert_eq!(count, json!({"count": expected.len()}), "{path}");
}

/// The records whose JSON fields equal every `(field, value)` given as strings.
fn having(records: &[Value], params: &[(&str, &str)]) -> Vec<Value> {
    records
        .iter()
        .filter(|record| {
            params
                .iter()
                .all(|(field, value)| record[*field].as_str() == Some(*value))
        })
        .cloned()
        .collect()
}

/// Asserts each combination of `params` against the records it should select, and that the
/// selection is not trivially everything or nothing unless `size` says so.
async fn assert_filter(
    app: &TestApp,
    token: &str,
    module: &str,
    records: &[Value],
    params: &[(&str, &str)],
    size: usize,
) {
    let expected = having(records, params);
    assert_eq!(
        expected.len(),
        size,
        "test data: {module} {params:?} should select {size}"
    );
    assert_matches(app, token, module, params, &expected).await;
}

/// The columns `q` searches, as the contract lists them.
fn search_fields(module: &str) -> &'static [&'static str] {
    match module {
        "accounts" | "opportunities" => &["name"],
        "contacts" => &["first_name", "last_name", "email"],
        "leads" => &["first_name", "last_name", "email", "company"],
        "activities" => &["subject"],
        other => panic!("unknown module {other}"),
    }
}

/// The records `q` should find: a case-insensitive substring of one of the searched fields.
fn searched(module: &str, records: &[Value], q: &str) -> Vec<Value> {
    let needle = q.to_lowercase();
    records
        .iter()
        .filter(|record| {
            search_fields(module).iter().any(|field| {
                record[*field]
                    .as_str()
                    .is_some_and(|text| text.to_lowercase().contains(&needle))
            })
        })
        .cloned()
        .collect()
}

/// Asserts that `q` finds exactly the records it should, `size` of them.
async fn assert_search(
    app: &TestApp,
    token: &str,
    module: &str,
    records: &[Value],
    q: &str,
    size: usize,
) {
    let expected = searched(module, records, q);
    assert_eq!(
        expected.len(),
        size,
        "test data: {module} q={q:?} should find {size}"
    );
    assert_matches(app, token, module, &[("q", q)], &expected).await;
}

async fn create_all(app: &TestApp, token: &str, module: &str, bodies: Vec<Value>) -> Vec<Value> {
    let mut created = Vec::new();
    for body in bodies {
        created.push(app.create(module, token, body).await);
    }
    created
}

#[tokio::test]
async fn accounts_filter_by_industry() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let industries = [
        Some("tech"),
        Some("energy"),
        Some("tech"),
        None,
        Some("health & care"),
        Some("tech"),
        Some("energy"),
        None,
    ];
    let bodies = industries
        .iter()
        .enumerate()
        .map(|(i, industry)| json!({"name": format!("Account {i}"), "industry": industry}))
        .collect();
    let accounts = create_all(&app, &token, "accounts", bodies).await;

    assert_filter(
        &app,
        &token,
        "accounts",
        &accounts,
        &[("industry", "tech")],
        3,
    )
    .await;
    assert_filter(
        &app,
        &token,
        "accounts",
        &accounts,
        &[("industry", "energy")],
        2,
    )
    .await;
    let care = [("industry", "health & care")];
    assert_filter(&app, &token, "accounts", &accounts, &care, 1).await;
    assert_filter(
        &app,
        &token,
        "accounts",
        &accounts,
        &[("industry", "mining")],
        0,
    )
    .await;
    // A prefix is not equal.
    assert_filter(
        &app,
        &token,
        "accounts",
        &accounts,
        &[("industry", "tec")],
        0,
    )
    .await;
    assert_matches(&app, &token, "accounts", &[], &accounts).await;
}

#[tokio::test]
async fn contacts_filter_by_account_and_status() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let first = app
        .create("accounts", &token, json!({"name": "First"}))
        .await;
    let second = app
        .create("accounts", &token, json!({"name": "Second"}))
        .await;
    let (a1, a2) = (id_of(&first), id_of(&second));
    let rows = [
        (Some(&a1), "active"),
        (Some(&a1), "inactive"),
        (Some(&a1), "active"),
        (Some(&a2), "active"),
        (None, "inactive"),
        (None, "active"),
        (Some(&a2), "inactive"),
        (Some(&a1), "active"),
    ];
    let bodies = rows
        .iter()
        .enumerate()
        .map(|(i, (account, status))| {
            json!({"last_name": format!("Contact {i}"), "account_id": account, "status": status})
        })
        .collect();
    let contacts = create_all(&app, &token, "contacts", bodies).await;
    let m = "contacts";

    assert_filter(&app, &token, m, &contacts, &[("account_id", &a1)], 4).await;
    assert_filter(&app, &token, m, &contacts, &[("account_id", &a2)], 2).await;
    let nobody = Uuid::new_v4().to_string();
    assert_filter(&app, &token, m, &contacts, &[("account_id", &nobody)], 0).await;
    assert_filter(&app, &token, m, &contacts, &[("status", "active")], 5).await;
    assert_filter(&app, &token, m, &contacts, &[("status", "inactive")], 3).await;
    let both = [("account_id", a1.as_str()), ("status", "active")];
    assert_filter(&app, &token, m, &contacts, &both, 3).await;
    let both = [("status", "inactive"), ("account_id", a2.as_str())];
    assert_filter(&app, &token, m, &contacts, &both, 1).await;
    // An upper-case UUID names the same account.
    let upper = a1.to_uppercase();
    let expected = having(&contacts, &[("account_id", &a1)]);
    assert_matches(&app, &token, m, &[("account_id", &upper)], &expected).await;
}

#[tokio::test]
async fn leads_filter_by_status_and_source() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let statuses = ["new", "contacted", "qualified", "unqualified", "converted"];
    let sources = [Some("web"), Some("referral"), None];
    let bodies = (0..15)
        .map(|i| {
            json!({
                "last_name": format!("Lead {i}"),
                "status": statuses[i % 5],
                "source": sources[i % 3],
            })
        })
        .collect();
    let leads = create_all(&app, &token, "leads", bodies).await;
    let m = "leads";

    for status in statuses {
        assert_filter(&app, &token, m, &leads, &[("status", status)], 3).await;
    }
    assert_filter(&app, &token, m, &leads, &[("source", "web")], 5).await;
    assert_filter(&app, &token, m, &leads, &[("source", "referral")], 5).await;
    assert_filter(&app, &token, m, &leads, &[("source", "trade show")], 0).await;
    let both = [("status", "new"), ("source", "web")];
    assert_filter(&app, &token, m, &leads, &both, 1).await;
    let both = [("source", "referral"), ("status", "converted")];
    assert_filter(&app, &token, m, &leads, &both, 1).await;
    // Lead 10 is the only new one from a referral.
    let both = [("source", "referral"), ("status", "new")];
    assert_filter(&app, &token, m, &leads, &both, 1).await;
    let both = [("source", "trade show"), ("status", "new")];
    assert_filter(&app, &token, m, &leads, &both, 0).await;
}

#[tokio::test]
async fn opportunities_filter_by_stage_and_account() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let first = app
        .create("accounts", &token, json!({"name": "First"}))
        .await;
    let second = app
        .create("accounts", &token, json!({"name": "Second"}))
        .await;
    let (a1, a2) = (id_of(&first), id_of(&second));
    let stages = [
        "prospecting",
        "qualification",
        "proposal",
        "negotiation",
        "closed_won",
        "closed_lost",
    ];
    let owners = [Some(&a1), Some(&a2), None, Some(&a1)];
    let bodies = (0..12)
        .map(|i| {
            json!({
                "name": format!("Deal {i}"),
                "stage": stages[i % 6],
                "account_id": owners[i % 4],
            })
        })
        .collect();
    let deals = create_all(&app, &token, "opportunities", bodies).await;
    let m = "opportunities";

    for stage in stages {
        assert_filter(&app, &token, m, &deals, &[("stage", stage)], 2).await;
    }
    assert_filter(&app, &token, m, &deals, &[("account_id", &a1)], 6).await;
    assert_filter(&app, &token, m, &deals, &[("account_id", &a2)], 3).await;
    let nobody = Uuid::new_v4().to_string();
    assert_filter(&app, &token, m, &deals, &[("account_id", &nobody)], 0).await;
    // Deals 0 and 6 are prospecting; 0 belongs to the first account, 6 to nobody.
    let both = [("stage", "prospecting"), ("account_id", a1.as_str())];
    assert_filter(&app, &token, m, &deals, &both, 1).await;
    let both = [("account_id", a2.as_str()), ("stage", "qualification")];
    assert_filter(&app, &token, m, &deals, &both, 1).await;
    let both = [("account_id", a2.as_str()), ("stage", "prospecting")];
    assert_filter(&app, &token, m, &deals, &both, 0).await;
}

#[tokio::test]
async fn activities_filter_by_type_status_and_related_record() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = id_of(
        &app.create("accounts", &token, json!({"name": "Acme"}))
            .await,
    );
    let contact = id_of(
        &app.create("contacts", &token, json!({"last_name": "Khan"}))
            .await,
    );
    let lead = id_of(
        &app.create("leads", &token, json!({"last_name": "Ito"}))
            .await,
    );
    let deal = id_of(
        &app.create("opportunities", &token, json!({"name": "Deal"}))
            .await,
    );
    let targets = [
        Some(("account", &account)),
        Some(("contact", &contact)),
        Some(("lead", &lead)),
        Some(("opportunity", &deal)),
        None,
    ];
    let types = ["call", "email", "meeting", "task", "note"];
    let statuses = ["planned", "completed", "cancelled"];
    let bodies = (0..15)
        .map(|i| {
            let mut body = json!({
                "type": types[i % 5],
                "status": statuses[i % 3],
                "subject": format!("Activity {i}"),
            });
            // Shifted so that type and related record vary independently.
            if let Some((kind, id)) = targets[(i + i / 5) % 5] {
                body["related_type"] = json!(kind);
                body["related_id"] = json!(id);
            }
            body
        })
        .collect();
    let activities = create_all(&app, &token, "activities", bodies).await;
    let m = "activities";

    for kind in types {
        assert_filter(&app, &token, m, &activities, &[("type", kind)], 3).await;
    }
    for status in statuses {
        assert_filter(&app, &token, m, &activities, &[("status", status)], 5).await;
    }
    for (kind, id) in targets.iter().flatten() {
        assert_filter(&app, &token, m, &activities, &[("related_type", kind)], 3).await;
        assert_filter(&app, &token, m, &activities, &[("related_id", id)], 3).await;
        let both = [("related_type", *kind), ("related_id", id.as_str())];
        assert_filter(&app, &token, m, &activities, &both, 3).await;
    }
    let nobody = Uuid::new_v4().to_string();
    assert_filter(&app, &token, m, &activities, &[("related_id", &nobody)], 0).await;
    // A related id with the wrong related type matches nothing.
    let mismatched = [("related_type", "lead"), ("related_id", account.as_str())];
    assert_filter(&app, &token, m, &activities, &mismatched, 0).await;

    // Pick combinations from the data itself so each selects at least one record.
    let sample = &activities[7];
    let kind = sample["type"].as_str().unwrap();
    let status = sample["status"].as_str().unwrap();
    let combo = [("type", kind), ("status", status)];
    let size = having(&activities, &combo).len();
    assert!(size >= 1);
    assert_filter(&app, &token, m, &activities, &combo, size).await;
    let related_type = sample["related_type"].as_str().unwrap();
    let combo = [
        ("type", kind),
        ("status", status),
        ("related_type", related_type),
    ];
    let size = having(&activities, &combo).len();
    assert!(size >= 1);
    assert_filter(&app, &token, m, &activities, &combo, size).await;
    let combo = [("type", "call"), ("status", "planned")];
    let size = having(&activities, &combo).len();
    assert_filter(&app, &token, m, &activities, &combo, size).await;
}

#[tokio::test]
async fn bad_filter_values_are_invalid_queries() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let bad: [(&str, &str); 10] = [
        ("contacts", "status=archived"),
        ("contacts", "account_id=42"),
        ("leads", "status=lost"),
        ("opportunities", "stage=won"),
        ("opportunities", "account_id=not-a-uuid"),
        ("activities", "type=fax"),
        ("activities", "status=done"),
        ("activities", "related_type=invoice"),
        ("activities", "related_id=xyz"),
        ("accounts", "stage=proposal"),
    ];
    for (module, query) in bad {
        for path in [
            format!("/api/v2/{module}?{query}"),
            format!("/api/v2/{module}/count?{query}"),
        ] {
            assert_error(app.get(&path, &token).await, 400, "invalid_query").await;
        }
    }
    // A filter of one entity is unknown on another.
    for (module, query) in [
        ("accounts", "status=active"),
        ("leads", "account_id=00000000-0000-0000-0000-000000000000"),
        ("contacts", "industry=tech"),
        ("opportunities", "type=call"),
    ] {
        assert_error(
            app.get(&format!("/api/v2/{module}?{query}"), &token).await,
            400,
            "invalid_query",
        )
        .await;
    }
}

#[tokio::test]
async fn q_searches_account_names_case_insensitively_with_literal_wildcards() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let bodies = vec![
        json!({"name": "Acme Corp"}),
        json!({"name": "acme labs"}),
        json!({"name": "Globex"}),
        json!({"name": "100% Natural"}),
        json!({"name": "snake_case Ltd"}),
        json!({"name": "snakeXcase Inc"}),
        json!({"name": "Back\\slash"}),
        json!({"name": "Müller GmbH"}),
        // Only the name is searched: these other fields must not match.
        json!({"name": "Initech", "industry": "acme", "website": "https://acme.example"}),
    ];
    let accounts = create_all(&app, &token, "accounts", bodies).await;
    let m = "accounts";
    assert_search(&app, &token, m, &accounts, "acme", 2).await;
    assert_search(&app, &token, m, &accounts, "ACME", 2).await;
    assert_search(&app, &token, m, &accounts, "cMe L", 1).await;
    assert_search(&app, &token, m, &accounts, "globex", 1).await;
    assert_search(&app, &token, m, &accounts, "%", 1).await;
    assert_search(&app, &token, m, &accounts, "0% n", 1).await;
    assert_search(&app, &token, m, &accounts, "_", 1).await;
    assert_search(&app, &token, m, &accounts, "e_c", 1).await;
    assert_search(&app, &token, m, &accounts, "\\", 1).await;
    assert_search(&app, &token, m, &accounts, "MÜLLER", 1).await;
    assert_search(&app, &token, m, &accounts, "%_", 0).await;
    assert_search(&app, &token, m, &accounts, "zzz", 0).await;
    assert_search(&app, &token, m, &accounts, "Acme Corp Extra", 0).await;
    // An empty q is no search at all.
    assert_matches(&app, &token, m, &[("q", "")], &accounts).await;
}

#[tokio::test]
async fn q_searches_every_contact_name_field() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let bodies = vec![
        json!({"first_name": "Alpha", "last_name": "One"}),
        json!({"last_name": "Bravo"}),
        json!({"first_name": "Zed", "last_name": "Three", "email": "charlie@example.com"}),
        json!({"first_name": "Dana", "last_name": "Percent%", "email": "d_a@x.io"}),
        json!({"first_name": "Eve", "last_name": "Four", "email": "dxa@x.io"}),
        // Title and phone are not searched.
        json!({"last_name": "Quiet", "title": "alpha bravo", "phone": "charlie"}),
    ];
    let contacts = create_all(&app, &token, "contacts", bodies).await;
    let m = "contacts";
    assert_search(&app, &token, m, &contacts, "alpha", 1).await;
    assert_search(&app, &token, m, &contacts, "ALPH", 1).await;
    assert_search(&app, &token, m, &contacts, "bravo", 1).await;
    assert_search(&app, &token, m, &contacts, "bRaVo", 1).await;
    assert_search(&app, &token, m, &contacts, "charlie", 1).await;
    assert_search(&app, &token, m, &contacts, "EXAMPLE.COM", 1).await;
    assert_search(&app, &token, m, &contacts, "x.io", 2).await;
    assert_search(&app, &token, m, &contacts, "%", 1).await;
    assert_search(&app, &token, m, &contacts, "_", 1).await;
    assert_search(&app, &token, m, &contacts, "d_a", 1).await;
    assert_search(&app, &token, m, &contacts, "e", 5).await;
    assert_search(&app, &token, m, &contacts, "nomatch", 0).await;
    assert_matches(&app, &token, m, &[("q", "")], &contacts).await;
}

#[tokio::test]
async fn q_searches_every_lead_name_field_and_company() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let bodies = vec![
        json!({"first_name": "Alpha", "last_name": "One"}),
        json!({"last_name": "Bravo"}),
        json!({"last_name": "Three", "email": "charlie@example.com"}),
        json!({"last_name": "Four", "company": "Delta Industries"}),
        json!({"last_name": "Five", "company": "Echo_Works", "email": "e@x.io"}),
        json!({"last_name": "Six", "company": "EchoXWorks 100%"}),
        // Source is not searched.
        json!({"last_name": "Quiet", "source": "delta alpha"}),
    ];
    let leads = create_all(&app, &token, "leads", bodies).await;
    let m = "leads";
    assert_search(&app, &token, m, &leads, "alpha", 1).await;
    assert_search(&app, &token, m, &leads, "BRAVO", 1).await;
    assert_search(&app, &token, m, &leads, "Charlie@", 1).await;
    assert_search(&app, &token, m, &leads, "delta", 1).await;
    assert_search(&app, &token, m, &leads, "DELTA IND", 1).await;
    assert_search(&app, &token, m, &leads, "echo", 2).await;
    assert_search(&app, &token, m, &leads, "o_w", 1).await;
    assert_search(&app, &token, m, &leads, "_", 1).await;
    assert_search(&app, &token, m, &leads, "%", 1).await;
    assert_search(&app, &token, m, &leads, "nomatch", 0).await;
    assert_matches(&app, &token, m, &[("q", "")], &leads).await;

    // q combines with the equality filters.
    let contacted = app
        .create(
            m,
            &token,
            json!({"last_name": "Echo", "status": "contacted", "source": "web"}),
        )
        .await;
    let echo_new = searched(m, &leads, "echo");
    assert_eq!(echo_new.len(), 2);
    assert_matches(
        &app,
        &token,
        m,
        &[("q", "echo"), ("status", "contacted")],
        std::slice::from_ref(&contacted),
    )
    .await;
    assert_matches(
        &app,
        &token,
        m,
        &[("q", "echo"), ("status", "new")],
        &echo_new,
    )
    .await;
    assert_matches(
        &app,
        &token,
        m,
        &[("q", "ECHO"), ("source", "web"), ("status", "contacted")],
        std::slice::from_ref(&contacted),
    )
    .await;
}

#[tokio::test]
async fn q_searches_opportunity_names_and_combines_with_filters() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = id_of(
        &app.create("accounts", &token, json!({"name": "Renewal Inc"}))
            .await,
    );
    let bodies = vec![
        json!({"name": "Big Renewal", "stage": "proposal", "account_id": account}),
        json!({"name": "small renewal", "stage": "prospecting"}),
        json!({"name": "Upsell 50%", "stage": "proposal"}),
        json!({"name": "cross_sell", "stage": "negotiation", "account_id": account}),
        json!({"name": "crossXsell", "stage": "negotiation"}),
    ];
    let deals = create_all(&app, &token, "opportunities", bodies).await;
    let m = "opportunities";
    assert_search(&app, &token, m, &deals, "renewal", 2).await;
    assert_search(&app, &token, m, &deals, "RENEWAL", 2).await;
    assert_search(&app, &token, m, &deals, "%", 1).await;
    assert_search(&app, &token, m, &deals, "s_s", 1).await;
    assert_search(&app, &token, m, &deals, "_", 1).await;
    assert_search(&app, &token, m, &deals, "inc", 0).await;
    assert_matches(&app, &token, m, &[("q", "")], &deals).await;

    let big = having(&deals, &[("name", "Big Renewal")]);
    assert_matches(
        &app,
        &token,
        m,
        &[("q", "renewal"), ("stage", "proposal")],
        &big,
    )
    .await;
    assert_matches(
        &app,
        &token,
        m,
        &[("q", "renewal"), ("account_id", &account)],
        &big,
    )
    .await;
    let cross = having(&deals, &[("name", "cross_sell")]);
    let params = [
        ("q", "CROSS"),
        ("stage", "negotiation"),
        ("account_id", &account),
    ];
    assert_matches(&app, &token, m, &params, &cross).await;
    assert_matches(
        &app,
        &token,
        m,
        &[("q", "renewal"), ("stage", "closed_won")],
        &[],
    )
    .await;
}

#[tokio::test]
async fn q_searches_activity_subjects_only() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let bodies = vec![
        json!({"type": "call", "subject": "Intro call"}),
        json!({"type": "meeting", "subject": "INTRO meeting"}),
        json!({"type": "note", "subject": "Follow-up 100%"}),
        json!({"type": "task", "subject": "send_docs"}),
        json!({"type": "task", "subject": "sendXdocs"}),
        // The body is not searched.
        json!({"type": "email", "subject": "Quiet", "body": "intro send_docs 100%"}),
    ];
    let activities = create_all(&app, &token, "activities", bodies).await;
    let m = "activities";
    assert_search(&app, &token, m, &activities, "intro", 2).await;
    assert_search(&app, &token, m, &activities, "InTrO M", 1).await;
    assert_search(&app, &token, m, &activities, "%", 1).await;
    assert_search(&app, &token, m, &activities, "d_d", 1).await;
    assert_search(&app, &token, m, &activities, "_", 1).await;
    assert_search(&app, &token, m, &activities, "quiet", 1).await;
    assert_search(&app, &token, m, &activities, "nothing", 0).await;
    assert_matches(&app, &token, m, &[("q", "")], &activities).await;
    let calls = having(&activities, &[("subject", "Intro call")]);
    assert_matches(&app, &token, m, &[("q", "intro"), ("type", "call")], &calls).await;
}

#[tokio::test]
async fn a_percent_q_matches_only_records_containing_a_percent_in_every_entity() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for module in MODULES {
        let (field, plain, percent, underscore) = match module {
            "accounts" | "opportunities" => ("name", "Plain", "Half 50% off", "a_b"),
            "contacts" | "leads" => ("last_name", "Plain", "Fifty%", "o_b"),
            _ => ("subject", "Plain", "Done 100%", "x_y"),
        };
        let mut records = Vec::new();
        for text in [plain, percent, underscore, "axb"] {
            let mut body = match module {
                "activities" => json!({"type": "call"}),
                _ => json!({}),
            };
            body[field] = json!(text);
            records.push(app.create(module, &token, body).await);
        }
        let only = |text: &str| having(&records, &[(field, text)]);
        assert_matches(&app, &token, module, &[("q", "%")], &only(percent)).await;
        assert_matches(&app, &token, module, &[("q", "_")], &only(underscore)).await;
        assert_matches(&app, &token, module, &[("q", "%%")], &[]).await;
        assert_matches(&app, &token, module, &[("q", "")], &records).await;
        let path = format!("/api/v2/{module}/count?q=");
        let (status, count) = app.get_json(&path, &token).await;
        assert_eq!((status, count), (200, json!({"count": 4})), "{path}");
    }
}

/// The stats answer `stages` as (stage, count, amount) in the contract's order, then the total.
fn stats_body(stages: [(i64, f64); 6]) -> Value {
    let names = [
        "prospecting",
        "qualification",
        "proposal",
        "negotiation",
        "closed_won",
        "closed_lost",
    ];
    let count: i64 = stages.iter().map(|(count, _)| count).sum();
    let amount: f64 = stages.iter().map(|(_, amount)| amount).sum();
    json!({
        "stages": names
            .iter()
            .zip(stages)
            .map(|(stage, (count, amount))| json!({"stage": stage, "count": count, "amount": amount}))
            .collect::<Vec<_>>(),
        "total": {"count": count, "amount": amount},
    })
}

#[tokio::test]
async fn opportunity_stats_with_account_id_count_only_that_account() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let first = id_of(
        &app.create("accounts", &token, json!({"name": "First"}))
            .await,
    );
    let second = id_of(
        &app.create("accounts", &token, json!({"name": "Second"}))
            .await,
    );
    let empty = id_of(
        &app.create("accounts", &token, json!({"name": "Empty"}))
            .await,
    );
    let deals = [
        (Some(&first), "proposal", 100.5),
        (Some(&first), "proposal", 200.25),
        (Some(&first), "closed_won", 1000.0),
        (Some(&second), "proposal", 7.0),
        (Some(&second), "prospecting", 3.0),
        (None, "closed_lost", 50.0),
        (None, "proposal", 1.0),
    ];
    for (i, (account, stage, amount)) in deals.iter().enumerate() {
        app.create(
            "opportunities",
            &token,
            json!({"name": format!("Deal {i}"), "account_id": account, "stage": stage, "amount": amount}),
        )
        .await;
    }

    let stats = |query: String| {
        let app = &app;
        let token = &token;
        async move {
            let path = format!("/api/v2/opportunities/stats{query}");
            let (status, body) = app.get_json(&path, token).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    let zero = (0, 0.0);
    assert_eq!(
        stats(format!("?account_id={first}")).await,
        stats_body([zero, zero, (2, 300.75), zero, (1, 1000.0), zero])
    );
    assert_eq!(
        stats(format!("?account_id={second}")).await,
        stats_body([(1, 3.0), zero, (1, 7.0), zero, zero, zero])
    );
    assert_eq!(
        stats(format!("?account_id={empty}")).await,
        stats_body([zero; 6])
    );
    let nobody = Uuid::new_v4();
    assert_eq!(
        stats(format!("?account_id={nobody}")).await,
        stats_body([zero; 6])
    );
    assert_eq!(
        stats(String::new()).await,
        stats_body([(1, 3.0), zero, (4, 308.75), zero, (1, 1000.0), (1, 50.0)])
    );

    // The stats of an account agree with the list and count filtered by it.
    let (_, count) = app
        .get_json(
            &format!("/api/v2/opportunities/count?account_id={first}"),
            &token,
        )
        .await;
    assert_eq!(count, json!({"count": 3}));

    assert_error(
        app.get("/api/v2/opportunities/stats?account_id=nope", &token)
            .await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/api/v2/opportunities/stats?stage=proposal", &token)
            .await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn filters_never_leak_other_records() {
    // Every filter of every entity on a tenant with records only outside the filter.
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = id_of(
        &app.create("accounts", &token, json!({"name": "A", "industry": "x"}))
            .await,
    );
    app.create(
        "contacts",
        &token,
        json!({"last_name": "C", "status": "inactive"}),
    )
    .await;
    app.create("leads", &token, json!({"last_name": "L", "source": "web"}))
        .await;
    app.create(
        "opportunities",
        &token,
        json!({"name": "O", "stage": "closed_lost"}),
    )
    .await;
    app.create(
        "activities",
        &token,
        json!({"type": "note", "subject": "S", "status": "cancelled",
               "related_type": "account", "related_id": account}),
    )
    .await;
    let other = Uuid::new_v4().to_string();
    let misses: [(&str, &str, &str); 11] = [
        ("accounts", "industry", "y"),
        ("contacts", "account_id", &account),
        ("contacts", "status", "active"),
        ("leads", "status", "converted"),
        ("leads", "source", "email"),
        ("opportunities", "stage", "closed_won"),
        ("opportunities", "account_id", &account),
        ("activities", "type", "call"),
        ("activities", "status", "planned"),
        ("activities", "related_type", "contact"),
        ("activities", "related_id", &other),
    ];
    let mut modules = HashSet::new();
    for (module, filter, value) in misses {
        modules.insert(module);
        assert_matches(&app, &token, module, &[(filter, value)], &[]).await;
    }
    assert_eq!(modules.len(), 5);
}
