//! Concurrent writers of every kind in one tenant: the aggregates the triggers keep still equal
//! the rows, and no writer deadlocks or queues into an error on them.

use std::sync::Mutex;

use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

use aishacrm::db::aggregates;

use crate::helpers::{spawn_app_with, TestApp};

const WRITERS: usize = 8;
const WRITES_EACH: usize = 60;
const STAGES: &[&str] = &["prospecting", "qualification", "proposal", "closed_won"];

#[derive(Default)]
struct Known {
    accounts: Vec<String>,
    contacts: Vec<String>,
    opportunities: Vec<String>,
}

impl Known {
    fn of(&mut self, module: &str) -> &mut Vec<String> {
        match module {
            "accounts" => &mut self.accounts,
            "contacts" => &mut self.contacts,
            _ => &mut self.opportunities,
        }
    }
}

fn pick(ids: &[String], rng: &mut StdRng) -> Option<String> {
    ids.choose(rng).cloned()
}

/// One random write; returns its status. Some are meant to fail inside their transaction: an
/// opportunity for an account that does not exist (or was just deleted) is refused by its
/// foreign key after the statement's triggers ran, so their deltas must roll back with it.
async fn one_write(app: &TestApp, token: &str, known: &Mutex<Known>, rng: &mut StdRng) -> u16 {
    let choice = rng.gen_range(0..10);
    let (account, contact, deal) = {
        let known = known.lock().unwrap();
        (
            pick(&known.accounts, rng),
            pick(&known.contacts, rng),
            pick(&known.opportunities, rng),
        )
    };
    let stage = *STAGES.choose(rng).unwrap();
    let amount = f64::from(rng.gen_range(0..100_000)) / 100.0;
    // The module and id a write names, forgotten once the record is gone.
    let mut names: Option<(&str, String)> = None;
    let (response, record_of) = match (choice, account, contact, deal) {
        (0, ..) => (
            app.post("/api/v2/accounts", token, &json!({"name": "A"}))
                .await,
            Some("accounts"),
        ),
        (1, account, ..) => (
            app.post(
                "/api/v2/contacts",
                token,
                &json!({"last_name": "C", "account_id": account}),
            )
            .await,
            Some("contacts"),
        ),
        (2, ..) => (
            app.post("/api/v2/leads", token, &json!({"last_name": "L"}))
                .await,
            None,
        ),
        (3 | 4, account, contact, _) => (
            app.post(
                "/api/v2/opportunities",
                token,
                &json!({"name": "O", "stage": stage, "amount": amount,
                        "account_id": account, "contact_id": contact}),
            )
            .await,
            Some("opportunities"),
        ),
        (5, _, _, Some(deal)) => {
            let path = format!("/api/v2/opportunities/{deal}");
            names = Some(("opportunities", deal));
            let changes = json!({"stage": stage, "amount": amount});
            (app.patch(&path, token, &changes).await, None)
        }
        (6, _, _, Some(deal)) => {
            let path = format!("/api/v2/opportunities/{deal}");
            names = Some(("opportunities", deal));
            (app.delete(&path, token).await, None)
        }
        (7, Some(account), ..) => {
            let path = format!("/api/v2/accounts/{account}");
            names = Some(("accounts", account));
            (app.delete(&path, token).await, None)
        }
        (8, _, Some(contact), _) => {
            let path = format!("/api/v2/contacts/{contact}");
            names = Some(("contacts", contact));
            (app.delete(&path, token).await, None)
        }
        _ => (
            app.post(
                "/api/v2/opportunities",
                token,
                &json!({"name": "Fails", "stage": stage, "amount": amount,
                        "account_id": Uuid::new_v4()}),
            )
            .await,
            None,
        ),
    };
    let status = response.status().as_u16();
    let deleted = (6..=8).contains(&choice) && status == 204;
    if let Some((module, id)) = names.filter(|_| deleted || status == 404) {
        known
            .lock()
            .unwrap()
            .of(module)
            .retain(|known| *known != id);
    }
    if status == 201 {
        let body: Value = response.json().await.expect("created record");
        if let (Some(module), Some(id)) = (record_of, body["id"].as_str()) {
            known.lock().unwrap().of(module).push(id.to_owned());
        }
    }
    status
}

#[tokio::test]
async fn concurrent_writers_of_every_kind_leave_the_aggregates_equal_to_the_rows() {
    let app = spawn_app_with(|config| {
        config.db_pool_size = WRITERS;
        config.tenant_max_db_share = 1.0;
    })
    .await;
    let token = app.token(Uuid::new_v4());
    let known = Mutex::new(Known::default());
    let writers = (0..WRITERS).map(|writer| {
        let (app, token, known) = (&app, &token, &known);
        async move {
            let mut rng = StdRng::seed_from_u64(writer as u64);
            let mut statuses = Vec::new();
            for _ in 0..WRITES_EACH {
                statuses.push(one_write(app, token, known, &mut rng).await);
            }
            statuses
        }
    });
    let statuses: Vec<u16> = join_all(writers).await.into_iter().flatten().collect();
    let unexpected: Vec<u16> = statuses
        .iter()
        .copied()
        .filter(|status| ![200, 201, 204, 404, 422].contains(status))
        .collect();
    assert!(unexpected.is_empty(), "writes that failed: {unexpected:?}");
    let tally = |wanted: u16| statuses.iter().filter(|status| **status == wanted).count();
    let tallies = [201, 200, 204, 404, 422].map(|status| (status, tally(status)));
    eprintln!("statuses: {tallies:?}");
    // Creates, updates and deletes all happened, and some writes failed in their transaction.
    for (status, count) in tallies {
        if status != 404 {
            assert!(count >= 10, "too few {status} answers: {tallies:?}");
        }
    }

    let mut conn = app.db().await;
    assert_eq!(aggregates::drift(&mut conn).await.expect("drift"), vec![]);
}
