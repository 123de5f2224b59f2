//! Cache tags: a write evicts only the answers its change can alter, and every answer is still
//! never older than the newest write. The model-based oracle runs random writes (creates, updates
//! of filter fields, searched fields and others, deletes and their cascades) on a small tenant,
//! interleaved with reads of every cached route and filter on two instances, and compares each
//! answer with what an instance without a cache answers at that moment.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{minimal, spawn_replicas, start, TestApp};

const STAGES: &[&str] = &["prospecting", "proposal", "closed_won"];
const INDUSTRIES: &[&str] = &["tech", "retail"];
const CONTACT_STATUSES: &[&str] = &["active", "inactive"];
const LEAD_STATUSES: &[&str] = &["new", "contacted", "qualified"];
const SOURCES: &[&str] = &["web", "ads"];
const ACTIVITY_TYPES: &[&str] = &["call", "email"];
const ACTIVITY_STATUSES: &[&str] = &["planned", "completed"];
/// Names are made of these words; `q=alpha` matches some of them, `q=GAMMA` others.
const WORDS: &[&str] = &["alpha", "beta", "gamma"];

/// What the tenant holds, as far as the writes need to pick records.
#[derive(Default)]
struct Model {
    ids: std::collections::BTreeMap<&'static str, Vec<String>>,
}

impl Model {
    fn of(&self, module: &'static str) -> &[String] {
        self.ids.get(module).map(Vec::as_slice).unwrap_or(&[])
    }

    fn pick(&self, module: &'static str, rng: &mut StdRng) -> Option<String> {
        self.of(module).choose(rng).cloned()
    }

    /// An existing account's id, or null.
    fn reference(&self, module: &'static str, rng: &mut StdRng) -> Value {
        match self.pick(module, rng) {
            Some(id) if rng.gen_bool(0.8) => json!(id),
            _ => Value::Null,
        }
    }
}

fn name(rng: &mut StdRng) -> String {
    format!(
        "{} {}",
        WORDS.choose(rng).unwrap_or(&"x"),
        rng.gen_range(0..100)
    )
}

fn one(values: &[&str], rng: &mut StdRng) -> String {
    values.choose(rng).copied().unwrap_or_default().to_owned()
}

/// A create body for `module`, with filter values from the small sets above.
fn new_record(module: &'static str, model: &Model, rng: &mut StdRng) -> Value {
    match module {
        "accounts" => json!({"name": name(rng), "industry": one(INDUSTRIES, rng)}),
        "contacts" => json!({
            "last_name": name(rng),
            "status": one(CONTACT_STATUSES, rng),
            "account_id": model.reference("accounts", rng),
        }),
        "leads" => json!({
            "last_name": name(rng),
            "status": one(LEAD_STATUSES, rng),
            "source": one(SOURCES, rng),
        }),
        "opportunities" => json!({
            "name": name(rng),
            "stage": one(STAGES, rng),
            "amount": rng.gen_range(0..1000),
            "account_id": model.reference("accounts", rng),
            "contact_id": model.reference("contacts", rng),
        }),
        _ => {
            let mut body = json!({
                "type": one(ACTIVITY_TYPES, rng),
                "subject": name(rng),
                "status": one(ACTIVITY_STATUSES, rng),
            });
            if let Some(account) = model.pick("accounts", rng) {
                body["related_type"] = json!("account");
                body["related_id"] = json!(account);
            }
            body
        }
    }
}

/// An update body of one kind: a filter field, a searched field, or a field neither filters
/// nor searches.
fn changes(module: &'static str, model: &Model, rng: &mut StdRng) -> Value {
    let kind = rng.gen_range(0..3);
    match (module, kind) {
        ("accounts", 0) => json!({"industry": one(INDUSTRIES, rng)}),
        ("accounts", 1) => json!({"name": name(rng)}),
        ("accounts", _) => json!({"phone": format!("{}", rng.gen_range(0..1000))}),
        ("contacts", 0) if rng.gen_bool(0.5) => json!({"status": one(CONTACT_STATUSES, rng)}),
        ("contacts", 0) => json!({"account_id": model.reference("accounts", rng)}),
        ("contacts", 1) => json!({"last_name": name(rng)}),
        ("contacts", _) => json!({"title": name(rng)}),
        ("leads", 0) if rng.gen_bool(0.5) => json!({"status": one(LEAD_STATUSES, rng)}),
        ("leads", 0) => json!({"source": one(SOURCES, rng)}),
        ("leads", 1) => json!({"company": name(rng)}),
        ("leads", _) => json!({"score": rng.gen_range(0..=100)}),
        ("opportunities", 0) if rng.gen_bool(0.5) => json!({"stage": one(STAGES, rng)}),
        ("opportunities", 0) => json!({"account_id": model.reference("accounts", rng)}),
        ("opportunities", 1) => json!({"name": name(rng)}),
        ("opportunities", _) if rng.gen_bool(0.5) => json!({"amount": rng.gen_range(0..1000)}),
        ("opportunities", _) => json!({"probability": rng.gen_range(0..=100)}),
        (_, 0) if rng.gen_bool(0.5) => json!({"status": one(ACTIVITY_STATUSES, rng)}),
        (_, 0) => json!({"type": one(ACTIVITY_TYPES, rng)}),
        (_, 1) => json!({"subject": name(rng)}),
        (_, _) => json!({"body": name(rng)}),
    }
}

const MODULES: [&str; 5] = [
    "accounts",
    "contacts",
    "leads",
    "opportunities",
    "activities",
];

/// Every cached read of the tenant: each entity's first page, a short page, its count, each
/// filter value's list and count, the search's list and count; the stats, whole and per
/// account; the bundle.
fn reads(model: &Model) -> Vec<String> {
    let mut paths = Vec::new();
    let mut filtered = |module: &str, filter: &str, values: Vec<String>| {
        for value in values {
            paths.push(format!("/api/v2/{module}?{filter}={value}"));
            paths.push(format!("/api/v2/{module}/count?{filter}={value}"));
        }
    };
    let texts = |values: &[&str]| values.iter().map(|value| (*value).to_owned()).collect();
    let accounts: Vec<String> = model.of("accounts").to_vec();
    filtered("accounts", "industry", texts(INDUSTRIES));
    filtered("contacts", "status", texts(CONTACT_STATUSES));
    filtered("contacts", "account_id", accounts.clone());
    filtered("leads", "status", texts(LEAD_STATUSES));
    filtered("leads", "source", texts(SOURCES));
    filtered("opportunities", "stage", texts(STAGES));
    filtered("opportunities", "account_id", accounts.clone());
    filtered("activities", "type", texts(ACTIVITY_TYPES));
    filtered("activities", "status", texts(ACTIVITY_STATUSES));
    filtered("activities", "related_id", accounts.clone());
    filtered(
        "opportunities",
        "stage=proposal&account_id",
        accounts.clone(),
    );
    // A search keyed by a trigram, one in another case, one too short for a key.
    for module in MODULES {
        filtered(module, "q", texts(&["alpha", "GAMMA", "be"]));
    }
    for module in MODULES {
        paths.push(format!("/api/v2/{module}"));
        paths.push(format!("/api/v2/{module}?limit=2"));
        paths.push(format!("/api/v2/{module}/count"));
    }
    paths.push("/api/v2/opportunities/stats".to_owned());
    for account in accounts {
        paths.push(format!("/api/v2/opportunities/stats?account_id={account}"));
    }
    paths.push("/api/v2/dashboard/bundle".to_owned());
    paths
}

/// An answer as compared: the bundle's `generated_at` says when its parts were read, not what.
async fn answer(app: &TestApp, path: &str, token: &str, fresh: bool) -> Value {
    let headers: &[(&str, &str)] = if fresh {
        &[("cache-control", "no-cache")]
    } else {
        &[]
    };
    let response = app.get_with(path, token, headers).await;
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    let mut body: Value = response.json().await.expect("JSON body");
    if let Some(object) = body.as_object_mut() {
        object.remove("generated_at");
    }
    body
}

struct Oracle {
    apps: Vec<TestApp>,
    /// The same database with the cache off: what `no-cache` answers, storing nothing.
    reference: TestApp,
    token: String,
    model: Model,
    rng: StdRng,
    seed: u64,
}

impl Oracle {
    async fn start(seed: u64) -> Oracle {
        let apps = spawn_replicas(2, |_| {}).await;
        let mut config = apps[0].config.clone();
        config.cache_enabled = false;
        config.redis_url = "none".into();
        let reference = start(config, apps[0].database.clone()).await;
        let token = apps[0].token(Uuid::new_v4());
        Oracle {
            apps,
            reference,
            token,
            model: Model::default(),
            rng: StdRng::seed_from_u64(seed),
            seed,
        }
    }

    async fn create(&mut self, writer: usize, module: &'static str) -> String {
        let body = new_record(module, &self.model, &mut self.rng);
        let record = self.apps[writer].create(module, &self.token, body).await;
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        self.model.ids.entry(module).or_default().push(id.clone());
        id
    }

    /// One random write on `writer`; what it did, for the failure message.
    async fn write(&mut self, writer: usize) -> String {
        let module = *MODULES.choose(&mut self.rng).unwrap_or(&"leads");
        let choice = self.rng.gen_range(0..10);
        let Some(id) = self.model.pick(module, &mut self.rng) else {
            let id = self.create(writer, module).await;
            return format!("create {module} {id}");
        };
        let app = &self.apps[writer];
        let path = format!("/api/v2/{module}/{id}");
        match choice {
            0..=2 => {
                let id = self.create(writer, module).await;
                format!("create {module} {id}")
            }
            3..=8 => {
                let body = changes(module, &self.model, &mut self.rng);
                let response = app.patch(&path, &self.token, &body).await;
                assert_eq!(response.status().as_u16(), 200, "PATCH {path} {body}");
                format!("patch {path} {body}")
            }
            _ => {
                let response = app.delete(&path, &self.token).await;
                assert_eq!(response.status().as_u16(), 204, "DELETE {path}");
                if let Some(ids) = self.model.ids.get_mut(module) {
                    ids.retain(|known| *known != id);
                }
                format!("delete {path}")
            }
        }
    }

    /// Reads about half of every cached read on both instances (each read is cached, so later
    /// steps find entries of every age) and checks each against the reference: the writer at
    /// once, the other instance within 100 ms.
    async fn check(&mut self, writer: usize, step: usize, history: &[String]) {
        let other = 1 - writer;
        for path in reads(&self.model) {
            if !self.rng.gen_bool(0.5) {
                continue;
            }
            let expected = answer(&self.reference, &path, &self.token, true).await;
            let at_writer = answer(&self.apps[writer], &path, &self.token, false).await;
            assert_eq!(
                at_writer,
                expected,
                "seed {}, step {step}: the writer answers GET {path} out of date after {history:#?}",
                self.seed
            );
            let deadline = Instant::now() + Duration::from_millis(100);
            loop {
                let at_other = answer(&self.apps[other], &path, &self.token, false).await;
                if at_other == expected {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "seed {}, step {step}: the other instance answers GET {path} out of date \
                     after {history:#?}: {at_other} instead of {expected}",
                    self.seed
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cached_answer_equals_a_fresh_one_after_every_random_write() {
    let seed = std::env::var("ORACLE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random);
    let steps: usize = std::env::var("ORACLE_STEPS")
        .ok()
        .and_then(|steps| steps.parse().ok())
        .unwrap_or(60);
    let mut oracle = Oracle::start(seed).await;
    for (module, count) in [
        ("accounts", 3),
        ("contacts", 4),
        ("leads", 4),
        ("opportunities", 6),
        ("activities", 4),
    ] {
        for _ in 0..count {
            oracle.create(0, module).await;
        }
    }
    let mut history = Vec::new();
    oracle.check(0, 0, &history).await;
    for step in 1..=steps {
        let writer = step % 2;
        history.push(oracle.write(writer).await);
        // The last few writes are what a failure needs to be read.
        let recent = &history[history.len().saturating_sub(6)..];
        oracle.check(writer, step, recent).await;
    }
}

/// GETs `path`; its `X-Cache`.
async fn served(app: &TestApp, path: &str, token: &str) -> String {
    app.get_cached(path, token).await.0
}

/// The `X-Cache` of each of `paths`, read at once.
async fn served_all(app: &TestApp, paths: &[&str], token: &str) -> Vec<String> {
    futures_util::future::join_all(paths.iter().map(|path| served(app, path, token))).await
}

#[tokio::test]
async fn an_amount_update_keeps_every_list_without_the_record_and_every_count() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    let its_account = app.create("accounts", &token, json!({"name": "A"})).await;
    let other_account = app.create("accounts", &token, json!({"name": "B"})).await;
    let changed = app
        .create(
            "opportunities",
            &token,
            json!({"name": "Renewal", "stage": "proposal", "amount": 10,
                   "account_id": its_account["id"]}),
        )
        .await;
    app.create(
        "opportunities",
        &token,
        json!({"name": "Upsell", "stage": "closed_won", "amount": 20,
               "account_id": other_account["id"]}),
    )
    .await;
    let its_stats = format!(
        "/api/v2/opportunities/stats?account_id={}",
        its_account["id"].as_str().unwrap_or_default()
    );
    let other_stats = format!(
        "/api/v2/opportunities/stats?account_id={}",
        other_account["id"].as_str().unwrap_or_default()
    );
    app.create("leads", &token, json!({"last_name": "Khan"}))
        .await;
    let kept = [
        other_stats.as_str(),
        "/api/v2/accounts",
        "/api/v2/opportunities?stage=closed_won",
        "/api/v2/opportunities/count",
        "/api/v2/opportunities/count?stage=proposal",
        "/api/v2/opportunities?q=upsell",
        "/api/v2/leads",
        "/api/v2/leads/count",
    ];
    let rebuilt = [
        its_stats.as_str(),
        "/api/v2/opportunities",
        "/api/v2/opportunities?stage=proposal",
        "/api/v2/opportunities/stats",
        "/api/v2/dashboard/bundle",
    ];
    for path in kept.iter().chain(&rebuilt) {
        served(app, path, &token).await;
    }
    let id = changed["id"].as_str().unwrap_or_default();
    let response = app
        .patch(
            &format!("/api/v2/opportunities/{id}"),
            &token,
            &json!({"amount": 11}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    for path in kept {
        assert_eq!(served(app, path, &token).await, "HIT", "{path} kept");
    }
    for path in rebuilt {
        assert_eq!(served(app, path, &token).await, "MISS", "{path} rebuilt");
    }
    let (_, _, stats) = app.get_cached("/api/v2/opportunities/stats", &token).await;
    assert_eq!(stats["total"]["amount"], json!(31.0));
}

#[tokio::test]
async fn a_stage_change_rebuilds_the_old_and_new_stage_but_not_a_third() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    let moved = app
        .create(
            "opportunities",
            &token,
            json!({"name": "Renewal", "stage": "proposal"}),
        )
        .await;
    let paths = [
        "/api/v2/opportunities/count?stage=proposal",
        "/api/v2/opportunities/count?stage=negotiation",
        "/api/v2/opportunities/count?stage=closed_lost",
        "/api/v2/opportunities/count",
    ];
    for path in paths {
        served(app, path, &token).await;
    }
    let id = moved["id"].as_str().unwrap_or_default();
    app.patch(
        &format!("/api/v2/opportunities/{id}"),
        &token,
        &json!({"stage": "negotiation"}),
    )
    .await;
    let outcomes = served_all(app, &paths, &token).await;
    assert_eq!(outcomes, ["MISS", "MISS", "HIT", "HIT"], "{paths:?}");
}

/// A create changes the sets the new record enters: all leads, the lists and counts of its own
/// status and source, and the searches its text may match. Those of other values and other
/// searches stay cached; they cannot contain it.
#[tokio::test]
async fn a_create_rebuilds_the_answers_of_its_values_and_leaves_other_values_cached() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    app.create(
        "leads",
        &token,
        json!({"last_name": "First", "status": "contacted", "source": "web"}),
    )
    .await;
    let paths = [
        "/api/v2/leads?status=new",
        "/api/v2/leads/count?source=referral",
        "/api/v2/leads",
        "/api/v2/leads/count",
        "/api/v2/leads?status=contacted",
        "/api/v2/leads/count?source=web",
        "/api/v2/leads?q=first",
        "/api/v2/leads/count?q=ECOND",
        "/api/v2/opportunities/count",
    ];
    for path in paths {
        served(app, path, &token).await;
    }
    app.create(
        "leads",
        &token,
        json!({"last_name": "Second", "status": "new", "source": "referral"}),
    )
    .await;
    let outcomes = served_all(app, &paths, &token).await;
    assert_eq!(
        outcomes,
        ["MISS", "MISS", "MISS", "MISS", "HIT", "HIT", "HIT", "MISS", "HIT"],
        "{paths:?}"
    );
    let (_, _, new) = app.get_cached(paths[0], &token).await;
    assert_eq!(new["data"][0]["last_name"], "Second", "{new}");
}

/// A replica's first read of a tenant fetches its versions from Redis. Writes of other tenants
/// arriving on the bus meanwhile change nothing of that tenant, so they must not make the fetch
/// count for nothing: the entry another replica stored is an L2 hit, however busy the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_busy_with_other_tenants_leaves_a_first_read_an_l2_hit() {
    let apps = spawn_replicas(2, |config| config.workers = 2).await;
    let (writer, reader) = (&apps[0], &apps[1]);
    let tenants: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    for tenant in &tenants {
        let token = writer.token(*tenant);
        writer.create("leads", &token, minimal("leads")).await;
        writer.get_cached("/api/v2/leads/count", &token).await;
    }
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let floods: Vec<_> = (0..4)
        .map(|_| {
            let (client, address) = (writer.client.clone(), writer.address.clone());
            let token = writer.token(Uuid::new_v4());
            let flooding = flooding.clone();
            tokio::spawn(async move {
                // Each write's tenant is new to the reader: its message reaches it as one of a
                // tenant it does not know.
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client
                        .post(format!("{address}/api/v2/leads"))
                        .bearer_auth(&token)
                        .json(&minimal("leads"))
                        .send()
                        .await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut served = Vec::new();
    for tenant in &tenants {
        let (cache, tier, _) = reader
            .get_cached("/api/v2/leads/count", &reader.token(*tenant))
            .await;
        served.push(format!("{cache} {tier}"));
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for flood in floods {
        let _ = flood.await;
    }
    let hits = served.iter().filter(|served| *served == "HIT L2").count();
    assert_eq!(hits, tenants.len(), "{served:?}");
}

#[derive(diesel::QueryableByName)]
struct Matched {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    matched: bool,
}

/// A random text of letters whose case differs between collations (`I`, `İ`, `ı`, the Kelvin
/// sign), plain ones, digits and separators.
fn mixed_text(rng: &mut StdRng, len: usize) -> String {
    const LETTERS: &[char] = &[
        'a', 'b', 'k', 'K', 'i', 'I', 'İ', 'ı', '\u{212a}', 's', 'S', 'ſ', '1', ' ', '-', '%', '_',
    ];
    (0..len)
        .map(|_| *LETTERS.choose(rng).unwrap_or(&'a'))
        .collect()
}

/// The search keys agree with the database's own `ILIKE`, in its collation and in ICU's root and
/// Turkish ones: of random texts and searches (pieces of the texts in another case, and random
/// ones), every text PostgreSQL says a search matches holds that search's key.
#[tokio::test]
async fn every_text_the_database_matches_holds_the_key_of_the_search() {
    use aishacrm::domain::query::like_pattern;
    use aishacrm::domain::tags::{held_grams, search_key};
    use diesel::sql_types::{Array, Text};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let database = crate::helpers::TestDatabase::create().await;
    let mut conn = <AsyncPgConnection as AsyncConnection>::establish(&database.url)
        .await
        .expect("connect");
    let mut rng = StdRng::seed_from_u64(20261201);
    let (mut texts, mut searches) = (Vec::new(), Vec::new());
    for _ in 0..6000 {
        let len = rng.gen_range(3..14);
        let text = mixed_text(&mut rng, len);
        let chars: Vec<char> = text.chars().collect();
        let start = rng.gen_range(0..chars.len());
        let end = rng.gen_range(start..=chars.len());
        let piece: String = chars[start..end]
            .iter()
            .map(|c| match rng.gen_range(0..3) {
                0 => c.to_uppercase().next().unwrap_or(*c),
                1 => c.to_lowercase().next().unwrap_or(*c),
                _ => *c,
            })
            .collect();
        let q = if rng.gen_bool(0.8) {
            piece
        } else {
            let len = rng.gen_range(3..6);
            mixed_text(&mut rng, len)
        };
        texts.push(text);
        searches.push(q);
    }
    let patterns: Vec<String> = searches.iter().map(|q| like_pattern(q)).collect();
    for collation in ["", " COLLATE \"und-x-icu\"", " COLLATE \"tr-x-icu\""] {
        let answers: Vec<Matched> = diesel::sql_query(format!(
            "SELECT (t{collation}) ILIKE p AS matched \
             FROM unnest($1, $2) WITH ORDINALITY AS pairs(t, p, n) ORDER BY n"
        ))
        .bind::<Array<Text>, _>(&texts)
        .bind::<Array<Text>, _>(&patterns)
        .load(&mut conn)
        .await
        .expect("matching");
        assert_eq!(answers.len(), texts.len());
        let mut keyed_matches = 0;
        for ((text, q), answer) in texts.iter().zip(&searches).zip(&answers) {
            let Some(key) = search_key(q) else { continue };
            if answer.matched {
                keyed_matches += 1;
                assert!(
                    held_grams(text).contains(&key),
                    "{collation}: the database matches {q:?} in {text:?}, whose trigrams lack \
                     the key {:?}",
                    String::from_utf8_lossy(&key)
                );
            }
        }
        assert!(
            keyed_matches > 150,
            "{collation}: {keyed_matches} matches with a key"
        );
    }
}
