//! References between records: deletes set dangling references to null, references can be
//! cleared by an update, and a reference must name a record of the caller's own tenant.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, into_json, spawn_app, TestApp};

fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}

/// The record as the API shows it now.
async fn fetch(app: &TestApp, token: &str, module: &str, id: &str) -> Value {
    let (status, record) = app.get_json(&format!("/api/v2/{module}/{id}"), token).await;
    assert_eq!(status, 200, "{module} {id}: {record}");
    record
}

async fn delete(app: &TestApp, token: &str, module: &str, id: &str) {
    let response = app.delete(&format!("/api/v2/{module}/{id}"), token).await;
    assert_eq!(response.status().as_u16(), 204, "deleting {module} {id}");
}

async fn count(app: &TestApp, token: &str, path: &str) -> i64 {
    let (status, body) = app.get_json(path, token).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("{path}: {body}"))
}

/// Asserts that `after` equals `before` but for `changed` fields set as given (`updated_at`
/// may move, nothing else may).
fn assert_only_changed(before: &Value, after: &Value, changed: &[(&str, Value)]) {
    let mut expected = before.clone();
    for (field, value) in changed {
        expected[*field] = value.clone();
    }
    expected["updated_at"] = after["updated_at"].clone();
    assert_eq!(after, &expected);
}

#[tokio::test]
async fn deleting_an_account_clears_it_on_its_contacts_and_opportunities_only() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let doomed = id_of(
        &app.create("accounts", &token, json!({"name": "Doomed"}))
            .await,
    );
    let kept = id_of(
        &app.create("accounts", &token, json!({"name": "Kept"}))
            .await,
    );

    let mut contacts = Vec::new();
    for (i, account) in [Some(&doomed), Some(&doomed), Some(&kept), None]
        .iter()
        .enumerate()
    {
        contacts.push(
            app.create(
                "contacts",
                &token,
                json!({"last_name": format!("Contact {i}"), "account_id": account}),
            )
            .await,
        );
    }
    let contact = id_of(&contacts[0]);
    let mut deals = Vec::new();
    for (i, (account, contact)) in [
        (Some(&doomed), Some(&contact)),
        (Some(&doomed), None),
        (Some(&kept), Some(&contact)),
        (None, None),
    ]
    .iter()
    .enumerate()
    {
        deals.push(
            app.create(
                "opportunities",
                &token,
                json!({"name": format!("Deal {i}"), "account_id": account,
                       "contact_id": contact, "amount": 10}),
            )
            .await,
        );
    }
    assert_eq!(
        count(
            &app,
            &token,
            &format!("/api/v2/contacts/count?account_id={doomed}")
        )
        .await,
        2
    );

    delete(&app, &token, "accounts", &doomed).await;
    assert_error(
        app.get(&format!("/api/v2/accounts/{doomed}"), &token).await,
        404,
        "not_found",
    )
    .await;

    // Contacts and opportunities survive; only the reference to the deleted account is gone.
    for (i, before) in contacts.iter().enumerate() {
        let after = fetch(&app, &token, "contacts", &id_of(before)).await;
        if i < 2 {
            assert_eq!(after["account_id"], Value::Null, "contact {i}");
            let mut expected = before.clone();
            expected["account_id"] = Value::Null;
            expected["updated_at"] = after["updated_at"].clone();
            assert_eq!(after, expected, "contact {i}: nothing else changes");
        } else {
            assert_eq!(after, *before, "contact {i} is untouched");
        }
    }
    for (i, before) in deals.iter().enumerate() {
        let after = fetch(&app, &token, "opportunities", &id_of(before)).await;
        if i < 2 {
            assert_eq!(after["account_id"], Value::Null, "deal {i}");
            assert_eq!(after["contact_id"], before["contact_id"], "deal {i}");
            let mut expected = before.clone();
            expected["account_id"] = Value::Null;
            expected["updated_at"] = after["updated_at"].clone();
            assert_eq!(after, expected, "deal {i}: nothing else changes");
        } else {
            assert_eq!(after, *before, "deal {i} is untouched");
        }
    }
    assert_eq!(count(&app, &token, "/api/v2/contacts/count").await, 4);
    assert_eq!(count(&app, &token, "/api/v2/opportunities/count").await, 4);
    for path in [
        format!("/api/v2/contacts/count?account_id={doomed}"),
        format!("/api/v2/opportunities/count?account_id={doomed}"),
    ] {
        assert_eq!(count(&app, &token, &path).await, 0, "{path}");
    }
    assert_eq!(
        count(
            &app,
            &token,
            &format!("/api/v2/contacts/count?account_id={kept}")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            &token,
            &format!("/api/v2/opportunities/count?account_id={kept}")
        )
        .await,
        1
    );
    let (_, listed) = app
        .get_json(
            &format!("/api/v2/opportunities?account_id={doomed}"),
            &token,
        )
        .await;
    assert_eq!(listed["data"], json!([]));
    let (_, stats) = app
        .get_json(
            &format!("/api/v2/opportunities/stats?account_id={doomed}"),
            &token,
        )
        .await;
    assert_eq!(stats["total"], json!({"count": 0, "amount": 0.0}));

    // A reference to the deleted account is now invalid.
    assert_error(
        app.post(
            "/api/v2/contacts",
            &token,
            &json!({"last_name": "Late", "account_id": doomed}),
        )
        .await,
        422,
        "invalid_reference",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_contact_clears_it_on_its_opportunities_only() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = id_of(
        &app.create("accounts", &token, json!({"name": "Acme"}))
            .await,
    );
    let doomed = id_of(
        &app.create(
            "contacts",
            &token,
            json!({"last_name": "Doomed", "account_id": account}),
        )
        .await,
    );
    let kept = id_of(
        &app.create("contacts", &token, json!({"last_name": "Kept"}))
            .await,
    );
    let mut deals = Vec::new();
    for (i, contact) in [Some(&doomed), Some(&doomed), Some(&kept), None]
        .iter()
        .enumerate()
    {
        deals.push(
            app.create(
                "opportunities",
                &token,
                json!({"name": format!("Deal {i}"), "contact_id": contact, "account_id": account}),
            )
            .await,
        );
    }

    delete(&app, &token, "contacts", &doomed).await;
    for (i, before) in deals.iter().enumerate() {
        let after = fetch(&app, &token, "opportunities", &id_of(before)).await;
        if i < 2 {
            assert_eq!(after["contact_id"], Value::Null, "deal {i}");
            assert_eq!(
                after["account_id"],
                json!(account),
                "deal {i} keeps its account"
            );
            let mut expected = before.clone();
            expected["contact_id"] = Value::Null;
            expected["updated_at"] = after["updated_at"].clone();
            assert_eq!(after, expected, "deal {i}: nothing else changes");
        } else {
            assert_eq!(after, *before, "deal {i} is untouched");
        }
    }
    // The account and the other contact are untouched.
    assert_eq!(count(&app, &token, "/api/v2/accounts/count").await, 1);
    assert_eq!(count(&app, &token, "/api/v2/contacts/count").await, 1);
    assert_eq!(count(&app, &token, "/api/v2/opportunities/count").await, 4);
    assert_error(
        app.post(
            "/api/v2/opportunities",
            &token,
            &json!({"name": "Late", "contact_id": doomed}),
        )
        .await,
        422,
        "invalid_reference",
    )
    .await;
}

#[tokio::test]
async fn updates_set_and_clear_references() {
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
    let person = id_of(
        &app.create("contacts", &token, json!({"last_name": "Person"}))
            .await,
    );

    // A contact moves between accounts and to none, with PATCH and PUT.
    let contact = app
        .create(
            "contacts",
            &token,
            json!({"last_name": "Mover", "account_id": first, "email": "m@x.io"}),
        )
        .await;
    let path = format!("/api/v2/contacts/{}", id_of(&contact));
    let (status, cleared) =
        into_json(app.patch(&path, &token, &json!({"account_id": null})).await).await;
    assert_eq!(status, 200, "{cleared}");
    assert_only_changed(&contact, &cleared, &[("account_id", Value::Null)]);
    assert_eq!(
        fetch(&app, &token, "contacts", &id_of(&contact)).await,
        cleared
    );
    let (status, moved) =
        into_json(app.put(&path, &token, &json!({"account_id": second})).await).await;
    assert_eq!(status, 200, "{moved}");
    assert_only_changed(&contact, &moved, &[("account_id", json!(second))]);
    let (status, same) =
        into_json(app.patch(&path, &token, &json!({"email": "n@x.io"})).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        same["account_id"],
        json!(second),
        "an update leaves other references"
    );
    let (status, cleared) =
        into_json(app.put(&path, &token, &json!({"account_id": null})).await).await;
    assert_eq!(status, 200);
    assert_eq!(cleared["account_id"], Value::Null);

    // An opportunity clears both references at once, then one at a time.
    let deal = app
        .create(
            "opportunities",
            &token,
            json!({"name": "Deal", "account_id": first, "contact_id": person}),
        )
        .await;
    let path = format!("/api/v2/opportunities/{}", id_of(&deal));
    let (status, cleared) = into_json(
        app.patch(
            &path,
            &token,
            &json!({"account_id": null, "contact_id": null}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_only_changed(
        &deal,
        &cleared,
        &[("account_id", Value::Null), ("contact_id", Value::Null)],
    );
    let (status, set) = into_json(
        app.put(
            &path,
            &token,
            &json!({"account_id": second, "contact_id": person}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        (&set["account_id"], &set["contact_id"]),
        (&json!(second), &json!(person))
    );
    let (status, half) =
        into_json(app.put(&path, &token, &json!({"contact_id": null})).await).await;
    assert_eq!(status, 200);
    assert_eq!(half["contact_id"], Value::Null);
    assert_eq!(half["account_id"], json!(second));
    assert_eq!(
        fetch(&app, &token, "opportunities", &id_of(&deal)).await,
        half
    );
    assert_eq!(
        count(
            &app,
            &token,
            &format!("/api/v2/opportunities/count?account_id={second}")
        )
        .await,
        1
    );

    // An activity clears its related pair with both fields null.
    let activity = app
        .create(
            "activities",
            &token,
            json!({"type": "call", "subject": "Ring", "related_type": "account", "related_id": first}),
        )
        .await;
    let path = format!("/api/v2/activities/{}", id_of(&activity));
    let (status, cleared) = into_json(
        app.patch(
            &path,
            &token,
            &json!({"related_type": null, "related_id": null}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_only_changed(
        &activity,
        &cleared,
        &[("related_type", Value::Null), ("related_id", Value::Null)],
    );
    assert_eq!(
        fetch(&app, &token, "activities", &id_of(&activity)).await,
        cleared
    );
}

#[tokio::test]
async fn references_to_another_tenants_records_are_invalid() {
    let app = spawn_app().await;
    let ours = app.token(Uuid::new_v4());
    let theirs = app.token(Uuid::new_v4());
    let their_account = id_of(
        &app.create("accounts", &theirs, json!({"name": "Theirs"}))
            .await,
    );
    let their_contact = id_of(
        &app.create("contacts", &theirs, json!({"last_name": "Theirs"}))
            .await,
    );
    let their_lead = id_of(
        &app.create("leads", &theirs, json!({"last_name": "Theirs"}))
            .await,
    );
    let their_deal = id_of(
        &app.create("opportunities", &theirs, json!({"name": "Theirs"}))
            .await,
    );
    let missing = Uuid::new_v4().to_string();

    // Creates naming their records, or no record at all.
    for target in [&their_account, &missing] {
        let bodies = [
            ("contacts", json!({"last_name": "X", "account_id": target})),
            ("opportunities", json!({"name": "X", "account_id": target})),
        ];
        for (module, body) in bodies {
            assert_error(
                app.post(&format!("/api/v2/{module}"), &ours, &body).await,
                422,
                "invalid_reference",
            )
            .await;
        }
    }
    for target in [&their_contact, &missing] {
        assert_error(
            app.post(
                "/api/v2/opportunities",
                &ours,
                &json!({"name": "X", "contact_id": target}),
            )
            .await,
            422,
            "invalid_reference",
        )
        .await;
    }
    let related = [
        ("account", &their_account),
        ("contact", &their_contact),
        ("lead", &their_lead),
        ("opportunity", &their_deal),
        ("lead", &missing),
    ];
    for (kind, target) in related {
        assert_error(
            app.post(
                "/api/v2/activities",
                &ours,
                &json!({"type": "call", "subject": "X", "related_type": kind, "related_id": target}),
            )
            .await,
            422,
            "invalid_reference",
        )
        .await;
    }
    for module in ["contacts", "opportunities", "activities"] {
        assert_eq!(
            count(&app, &ours, &format!("/api/v2/{module}/count")).await,
            0,
            "{module}: a refused create writes nothing"
        );
    }

    // Updates naming their records leave our records as they were.
    let our_account = id_of(&app.create("accounts", &ours, json!({"name": "Ours"})).await);
    let our_contact = app
        .create(
            "contacts",
            &ours,
            json!({"last_name": "Ours", "account_id": our_account}),
        )
        .await;
    let our_deal = app
        .create(
            "opportunities",
            &ours,
            json!({"name": "Ours", "account_id": our_account, "contact_id": id_of(&our_contact)}),
        )
        .await;
    let our_activity = app
        .create(
            "activities",
            &ours,
            json!({"type": "task", "subject": "Ours", "related_type": "account",
                   "related_id": our_account}),
        )
        .await;
    let updates = [
        (
            "contacts",
            &our_contact,
            json!({"account_id": their_account}),
        ),
        (
            "opportunities",
            &our_deal,
            json!({"account_id": their_account}),
        ),
        (
            "opportunities",
            &our_deal,
            json!({"contact_id": their_contact}),
        ),
        (
            "opportunities",
            &our_deal,
            json!({"name": "Renamed", "contact_id": missing}),
        ),
        (
            "activities",
            &our_activity,
            json!({"related_type": "lead", "related_id": their_lead}),
        ),
        (
            "activities",
            &our_activity,
            json!({"related_type": "opportunity", "related_id": their_deal}),
        ),
    ];
    for (module, record, body) in updates {
        let path = format!("/api/v2/{module}/{}", id_of(record));
        assert_error(
            app.patch(&path, &ours, &body).await,
            422,
            "invalid_reference",
        )
        .await;
        assert_error(app.put(&path, &ours, &body).await, 422, "invalid_reference").await;
        assert_eq!(
            &fetch(&app, &ours, module, &id_of(record)).await,
            record,
            "{module}: a refused update changes nothing"
        );
    }

    // Their records are untouched, and references within their own tenant still work.
    let (status, _) = into_json(
        app.post(
            "/api/v2/contacts",
            &theirs,
            &json!({"last_name": "Y", "account_id": their_account}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn an_activity_relates_to_each_kind_of_record() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let targets = [
        (
            "account",
            "accounts",
            id_of(&app.create("accounts", &token, json!({"name": "A"})).await),
        ),
        (
            "contact",
            "contacts",
            id_of(
                &app.create("contacts", &token, json!({"last_name": "C"}))
                    .await,
            ),
        ),
        (
            "lead",
            "leads",
            id_of(&app.create("leads", &token, json!({"last_name": "L"})).await),
        ),
        (
            "opportunity",
            "opportunities",
            id_of(
                &app.create("opportunities", &token, json!({"name": "O"}))
                    .await,
            ),
        ),
    ];

    let mut created = Vec::new();
    for (kind, _, id) in &targets {
        let activity = app
            .create(
                "activities",
                &token,
                json!({"type": "meeting", "subject": format!("About the {kind}"),
                       "related_type": kind, "related_id": id}),
            )
            .await;
        assert_eq!(activity["related_type"], json!(kind));
        assert_eq!(activity["related_id"], json!(id));
        assert_eq!(
            fetch(&app, &token, "activities", &id_of(&activity)).await,
            activity
        );
        let (_, listed) = app
            .get_json(
                &format!("/api/v2/activities?related_type={kind}&related_id={id}"),
                &token,
            )
            .await;
        assert_eq!(listed["data"], json!([activity]));
        created.push(activity);
    }

    // A related id of one kind is not a record of another kind.
    for (kind, _, _) in &targets {
        for (other_kind, _, other_id) in &targets {
            if kind == other_kind {
                continue;
            }
            assert_error(
                app.post(
                    "/api/v2/activities",
                    &token,
                    &json!({"type": "note", "subject": "Wrong", "related_type": kind,
                           "related_id": other_id}),
                )
                .await,
                422,
                "invalid_reference",
            )
            .await;
        }
    }

    // An activity is re-pointed from each kind to the next.
    let activity = &created[0];
    let path = format!("/api/v2/activities/{}", id_of(activity));
    for (kind, _, id) in targets.iter().rev() {
        let (status, updated) = into_json(
            app.patch(
                &path,
                &token,
                &json!({"related_type": kind, "related_id": id}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{updated}");
        assert_only_changed(
            activity,
            &updated,
            &[("related_type", json!(kind)), ("related_id", json!(id))],
        );
    }

    // The pair is given together or not at all.
    let (_, _, account) = &targets[0];
    for body in [
        json!({"type": "call", "subject": "Half", "related_type": "account"}),
        json!({"type": "call", "subject": "Half", "related_id": account}),
        json!({"type": "call", "subject": "Half", "related_type": "account", "related_id": null}),
        json!({"type": "call", "subject": "Half", "related_type": null, "related_id": account}),
    ] {
        assert_error(
            app.post("/api/v2/activities", &token, &body).await,
            400,
            "validation_failed",
        )
        .await;
    }
    for body in [
        json!({"related_type": "contact"}),
        json!({"related_id": account}),
        json!({"related_type": null}),
    ] {
        assert_error(
            app.patch(&path, &token, &body).await,
            400,
            "validation_failed",
        )
        .await;
    }
    let (_, activities) = app.get_json("/api/v2/activities/count", &token).await;
    assert_eq!(activities, json!({"count": 4}));

    // Without a related record at all is fine.
    let plain = app
        .create(
            "activities",
            &token,
            json!({"type": "call", "subject": "Plain"}),
        )
        .await;
    assert_eq!(plain["related_type"], Value::Null);
    assert_eq!(plain["related_id"], Value::Null);
}
