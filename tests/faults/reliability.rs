//! Reliability under faults: PostgreSQL backends terminated under load, a PostgreSQL server
//! (owned by the test) restarted under load, one replica SIGKILLed while another serves, Redis
//! killed and restarted under mixed load, SIGTERM with requests in flight, and slow clients.
//!
//! Every fault test runs writers that keep a ledger of every ACKNOWLEDGED write (the id and the
//! exact record the 2xx answered, or "gone" for a 204 delete). A write that was not acknowledged
//! (503, a transport error) leaves its record in doubt: the writer never touches it again and the
//! final check accepts either outcome for it, but nothing else. At the end the ledger is
//! compared with the rows PostgreSQL holds, read directly with diesel.
//!
//! Every wait is bounded (HTTP client timeouts, `tokio::time::timeout` around phases); child
//! processes (redis-server, the service binary, a PostgreSQL server) are stopped by guards by
//! their PID, also when an assertion fails. The shared PostgreSQL and Redis are never touched
//! beyond a database and a key prefix of each test's own.

use std::collections::HashMap;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aishacrm::auth::{JwtKeys, Role};
use aishacrm::db::accounts::Account;
use aishacrm::db::leads::Lead;
use aishacrm::db::schema::{accounts, leads};
use aishacrm::startup::Application;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use uuid::Uuid;

use crate::helpers::{
    header, redis_url, spawn_app_with, spawn_replicas_on, test_config, time_until_redis,
    RedisPrefix, TestDatabase, MODULES,
};
use crate::support::binary::Server;
use crate::support::postgres_server::PostgresServer;
use crate::support::redis_server::RedisServer;

// =============================================================================================
// Bounds.

/// Hang guard of every HTTP request of these tests; the tests assert much tighter bounds.
const REQUEST_LIMIT: Duration = Duration::from_secs(15);
/// Hang guard of a whole test.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Runs `work`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

// =============================================================================================
// HTTP: an endpoint that journals every call.

/// One HTTP exchange, as a client saw it.
#[derive(Debug, Clone)]
struct Call {
    who: String,
    what: String,
    started: Instant,
    status: Option<u16>,
    code: String,
    cache: String,
    elapsed: Duration,
    error: String,
}

impl Call {
    fn is_2xx(&self) -> bool {
        matches!(self.status, Some(status) if (200..300).contains(&status))
    }

    /// 2xx, or `503 database_unavailable`.
    fn is_2xx_or_unavailable(&self) -> bool {
        self.is_2xx() || (self.status == Some(503) && self.code == "database_unavailable")
    }

    fn describe(&self, origin: Instant) -> String {
        let at = self.started.saturating_duration_since(origin);
        let outcome = match self.status {
            Some(status) => format!("{status} {} {}", self.code, self.cache),
            None => format!("transport error: {}", self.error),
        };
        format!(
            "[{} t={:.3}s] {} -> {} in {:?}",
            self.who,
            at.as_secs_f64(),
            self.what,
            outcome.trim(),
            self.elapsed
        )
    }
}

type Journal = Arc<Mutex<Vec<Call>>>;

/// A tally of statuses, e.g. `200x120 503x4 ERRx1`.
fn tally(calls: &[Call]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for call in calls {
        let key = call
            .status
            .map_or_else(|| "ERR".to_owned(), |status| status.to_string());
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{status}x{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Up to 15 described calls, then how many more.
fn listing(calls: &[&Call], origin: Instant) -> String {
    let mut lines: Vec<String> = calls.iter().take(15).map(|c| c.describe(origin)).collect();
    if calls.len() > 15 {
        lines.push(format!("... and {} more", calls.len() - 15));
    }
    lines.join("\n  ")
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One answer: status (None = transport error), `X-Cache` and the JSON body.
#[derive(Debug, Clone)]
struct Reply {
    status: Option<u16>,
    cache: String,
    body: Value,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_LIMIT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("http client")
}

/// The service at `base`, called with one tenant's token; every call lands in `journal`.
#[derive(Clone)]
struct Endpoint {
    name: String,
    base: String,
    token: String,
    client: reqwest::Client,
    journal: Journal,
}

impl Endpoint {
    fn new(name: &str, base: &str, token: String, journal: &Journal) -> Self {
        Endpoint {
            name: name.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
            token,
            client: http_client(),
            journal: journal.clone(),
        }
    }

    /// The same service under another name in the journal, with a client of its own.
    fn named(&self, name: &str) -> Self {
        Endpoint::new(name, &self.base, self.token.clone(), &self.journal)
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, fresh: bool) -> Reply {
        let started = Instant::now();
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if fresh {
            request = request.header("Cache-Control", "no-cache");
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let outcome = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let cache = header(&response, "x-cache");
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, cache, bytes))
        }
        .await;
        let elapsed = started.elapsed();
        let (reply, error) = match outcome {
            Ok((status, cache, bytes)) => {
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    })
                };
                (
                    Reply {
                        status: Some(status),
                        cache,
                        body,
                    },
                    String::new(),
                )
            }
            Err(error) => (
                Reply {
                    status: None,
                    cache: String::new(),
                    body: Value::Null,
                },
                error_chain(&error),
            ),
        };
        let call = Call {
            who: self.name.clone(),
            what: format!("{method} {path}{}", if fresh { " (no-cache)" } else { "" }),
            started,
            status: reply.status,
            code: reply.body["error"]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            cache: reply.cache.clone(),
            elapsed,
            error,
        };
        self.journal.lock().unwrap().push(call);
        reply
    }

    async fn get(&self, path: &str, fresh: bool) -> Reply {
        self.call(Method::GET, path, None, fresh).await
    }
}

fn new_journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

fn snapshot(journal: &Journal) -> Vec<Call> {
    journal.lock().unwrap().clone()
}

// =============================================================================================
// The ledger of acknowledged writes.

/// The fields a writer sets on one entity: a name (carries the writer's label) and a number.
#[derive(Debug, Clone, Copy)]
struct Kind {
    module: &'static str,
    name: &'static str,
    number: &'static str,
    numbers: i64,
}

const ACCOUNTS: Kind = Kind {
    module: "accounts",
    name: "name",
    number: "employee_count",
    numbers: 1_000_000,
};

const LEADS: Kind = Kind {
    module: "leads",
    name: "last_name",
    number: "score",
    numbers: 101,
};

/// A write whose answer never came (or was not a 2xx): it may or may not have happened.
#[derive(Debug, Clone)]
enum Doubt {
    Update { name: String, number: i64 },
    Delete,
}

#[derive(Debug)]
struct Tracked {
    id: String,
    /// The record as the last acknowledged write answered it; `None` once a delete was.
    acked: Option<Value>,
    doubt: Option<Doubt>,
}

#[derive(Debug, Default)]
struct LedgerState {
    records: Vec<Tracked>,
    index: HashMap<String, usize>,
    /// Creates without an answer: (name, number); their rows may exist.
    doubtful_creates: Vec<(String, i64)>,
    acked: u64,
    unacked: u64,
    problems: Vec<String>,
}

/// The writes of one writer (one module, one label), as acknowledged.
struct Ledger {
    kind: Kind,
    label: String,
    max_live: usize,
    next: AtomicU64,
    state: Mutex<LedgerState>,
}

enum Plan {
    Create {
        name: String,
        number: i64,
    },
    Update {
        id: String,
        name: String,
        number: i64,
    },
    Delete {
        id: String,
    },
}

/// What a writer had acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    op: &'static str,
    id: String,
}

impl Ledger {
    fn new(kind: Kind, label: &str) -> Arc<Self> {
        Arc::new(Ledger {
            kind,
            label: label.to_owned(),
            max_live: 12,
            next: AtomicU64::new(1),
            state: Mutex::default(),
        })
    }

    /// `q` that finds this writer's records (and only them).
    fn query(&self) -> String {
        format!("{}-", self.label)
    }

    fn live_ids(state: &LedgerState) -> Vec<String> {
        state
            .records
            .iter()
            .filter(|r| r.acked.is_some() && r.doubt.is_none())
            .map(|r| r.id.clone())
            .collect()
    }

    /// The records that certainly exist, with the values last acknowledged.
    fn live(&self) -> HashMap<String, Value> {
        let state = self.state.lock().unwrap();
        state
            .records
            .iter()
            .filter(|r| r.doubt.is_none())
            .filter_map(|r| r.acked.clone().map(|v| (r.id.clone(), v)))
            .collect()
    }

    /// Whether any write of this ledger is in doubt (then exact counts cannot be known).
    fn in_doubt(&self) -> bool {
        let state = self.state.lock().unwrap();
        !state.doubtful_creates.is_empty() || state.records.iter().any(|r| r.doubt.is_some())
    }

    fn acked(&self) -> u64 {
        self.state.lock().unwrap().acked
    }

    fn plan(&self, turn: u64) -> Plan {
        let state = self.state.lock().unwrap();
        let live = Self::live_ids(&state);
        let n = self.next.fetch_add(1, Ordering::SeqCst) as i64;
        let number = n % self.kind.numbers;
        let pick = |live: &[String]| live[(turn as usize * 7) % live.len()].clone();
        let create = Plan::Create {
            name: format!("{}-{n}", self.label),
            number,
        };
        match turn % 6 {
            _ if live.len() >= self.max_live => Plan::Delete { id: pick(&live) },
            0..=2 => create,
            _ if live.is_empty() => create,
            3 | 4 => {
                let id = pick(&live);
                let original = state.records[state.index[&id]].acked.as_ref().unwrap()
                    [self.kind.name]
                    .as_str()
                    .unwrap_or("")
                    .split("-u")
                    .next()
                    .unwrap_or("")
                    .to_owned();
                Plan::Update {
                    id,
                    name: format!("{original}-u{n}"),
                    number,
                }
            }
            _ => Plan::Delete { id: pick(&live) },
        }
    }

    fn problem(&self, text: String) {
        self.state.lock().unwrap().problems.push(text);
    }

    /// Checks that an acknowledged record carries what was sent.
    fn check_answer(&self, what: &str, body: &Value, name: &str, number: i64) -> Option<String> {
        let kind = self.kind;
        let id_ok = body["id"]
            .as_str()
            .is_some_and(|id| Uuid::try_parse(id).is_ok());
        if !id_ok || body[kind.name] != json!(name) || body[kind.number] != json!(number) {
            Some(format!(
                "{what} of {} acknowledged with other values than sent ({}={name:?}, {}={number}): {body}",
                kind.module, kind.name, kind.number
            ))
        } else {
            None
        }
    }

    fn track(&self, body: Value) -> String {
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let mut state = self.state.lock().unwrap();
        state.acked += 1;
        let position = state.records.len();
        state.records.push(Tracked {
            id: id.clone(),
            acked: Some(body),
            doubt: None,
        });
        state.index.insert(id.clone(), position);
        id
    }

    fn settle(&self, id: &str, acked: Option<Value>) {
        let mut state = self.state.lock().unwrap();
        state.acked += 1;
        let position = state.index[id];
        state.records[position].acked = acked;
    }

    fn doubt(&self, id: &str, doubt: Doubt) {
        let mut state = self.state.lock().unwrap();
        state.unacked += 1;
        let position = state.index[id];
        state.records[position].doubt = Some(doubt);
    }

    fn doubt_create(&self, name: String, number: i64) {
        let mut state = self.state.lock().unwrap();
        state.unacked += 1;
        state.doubtful_creates.push((name, number));
    }

    /// Compares the ledger with the rows PostgreSQL holds for this module and tenant: every
    /// acknowledged record exactly as answered, every acknowledged delete gone, records in doubt
    /// in one of their two possible states, and no row of this writer that it never sent.
    fn verify(&self, rows: &HashMap<String, Value>) -> (Vec<String>, String) {
        let state = self.state.lock().unwrap();
        let kind = self.kind;
        let mut violations = Vec::new();
        let (mut present, mut gone, mut doubtful) = (0, 0, 0);
        for record in &state.records {
            let row = rows.get(&record.id);
            let what = format!("{} {} ({})", kind.module, record.id, self.label);
            match (&record.acked, &record.doubt) {
                (Some(acked), None) => {
                    present += 1;
                    match row {
                        None => violations.push(format!(
                            "{what}: acknowledged as {acked} but missing from PostgreSQL"
                        )),
                        Some(row) if row != acked => violations.push(format!(
                            "{what}: acknowledged as {acked} but PostgreSQL holds {row}"
                        )),
                        Some(_) => {}
                    }
                }
                (None, None) => {
                    gone += 1;
                    if let Some(row) = row {
                        violations.push(format!(
                            "{what}: its delete was acknowledged but PostgreSQL still holds {row}"
                        ));
                    }
                }
                (Some(acked), Some(Doubt::Update { name, number })) => {
                    doubtful += 1;
                    let as_attempted = row.is_some_and(|row| {
                        row[kind.name] == json!(name)
                            && row[kind.number] == json!(number)
                            && row["created_at"] == acked["created_at"]
                    });
                    if row != Some(acked) && !as_attempted {
                        violations.push(format!(
                            "{what}: last acknowledged as {acked}, an unanswered update set \
                             {}={name:?}/{}={number}, but PostgreSQL holds {row:?}",
                            kind.name, kind.number
                        ));
                    }
                }
                (Some(acked), Some(Doubt::Delete)) => {
                    doubtful += 1;
                    if row.is_some_and(|row| row != acked) {
                        violations.push(format!(
                            "{what}: last acknowledged as {acked}, an unanswered delete, but \
                             PostgreSQL holds {row:?}"
                        ));
                    }
                }
                (None, Some(_)) => unreachable!("a deleted record is never written again"),
            }
        }
        let prefix = self.query();
        let mut phantoms = 0;
        for (id, row) in rows {
            let name = row[kind.name].as_str().unwrap_or("");
            if !name.starts_with(&prefix) || state.index.contains_key(id) {
                continue;
            }
            let sent = state
                .doubtful_creates
                .iter()
                .any(|(n, number)| n == name && row[kind.number] == json!(number));
            if sent {
                phantoms += 1;
            } else {
                violations.push(format!(
                    "{} {id}: a row of writer {} that no request of it created: {row}",
                    kind.module, self.label
                ));
            }
        }
        for problem in &state.problems {
            violations.push(format!("{}: {problem}", self.label));
        }
        let summary = format!(
            "{} {}: {} acknowledged writes, {} unanswered; {present} records present, {gone} \
             deleted, {doubtful} in doubt, {} unanswered creates ({phantoms} of them committed)",
            self.label,
            kind.module,
            state.acked,
            state.unacked,
            state.doubtful_creates.len()
        );
        (violations, summary)
    }
}

/// Runs the ledger's plan for `turn` against `endpoint`; the acknowledged write, if any.
async fn write_once(endpoint: &Endpoint, ledger: &Ledger, turn: u64) -> Option<Ack> {
    let kind = ledger.kind;
    match ledger.plan(turn) {
        Plan::Create { name, number } => {
            let mut body = Map::new();
            body.insert(kind.name.to_owned(), json!(name));
            body.insert(kind.number.to_owned(), json!(number));
            let reply = endpoint
                .call(
                    Method::POST,
                    &format!("/api/v2/{}", kind.module),
                    Some(&Value::Object(body)),
                    false,
                )
                .await;
            if reply.status == Some(201) {
                if let Some(problem) = ledger.check_answer("a create", &reply.body, &name, number) {
                    ledger.problem(problem);
                }
                let id = ledger.track(reply.body);
                Some(Ack { op: "create", id })
            } else {
                ledger.doubt_create(name, number);
                None
            }
        }
        Plan::Update { id, name, number } => {
            let mut body = Map::new();
            body.insert(kind.name.to_owned(), json!(name));
            body.insert(kind.number.to_owned(), json!(number));
            let reply = endpoint
                .call(
                    Method::PATCH,
                    &format!("/api/v2/{}/{id}", kind.module),
                    Some(&Value::Object(body)),
                    false,
                )
                .await;
            if reply.status == Some(200) {
                if let Some(problem) = ledger.check_answer("an update", &reply.body, &name, number)
                {
                    ledger.problem(problem);
                }
                if reply.body["id"] != json!(id) {
                    ledger.problem(format!(
                        "PATCH {id} answered another record: {}",
                        reply.body
                    ));
                }
                ledger.settle(&id, Some(reply.body));
                Some(Ack { op: "update", id })
            } else {
                ledger.doubt(&id, Doubt::Update { name, number });
                None
            }
        }
        Plan::Delete { id } => {
            let reply = endpoint
                .call(
                    Method::DELETE,
                    &format!("/api/v2/{}/{id}", kind.module),
                    None,
                    false,
                )
                .await;
            if reply.status == Some(204) {
                ledger.settle(&id, None);
                Some(Ack { op: "delete", id })
            } else {
                ledger.doubt(&id, Doubt::Delete);
                None
            }
        }
    }
}

/// Writes with `ledger` until `stop`, pausing `pause` between writes.
fn spawn_writer(
    endpoint: Endpoint,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = 0;
        while !stop.load(Ordering::SeqCst) {
            write_once(&endpoint, &ledger, turn).await;
            turn += 1;
            sleep(pause).await;
        }
    })
}

/// Reads `routes` (path, fresh) round-robin until `stop`.
fn spawn_reader(
    endpoint: Endpoint,
    routes: Vec<(String, bool)>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = 0;
        while !stop.load(Ordering::SeqCst) {
            let (path, fresh) = &routes[turn % routes.len()];
            endpoint.get(path, *fresh).await;
            turn += 1;
            sleep(pause).await;
        }
    })
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    within(Duration::from_secs(30), "the load tasks", async {
        for task in tasks {
            task.await.expect("a load task panicked");
        }
    })
    .await;
}

// =============================================================================================
// PostgreSQL, read directly.

async fn connect(url: &str) -> AsyncPgConnection {
    within(
        Duration::from_secs(10),
        "connecting to PostgreSQL",
        AsyncPgConnection::establish(url),
    )
    .await
    .unwrap_or_else(|error| panic!("connecting to {url}: {error}"))
}

/// Every row of `kind` of `tenant`, as the API serializes it, by id.
async fn rows_of(conn: &mut AsyncPgConnection, kind: Kind, tenant: Uuid) -> HashMap<String, Value> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let rows: Vec<(String, Value)> = match kind.module {
        "accounts" => accounts::table
            .filter(accounts::tenant_id.eq(tenant))
            .select(Account::as_select())
            .load::<Account>(conn)
            .await
            .expect("reading accounts")
            .into_iter()
            .map(|row| (row.id.to_string(), serde_json::to_value(row).unwrap()))
            .collect(),
        "leads" => leads::table
            .filter(leads::tenant_id.eq(tenant))
            .select(Lead::as_select())
            .load::<Lead>(conn)
            .await
            .expect("reading leads")
            .into_iter()
            .map(|row| (row.id.to_string(), serde_json::to_value(row).unwrap()))
            .collect(),
        other => panic!("no rows for {other}"),
    };
    rows.into_iter().collect()
}

/// Compares every ledger with PostgreSQL; panics with every violation. Returns the summary.
async fn verify_ledgers(url: &str, tenant: Uuid, ledgers: &[&Arc<Ledger>]) -> String {
    let mut conn = connect(url).await;
    let mut violations = Vec::new();
    let mut summaries = Vec::new();
    let mut cached: HashMap<&str, HashMap<String, Value>> = HashMap::new();
    for ledger in ledgers {
        let module = ledger.kind.module;
        if !cached.contains_key(module) {
            let rows = within(
                Duration::from_secs(10),
                "reading rows",
                rows_of(&mut conn, ledger.kind, tenant),
            )
            .await;
            cached.insert(module, rows);
        }
        let (found, summary) = ledger.verify(&cached[module]);
        violations.extend(found);
        summaries.push(summary);
    }
    let summary = summaries.join("\n  ");
    assert!(
        violations.is_empty(),
        "{} acknowledged writes are not what PostgreSQL holds:\n  {}\n(ledgers:\n  {summary})",
        violations.len(),
        violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    summary
}

async fn count_rows(conn: &mut AsyncPgConnection, module: &str, tenant: Uuid) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let counted = match module {
        "accounts" => {
            accounts::table
                .filter(accounts::tenant_id.eq(tenant))
                .count()
                .get_result(conn)
                .await
        }
        "leads" => {
            leads::table
                .filter(leads::tenant_id.eq(tenant))
                .count()
                .get_result(conn)
                .await
        }
        other => panic!("no count for {other}"),
    };
    counted.expect("counting rows")
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn scalar(conn: &mut AsyncPgConnection, sql: &str) -> Result<i64, diesel::result::Error> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql)
        .get_result::<Number>(conn)
        .await
        .map(|row| row.n)
}

// =============================================================================================
// The real binary (`logs::Server`).

/// Starts the binary with `env` and waits (up to 20 s) until it listens and, when `redis` is
/// true, its bus is connected.
async fn start_binary(env: Vec<(&'static str, String)>, redis: bool) -> Server {
    let start = move || {
        let mut server = Server::spawn(&env, Duration::from_secs(20));
        if redis {
            server.wait_for_within("[Cache] Redis connected", 0, Duration::from_secs(10));
        }
        server
    };
    within(
        Duration::from_secs(40),
        "starting the binary",
        tokio::task::spawn_blocking(start),
    )
    .await
    .expect("starting the binary panicked")
}

fn mint(secret: &str, tenant: Uuid) -> String {
    JwtKeys::new(secret.as_bytes())
        .mint(tenant, Role::Admin, "reliability", 3600)
        .expect("minting a token")
}

// =============================================================================================
// 1. PostgreSQL backends terminated under load.

/// Pool settings of the database fault tests, and the bound every request must meet:
/// DB_ACQUIRE_TIMEOUT + DB_STATEMENT_TIMEOUT + 2 s.
const ACQUIRE_MS: u64 = 1_000;
const STATEMENT_MS: u64 = 2_000;
const ANSWER_BOUND: Duration = Duration::from_millis(ACQUIRE_MS + STATEMENT_MS + 2_000);

/// Reads while a fault goes on: fresh list, count, stats and bundle (they hit PostgreSQL) and a
/// record by id.
/// One writer per ledger and `readers` readers of [`database_routes`] (each starting `rotate`
/// routes further than the one before), all pausing 5 ms between requests until `stop`.
fn spawn_load(
    endpoint: &Endpoint,
    ledgers: &[Arc<Ledger>],
    by_id: &str,
    readers: usize,
    rotate: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pause = Duration::from_millis(5);
    let mut tasks = Vec::new();
    for (i, ledger) in ledgers.iter().enumerate() {
        let writer = endpoint.named(&format!("writer{i}"));
        tasks.push(spawn_writer(writer, ledger.clone(), stop.clone(), pause));
    }
    for i in 0..readers {
        let mut routes = database_routes(by_id);
        routes.rotate_left(i * rotate);
        let reader = endpoint.named(&format!("reader{i}"));
        tasks.push(spawn_reader(reader, routes, stop.clone(), pause));
    }
    tasks
}

fn database_routes(by_id: &str) -> Vec<(String, bool)> {
    vec![
        ("/api/v2/accounts?limit=20".into(), true),
        ("/api/v2/accounts/count".into(), true),
        (by_id.into(), false),
        ("/api/v2/leads?limit=20".into(), true),
        ("/api/v2/dashboard/bundle".into(), true),
        ("/api/v2/opportunities/stats".into(), true),
        ("/api/v2/leads/count".into(), true),
    ]
}

/// Asserts that every call answered 2xx or `503 database_unavailable`, within `ANSWER_BOUND`.
fn assert_answers_bounded(calls: &[Call], origin: Instant, context: &str) {
    let bad: Vec<&Call> = calls
        .iter()
        .filter(|call| !call.is_2xx_or_unavailable())
        .collect();
    assert!(
        bad.is_empty(),
        "{context}: {} answers were neither 2xx nor 503 database_unavailable:\n  {}",
        bad.len(),
        listing(&bad, origin)
    );
    let slow: Vec<&Call> = calls
        .iter()
        .filter(|call| call.elapsed > ANSWER_BOUND)
        .collect();
    assert!(
        slow.is_empty(),
        "{context}: {} requests took longer than DB_ACQUIRE_TIMEOUT + DB_STATEMENT_TIMEOUT + 2 s \
         = {ANSWER_BOUND:?}:\n  {}",
        slow.len(),
        listing(&slow, origin)
    );
}

fn slowest(calls: &[Call]) -> Duration {
    calls
        .iter()
        .map(|call| call.elapsed)
        .max()
        .unwrap_or_default()
}

/// While readers and writers run, every backend of the test database is terminated every
/// 200 ms for 3 s. Requests answer 2xx or 503 within the configured bounds, the pool recovers by
/// itself within 2 s of the last kill, and every acknowledged write is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_killed_under_load() {
    within(TEST_LIMIT, "the test", async {
        let app = spawn_app_with(|config| {
            config.db_pool_size = 4;
            // One tenant's load on 4 connections: its share (1 of them) would answer 429
            // whenever a killed connection is being replaced (tests/faults/fairness.rs covers
            // the share).
            config.tenant_max_db_share = 1.0;
            config.db_acquire_timeout_ms = ACQUIRE_MS;
            config.db_statement_timeout_ms = STATEMENT_MS;
        })
        .await;
        let tenant = Uuid::new_v4();
        let journal = new_journal();
        let endpoint = Endpoint::new("app", &app.address, app.token(tenant), &journal);
        let origin = Instant::now();

        let seeds = Ledger::new(ACCOUNTS, "seed");
        write_once(&endpoint, &seeds, 0)
            .await
            .expect("seeding an account");
        let seed_id = seeds.live().into_keys().next().unwrap();
        let by_id = format!("/api/v2/accounts/{seed_id}");

        let ledgers = [
            Ledger::new(ACCOUNTS, "killacct"),
            Ledger::new(LEADS, "killlead"),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(&endpoint, &ledgers, &by_id, 3, 2, &stop);
        sleep(Duration::from_millis(400)).await;

        // The killer: its own connection to the test database.
        let database = aishacrm::db::database_name(&app.database.url).unwrap();
        let mut killer = connect(&app.database.url).await;
        let kill = format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        );
        let kills_started = Instant::now();
        let mut terminated = Vec::new();
        while kills_started.elapsed() < Duration::from_secs(3) {
            let n = within(
                Duration::from_secs(5),
                "pg_terminate_backend",
                scalar(&mut killer, &kill),
            )
            .await
            .expect("terminating backends");
            terminated.push(n);
            sleep(Duration::from_millis(200)).await;
        }
        let kills_ended = Instant::now();

        // Recovery: a probe reads fresh and writes until both succeed.
        let probe = endpoint.named("probe");
        let probe_ledger = Ledger::new(ACCOUNTS, "probe");
        let recovered = within(Duration::from_secs(15), "recovery", async {
            let mut turn = 0;
            loop {
                let read = probe.get("/api/v2/accounts/count", true).await;
                let wrote = write_once(&probe, &probe_ledger, turn * 6).await;
                turn += 1;
                if read.status == Some(200) && wrote.is_some() {
                    return kills_ended.elapsed();
                }
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        // Load goes on for a while after the kills.
        if let Some(left) = Duration::from_millis(3_500).checked_sub(kills_ended.elapsed()) {
            sleep(left).await;
        }
        stop.store(true, Ordering::SeqCst);
        join_all(tasks).await;

        let calls = snapshot(&journal);
        let during: Vec<Call> = calls
            .iter()
            .filter(|c| c.started >= kills_started && c.started < kills_ended)
            .cloned()
            .collect();
        let settled: Vec<Call> = calls
            .iter()
            .filter(|c| c.started >= kills_ended + Duration::from_secs(2))
            .cloned()
            .collect();
        eprintln!(
            "backends terminated per round: {terminated:?}\n\
             calls: {} in all ({}), {} during the kills ({}), {} from 2 s after ({}); \
             slowest {:?}; recovered {recovered:?} after the last kill",
            calls.len(),
            tally(&calls),
            during.len(),
            tally(&during),
            settled.len(),
            tally(&settled),
            slowest(&calls)
        );
        let killed: i64 = terminated.iter().sum();
        assert!(
            killed >= 5,
            "the killer terminated only {killed} backends: {terminated:?}"
        );
        assert_answers_bounded(&calls, origin, "backends terminated under load");
        assert!(
            recovered <= Duration::from_secs(2),
            "the pool took {recovered:?} after the last kill to serve a read and a write"
        );
        let failing: Vec<&Call> = settled.iter().filter(|c| !c.is_2xx()).collect();
        assert!(
            failing.is_empty() && settled.len() >= 20,
            "{} of {} requests started 2 s after the last kill failed:\n  {}",
            failing.len(),
            settled.len(),
            listing(&failing, origin)
        );
        let acked_during = calls
            .iter()
            .filter(|c| c.started >= kills_started && c.started < kills_ended)
            .filter(|c| c.what.starts_with("POST") || c.what.starts_with("PATCH"))
            .filter(|c| c.is_2xx())
            .count();
        assert!(
            acked_during >= 5,
            "too few writes acknowledged during the kills"
        );

        let mut all = vec![&seeds, &probe_ledger];
        all.extend(ledgers.iter());
        let summary = verify_ledgers(&app.database.url, tenant, &all).await;
        eprintln!("ledgers:\n  {summary}");
    })
    .await;
}

// =============================================================================================
// 2. A PostgreSQL server of the test's own, restarted under load.

async fn blocking<T: Send + 'static>(
    what: &str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    within(limit, what, tokio::task::spawn_blocking(work))
        .await
        .unwrap_or_else(|_| panic!("{what} panicked"))
}

/// Polls with a fresh read and a write until both succeed; returns how long it took.
async fn time_until_serving(probe: &Endpoint, ledger: &Ledger, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut turn = 0;
    loop {
        let read = probe.get("/api/v2/accounts/count", true).await;
        let wrote = if read.status == Some(200) {
            write_once(probe, ledger, turn * 6).await.is_some()
        } else {
            false
        };
        turn += 1;
        if wrote {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the service did not serve a read and a write within {limit:?} of PostgreSQL's \
             return (last read: {:?} {})",
            read.status,
            read.body
        );
        sleep(Duration::from_millis(25)).await;
    }
}

/// An instance on a PostgreSQL server of the test's own, which is stopped (fast, then
/// immediate) mid-load and started again about a second later: requests answer 2xx or 503
/// within bounds, the pool recovers without a restart, every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_restarted_under_load() {
    within(TEST_LIMIT, "the test", async {
        let server = blocking("initdb", Duration::from_secs(60), PostgresServer::init).await;
        let server = Arc::new(server);
        let started = server.clone();
        blocking("pg_ctl start", Duration::from_secs(40), move || {
            started.start()
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        let url = server.url("aishacrm_reliability");
        let prepare_url = url.clone();
        blocking("prepare", Duration::from_secs(30), move || {
            aishacrm::db::prepare(&prepare_url).map_err(|error| error.to_string())
        })
        .await
        .expect("creating and migrating the database");

        let mut config = test_config(&url);
        config.db_pool_size = 4;
        // One tenant's load on 4 connections: its share (1 of them) would answer 429
        // whenever a killed connection is being replaced (tests/faults/fairness.rs covers
        // the share).
        config.tenant_max_db_share = 1.0;
        config.db_acquire_timeout_ms = ACQUIRE_MS;
        config.db_statement_timeout_ms = STATEMENT_MS;
        let secret = config.jwt_secret.clone().unwrap().0;
        let application = Application::build(config)
            .await
            .expect("building the application");
        let handle = application.handle();
        let base = format!("http://127.0.0.1:{}", application.port());
        tokio::spawn(application.run_until_stopped());

        let tenant = Uuid::new_v4();
        let journal = new_journal();
        let endpoint = Endpoint::new("app", &base, mint(&secret, tenant), &journal);
        let origin = Instant::now();
        let seeds = Ledger::new(ACCOUNTS, "seed");
        write_once(&endpoint, &seeds, 0)
            .await
            .expect("seeding an account");
        let by_id = format!(
            "/api/v2/accounts/{}",
            seeds.live().into_keys().next().unwrap()
        );
        let ledgers = [
            Ledger::new(ACCOUNTS, "restartacct"),
            Ledger::new(LEADS, "restartlead"),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(&endpoint, &ledgers, &by_id, 2, 3, &stop);

        let probe = endpoint.named("probe");
        let probe_ledger = Ledger::new(ACCOUNTS, "probe");
        let mut report = Vec::new();
        sleep(Duration::from_millis(600)).await;
        for mode in ["fast", "immediate"] {
            let stopping = Instant::now();
            let stopper = server.clone();
            blocking("pg_ctl stop", Duration::from_secs(40), move || {
                stopper.stop(mode)
            })
            .await
            .unwrap_or_else(|error| panic!("{error}"));
            let stopped = Instant::now();
            sleep(Duration::from_secs(1)).await;
            let starter = server.clone();
            blocking("pg_ctl start", Duration::from_secs(40), move || {
                starter.start()
            })
            .await
            .unwrap_or_else(|error| panic!("{error}"));
            let up = Instant::now();
            let recovered = time_until_serving(&probe, &probe_ledger, Duration::from_secs(5)).await;
            let acked_at_recovery: Vec<u64> = ledgers.iter().map(|l| l.acked()).collect();
            sleep(Duration::from_millis(600)).await;
            let acked_since: Vec<u64> = ledgers
                .iter()
                .zip(&acked_at_recovery)
                .map(|(ledger, before)| ledger.acked() - before)
                .collect();
            report.push(format!(
                "stop -m {mode}: took {:?}, down {:?}; the service served a read and a write \
                 {recovered:?} after PostgreSQL was up again; the writers had {acked_since:?} \
                 writes acknowledged in the 600 ms after",
                stopped - stopping,
                up - stopped
            ));
            assert!(
                acked_since.iter().all(|n| *n >= 5),
                "the writers did not recover after stop -m {mode}: {acked_since:?} writes \
                 acknowledged in the 600 ms after recovery"
            );
        }
        stop.store(true, Ordering::SeqCst);
        join_all(tasks).await;

        let calls = snapshot(&journal);
        eprintln!(
            "{}\ncalls: {} ({}), slowest {:?}",
            report.join("\n"),
            calls.len(),
            tally(&calls),
            slowest(&calls)
        );
        assert_answers_bounded(&calls, origin, "PostgreSQL restarted under load");
        for ledger in &ledgers {
            assert!(
                ledger.acked() >= 10,
                "{} acknowledged too little",
                ledger.label
            );
        }
        let mut all = vec![&seeds, &probe_ledger];
        all.extend(ledgers.iter());
        let summary = verify_ledgers(&url, tenant, &all).await;
        eprintln!("ledgers:\n  {summary}");
        let _ = timeout(Duration::from_secs(5), handle.stop(false)).await;
        if std::env::var("RELIABILITY_PG_LOG").is_ok() {
            eprintln!("{}", server.log());
        }
    })
    .await;
}

// =============================================================================================
// 3. One replica SIGKILLed under mixed load while another keeps serving.

/// After an acknowledged write of `ledger` on `endpoint`: the cached count and list of the
/// writer's records (by its `q`) show exactly the acknowledged state. Returns what is wrong.
async fn own_view_problem(endpoint: &Endpoint, ledger: &Ledger, ack: &Ack) -> Option<String> {
    let module = ledger.kind.module;
    let q = ledger.query();
    let count = endpoint
        .get(&format!("/api/v2/{module}/count?q={q}"), false)
        .await;
    let list = endpoint
        .get(&format!("/api/v2/{module}?q={q}&limit=200"), false)
        .await;
    if count.status != Some(200) || list.status != Some(200) {
        return Some(format!(
            "after {} {}: count answered {:?}, list {:?}",
            ack.op, ack.id, count.status, list.status
        ));
    }
    if ledger.in_doubt() {
        return None;
    }
    let live = ledger.live();
    let listed: HashMap<String, Value> = list.body["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| (row["id"].as_str().unwrap_or("").to_owned(), row.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut wrong = Vec::new();
    if count.body["count"] != json!(live.len()) {
        wrong.push(format!(
            "count {} (X-Cache {}) but {} are acknowledged",
            count.body["count"],
            count.cache,
            live.len()
        ));
    }
    if listed != live {
        let missing = live.keys().filter(|id| !listed.contains_key(*id)).count();
        let extra = listed.keys().filter(|id| !live.contains_key(*id)).count();
        let changed = live
            .iter()
            .filter(|(id, body)| listed.get(*id).is_some_and(|row| row != *body))
            .count();
        wrong.push(format!(
            "list (X-Cache {}) has {missing} acknowledged records missing, {extra} extra, \
             {changed} with other values",
            list.cache
        ));
    }
    let target = listed.get(&ack.id);
    let shown = match ack.op {
        "delete" => target.is_none(),
        _ => target.is_some() && target == live.get(&ack.id),
    };
    if !shown {
        wrong.push(format!("the {} of {} is not in the list", ack.op, ack.id));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{} {module}, right after its acknowledged {} of {}: {}",
            endpoint.name,
            ack.op,
            ack.id,
            wrong.join("; ")
        )
    })
}

/// The survivor: writes, and after each acknowledged write checks its own cached view; once
/// `compare_db` is set (the victim is dead), also that its cached total count and list equal
/// PostgreSQL.
async fn survivor_loop(
    endpoint: Endpoint,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    compare_db: Arc<AtomicBool>,
    url: String,
    tenant: Uuid,
) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut compared = 0;
    let mut conn = connect(&url).await;
    let mut turn = 0;
    while !stop.load(Ordering::SeqCst) {
        if let Some(ack) = write_once(&endpoint, &ledger, turn).await {
            if let Some(problem) = own_view_problem(&endpoint, &ledger, &ack).await {
                problems.push(problem);
            }
            if compare_db.load(Ordering::SeqCst) {
                let count = endpoint.get("/api/v2/accounts/count", false).await;
                let list = endpoint.get("/api/v2/accounts?limit=200", false).await;
                let truth = count_rows(&mut conn, "accounts", tenant).await;
                let rows = rows_of(&mut conn, ACCOUNTS, tenant).await;
                compared += 1;
                if count.body["count"] != json!(truth) {
                    problems.push(format!(
                        "after the kill, right after its {} of {}: cached accounts count {} \
                         (X-Cache {}) but PostgreSQL holds {truth}",
                        ack.op, ack.id, count.body["count"], count.cache
                    ));
                }
                let listed: HashMap<String, Value> = list.body["data"]
                    .as_array()
                    .map(|data| {
                        data.iter()
                            .map(|row| (row["id"].as_str().unwrap_or("").to_owned(), row.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                if listed != rows {
                    problems.push(format!(
                        "after the kill, right after its {} of {}: cached accounts list \
                         (X-Cache {}, {} rows) differs from PostgreSQL ({} rows)",
                        ack.op,
                        ack.id,
                        list.cache,
                        listed.len(),
                        rows.len()
                    ));
                }
            }
        }
        turn += 1;
        sleep(Duration::from_millis(10)).await;
    }
    (problems, compared)
}

/// Two real binaries on one database and one Redis with mixed reads and writes; one is
/// SIGKILLed. The survivor answers every request correctly and freshly (its cached count and
/// list show each of its acknowledged writes at once, and equal PostgreSQL after the kill), and
/// every write acknowledged by either (the victim's before the kill) is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sigkilled_under_load_while_the_other_serves() {
    within(TEST_LIMIT, "the test", async {
        let database = TestDatabase::create().await;
        let redis_keys = RedisPrefix::fresh();
        let prefix = redis_keys.prefix.clone();
        let secret = format!("secret-{}", Uuid::new_v4());
        let env = vec![
            ("DATABASE_URL", database.url.clone()),
            ("REDIS_URL", redis_url()),
            ("CACHE_KEY_PREFIX", prefix.clone()),
            ("JWT_SECRET", secret.clone()),
            ("DB_POOL_SIZE", "4".to_owned()),
            // One tenant's load on 4 connections: its share (1 of them) answers 429 whenever a
            // commit stalls past 250 ms, as this machine's disk does at times
            // (tests/faults/fairness.rs covers the share).
            ("TENANT_MAX_DB_SHARE", "1".to_owned()),
        ];
        let survivor = start_binary(env.clone(), true).await;
        let mut victim = start_binary(env, true).await;
        let tenant = Uuid::new_v4();
        let token = mint(&secret, tenant);
        let journal = new_journal();
        let survivor_ep = Endpoint::new("survivor", &survivor.address, token.clone(), &journal);
        let victim_journal = new_journal();
        let victim_ep = Endpoint::new("victim", &victim.address, token, &victim_journal);
        let origin = Instant::now();

        let survivor_accounts = Ledger::new(ACCOUNTS, "surv");
        let survivor_leads = Ledger::new(LEADS, "surv");
        let victim_accounts = Ledger::new(ACCOUNTS, "vict");
        let victim_leads = Ledger::new(LEADS, "vict");
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let compare_db = Arc::new(AtomicBool::new(false));
        let reads: Vec<(String, bool)> = [
            "/api/v2/accounts/count",
            "/api/v2/accounts?limit=50",
            "/api/v2/leads/count",
            "/api/v2/leads",
            "/api/v2/dashboard/bundle",
            "/api/v2/opportunities/stats",
            "/api/v2/accounts?q=vict-",
        ]
        .iter()
        .map(|path| (path.to_string(), false))
        .collect();

        let survivor_task = tokio::spawn(survivor_loop(
            survivor_ep.named("survivor-writer"),
            survivor_accounts.clone(),
            stop.clone(),
            compare_db.clone(),
            database.url.clone(),
            tenant,
        ));
        let tasks = vec![
            spawn_writer(
                survivor_ep.named("survivor-leads"),
                survivor_leads.clone(),
                stop.clone(),
                Duration::from_millis(20),
            ),
            spawn_reader(
                survivor_ep.named("survivor-reader"),
                reads.clone(),
                stop.clone(),
                Duration::from_millis(5),
            ),
        ];
        // The victim's load stops when it is killed.
        let mut victim_tasks = Vec::new();
        for (ledger, name) in [
            (&victim_accounts, "victim-accounts"),
            (&victim_leads, "victim-leads"),
        ] {
            victim_tasks.push(spawn_writer(
                victim_ep.named(name),
                (*ledger).clone(),
                killed.clone(),
                Duration::from_millis(10),
            ));
        }
        victim_tasks.push(spawn_reader(
            victim_ep.named("victim-reader"),
            reads,
            killed.clone(),
            Duration::from_millis(5),
        ));

        sleep(Duration::from_millis(1_500)).await;
        let victim_pid = victim.pid();
        killed.store(true, Ordering::SeqCst);
        let killed_at = Instant::now();
        victim.child.kill().expect("SIGKILL to the victim");
        let status = victim.child.wait().expect("reaping the victim");
        join_all(victim_tasks).await;
        // Writes the victim had in flight are settled (committed or rolled back) by now.
        sleep(Duration::from_millis(250)).await;
        compare_db.store(true, Ordering::SeqCst);
        sleep(Duration::from_millis(2_000)).await;
        stop.store(true, Ordering::SeqCst);
        join_all(tasks).await;
        let (problems, compared) = within(Duration::from_secs(30), "the survivor", survivor_task)
            .await
            .expect("the survivor's writer panicked");

        // Final: the survivor's cached answers equal PostgreSQL.
        let mut conn = connect(&database.url).await;
        let mut final_problems = Vec::new();
        for kind in [ACCOUNTS, LEADS] {
            let module = kind.module;
            let truth = count_rows(&mut conn, module, tenant).await;
            let count = survivor_ep
                .get(&format!("/api/v2/{module}/count"), false)
                .await;
            if count.body["count"] != json!(truth) {
                final_problems.push(format!(
                    "survivor {module} count {} (X-Cache {}) but PostgreSQL holds {truth}",
                    count.body["count"], count.cache
                ));
            }
            let bundle = survivor_ep.get("/api/v2/dashboard/bundle", false).await;
            if bundle.body["counts"][module] != json!(truth) {
                final_problems.push(format!(
                    "survivor bundle {module} count {} (X-Cache {}) but PostgreSQL holds {truth}",
                    bundle.body["counts"][module], bundle.cache
                ));
            }
        }

        let calls = snapshot(&journal);
        let victim_calls = snapshot(&victim_journal);
        let before_kill: Vec<&Call> = victim_calls
            .iter()
            .filter(|c| c.started + c.elapsed < killed_at && !c.is_2xx())
            .collect();
        let survivor_after: Vec<&Call> = calls.iter().filter(|c| c.started >= killed_at).collect();
        eprintln!(
            "victim pid {victim_pid} SIGKILLed ({status}); survivor: {} calls ({}), {} after the \
             kill, slowest {:?}; victim: {} calls ({}); {compared} database comparisons after \
             the kill",
            calls.len(),
            tally(&calls),
            survivor_after.len(),
            slowest(&calls),
            victim_calls.len(),
            tally(&victim_calls)
        );
        let bad: Vec<&Call> = calls.iter().filter(|c| !c.is_2xx()).collect();
        assert!(
            bad.is_empty(),
            "the survivor failed {} requests:\n  {}",
            bad.len(),
            listing(&bad, origin)
        );
        assert!(
            before_kill.is_empty(),
            "the victim failed {} requests before it was killed:\n  {}",
            before_kill.len(),
            listing(&before_kill, origin)
        );
        assert!(
            problems.is_empty() && final_problems.is_empty(),
            "the survivor's answers were stale or wrong:\n  {}",
            problems
                .iter()
                .chain(&final_problems)
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
        assert!(
            compared >= 5 && survivor_after.len() >= 50,
            "too little survivor traffic after the kill ({compared} comparisons)"
        );
        assert!(
            victim_accounts.acked() >= 5 && victim_leads.acked() >= 5,
            "the victim acknowledged too little before the kill"
        );
        let summary = verify_ledgers(
            &database.url,
            tenant,
            &[
                &survivor_accounts,
                &survivor_leads,
                &victim_accounts,
                &victim_leads,
            ],
        )
        .await;
        eprintln!("ledgers:\n  {summary}");
        drop(survivor);
    })
    .await;
}

// =============================================================================================
// 4. Redis killed and restarted under mixed load.

/// Every cached route of the tests, including the writers' own filtered lists and counts.
fn cached_routes(labels: &[&str]) -> Vec<String> {
    let mut routes = Vec::new();
    for module in MODULES {
        routes.push(format!("/api/v2/{module}"));
        routes.push(format!("/api/v2/{module}?limit=200"));
        routes.push(format!("/api/v2/{module}/count"));
    }
    for label in labels {
        for module in ["accounts", "leads"] {
            routes.push(format!("/api/v2/{module}?q={label}-&limit=200"));
            routes.push(format!("/api/v2/{module}/count?q={label}-"));
        }
    }
    routes.push("/api/v2/opportunities/stats".into());
    routes.push("/api/v2/dashboard/bundle".into());
    routes
}

/// A body without the parts that differ between two reads of the same data.
fn comparable(mut body: Value) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.remove("generated_at");
    }
    body
}

/// Two replicas on a test-owned redis-server with writers and readers on both; Redis is
/// killed, traffic goes on for a second, Redis returns on the same port. No client ever sees a
/// 5xx; after both report Redis up and a short settle, every cached route on both instances
/// equals a fresh read (and PostgreSQL); every acknowledged write is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_mixed_load() {
    within(TEST_LIMIT, "the test", async {
        let mut redis = RedisServer::start().await;
        let apps = spawn_replicas_on(2, &redis.url(), |config| {
            config.cache_degraded_l1_ttl_secs = 1;
            config.db_pool_size = 4;
            // One tenant's load on 4 connections: its share (1 of them) would answer 429
            // whenever a killed connection is being replaced (tests/faults/fairness.rs covers
            // the share).
            config.tenant_max_db_share = 1.0;
        })
        .await;
        let (a, b) = (&apps[0], &apps[1]);
        let tenant = Uuid::new_v4();
        let journal = new_journal();
        let ep_a = Endpoint::new("A", &a.address, a.token(tenant), &journal);
        let ep_b = Endpoint::new("B", &b.address, b.token(tenant), &journal);
        let origin = Instant::now();
        let labels = ["alpha", "beta"];
        let routes = cached_routes(&labels);
        let reads: Vec<(String, bool)> = routes.iter().map(|r| (r.clone(), false)).collect();

        let ledgers = [
            (Ledger::new(ACCOUNTS, "alpha"), &ep_a),
            (Ledger::new(LEADS, "alpha"), &ep_a),
            (Ledger::new(ACCOUNTS, "beta"), &ep_b),
            (Ledger::new(LEADS, "beta"), &ep_b),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut view_tasks = Vec::new();
        for (ledger, endpoint) in &ledgers {
            let endpoint = endpoint.named(&format!("{}-{}", endpoint.name, ledger.kind.module));
            let ledger = ledger.clone();
            let stop = stop.clone();
            // Writes, and checks read-your-writes on the writing instance after each.
            view_tasks.push(tokio::spawn(async move {
                let mut problems = Vec::new();
                let mut turn = 0;
                while !stop.load(Ordering::SeqCst) {
                    if let Some(ack) = write_once(&endpoint, &ledger, turn).await {
                        if let Some(problem) = own_view_problem(&endpoint, &ledger, &ack).await {
                            problems.push(problem);
                        }
                    }
                    turn += 1;
                    sleep(Duration::from_millis(15)).await;
                }
                problems
            }));
        }
        for (i, endpoint) in [&ep_a, &ep_b].into_iter().enumerate() {
            let mut mine = reads.clone();
            mine.rotate_left(i * 5);
            tasks.push(spawn_reader(
                endpoint.named(&format!("{}-reader", endpoint.name)),
                mine,
                stop.clone(),
                Duration::from_millis(3),
            ));
        }

        sleep(Duration::from_millis(1_000)).await;
        let killed_at = Instant::now();
        redis.kill();
        sleep(Duration::from_millis(1_000)).await;
        within(Duration::from_secs(15), "restarting redis", redis.restart()).await;
        let restarted_at = Instant::now();
        let mut recovery = Vec::new();
        for app in [a, b] {
            recovery.push(time_until_redis(app, "up", Duration::from_secs(10)).await);
        }
        // Traffic goes on a little after the recovery, then everything stops and settles.
        sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        join_all(tasks).await;
        let mut view_problems = Vec::new();
        for task in view_tasks {
            view_problems.extend(
                within(Duration::from_secs(30), "a writer", task)
                    .await
                    .expect("a writer panicked"),
            );
        }
        sleep(Duration::from_millis(300)).await;

        // Cached reads first (on both), then fresh ones: a fresh read stores what it read.
        let mut cached = Vec::new();
        for endpoint in [&ep_a, &ep_b] {
            for route in &routes {
                cached.push((
                    endpoint.name.clone(),
                    route.clone(),
                    endpoint.get(route, false).await,
                ));
            }
        }
        let mut fresh: HashMap<(String, String), Reply> = HashMap::new();
        for endpoint in [&ep_a, &ep_b] {
            for route in &routes {
                fresh.insert(
                    (endpoint.name.clone(), route.clone()),
                    endpoint.get(route, true).await,
                );
            }
        }
        let mut stale = Vec::new();
        for (name, route, answer) in &cached {
            let truth = &fresh[&(name.clone(), route.clone())];
            if answer.status != Some(200) || truth.status != Some(200) {
                stale.push(format!(
                    "{name} {route}: cached {:?}, fresh {:?}",
                    answer.status, truth.status
                ));
            } else if comparable(answer.body.clone()) != comparable(truth.body.clone()) {
                stale.push(format!(
                    "{name} {route}: cached (X-Cache {}) {} but fresh {}",
                    answer.cache,
                    answer
                        .body
                        .to_string()
                        .chars()
                        .take(300)
                        .collect::<String>(),
                    truth.body.to_string().chars().take(300).collect::<String>()
                ));
            }
        }
        let mut conn = connect(&a.database.url).await;
        for module in ["accounts", "leads"] {
            let truth = count_rows(&mut conn, module, tenant).await;
            for name in ["A", "B"] {
                let route = format!("/api/v2/{module}/count");
                let answer = &fresh[&(name.to_owned(), route.clone())];
                if answer.body["count"] != json!(truth) {
                    stale.push(format!(
                        "{name} {route}: fresh count {} but PostgreSQL holds {truth}",
                        answer.body["count"]
                    ));
                }
            }
        }

        let calls = snapshot(&journal);
        let during: Vec<&Call> = calls
            .iter()
            .filter(|c| c.started >= killed_at && c.started < restarted_at)
            .collect();
        let hits = calls.iter().filter(|c| c.cache == "HIT").count();
        eprintln!(
            "redis down {:?}; both up {:?} after its restart; calls: {} ({}), {} while Redis \
             was down, {hits} hits, slowest {:?}",
            restarted_at - killed_at,
            recovery,
            calls.len(),
            tally(&calls),
            during.len(),
            slowest(&calls)
        );
        let bad: Vec<&Call> = calls.iter().filter(|c| !c.is_2xx()).collect();
        assert!(
            bad.is_empty(),
            "{} requests failed (5xx or transport errors) around the Redis restart:\n  {}",
            bad.len(),
            listing(&bad, origin)
        );
        assert!(
            view_problems.is_empty(),
            "read-your-writes broke on the writing instance:\n  {}",
            view_problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
        assert!(
            stale.is_empty(),
            "{} of {} cached answers were stale after Redis returned:\n  {}",
            stale.len(),
            cached.len(),
            stale
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
        assert!(
            during.len() >= 50 && hits > 0,
            "too little traffic to prove anything"
        );
        let all: Vec<&Arc<Ledger>> = ledgers.iter().map(|(ledger, _)| ledger).collect();
        for ledger in &all {
            assert!(
                ledger.acked() >= 10,
                "{} acknowledged too little",
                ledger.label
            );
        }
        let summary = verify_ledgers(&a.database.url, tenant, &all).await;
        eprintln!("ledgers:\n  {summary}");
    })
    .await;
}

// =============================================================================================
// 5. SIGTERM with requests in flight.

/// The real binary with SHUTDOWN_GRACE_SECS=5 and six requests held in flight by a table lock:
/// on SIGTERM it stops accepting at once, lets them finish (200/201) once the lock is released,
/// and exits within the grace period; the acknowledged POST is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_refuses_new_ones() {
    within(TEST_LIMIT, "the test", async {
        const GRACE: Duration = Duration::from_secs(5);
        let database = TestDatabase::create().await;
        let secret = format!("secret-{}", Uuid::new_v4());
        let mut server = start_binary(
            vec![
                ("DATABASE_URL", database.url.clone()),
                ("REDIS_URL", "none".to_owned()),
                ("JWT_SECRET", secret.clone()),
                ("SHUTDOWN_GRACE_SECS", GRACE.as_secs().to_string()),
                ("DB_POOL_SIZE", "10".to_owned()),
                ("DB_STATEMENT_TIMEOUT_MS", "10000".to_owned()),
                // Six requests of one tenant held at once: no share limit (fairness.rs has it).
                ("TENANT_MAX_DB_SHARE", "1".to_owned()),
            ],
            false,
        )
        .await;
        let tenant = Uuid::new_v4();
        let journal = new_journal();
        let endpoint = Endpoint::new("server", &server.address, mint(&secret, tenant), &journal);
        let origin = Instant::now();
        let ledger = Ledger::new(ACCOUNTS, "term");
        for turn in 0..3 {
            write_once(&endpoint, &ledger, turn * 6)
                .await
                .expect("seeding accounts");
        }

        // Hold every reader and writer of accounts.
        let mut locker = connect(&database.url).await;
        locker
            .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("locking accounts");
        let mut in_flight = Vec::new();
        for i in 1..=5 {
            let endpoint = endpoint.named(&format!("get{i}"));
            in_flight.push(tokio::spawn(async move {
                let reply = endpoint
                    .get(&format!("/api/v2/accounts?limit={i}"), true)
                    .await;
                ("GET", reply)
            }));
        }
        let post_ledger = Ledger::new(ACCOUNTS, "inflight");
        {
            let endpoint = endpoint.named("post");
            let ledger = post_ledger.clone();
            in_flight.push(tokio::spawn(async move {
                write_once(&endpoint, &ledger, 0).await;
                let state = ledger.state.lock().unwrap();
                let status = if state.acked == 1 { Some(201) } else { None };
                drop(state);
                (
                    "POST",
                    Reply {
                        status,
                        cache: String::new(),
                        body: Value::Null,
                    },
                )
            }));
        }
        // Wait until all six wait on the lock inside PostgreSQL.
        let mut watcher = connect(&database.url).await;
        let waiting_sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = \
                           current_database() AND wait_event_type = 'Lock'";
        let waiting = within(
            Duration::from_secs(10),
            "six requests waiting on the lock",
            async {
                loop {
                    let n = scalar(&mut watcher, waiting_sql)
                        .await
                        .expect("pg_stat_activity");
                    if n >= 6 {
                        return n;
                    }
                    sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;

        let pid = server.pid();
        let port = server.port();
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(kill.success(), "kill -TERM {pid}: {kill}");
        let signalled = Instant::now();

        // New connections are refused; the lock is released 500 ms after the signal.
        let refusal = async {
            loop {
                let attempt = timeout(
                    Duration::from_millis(300),
                    TcpStream::connect(("127.0.0.1", port)),
                )
                .await;
                if let Ok(Err(_)) = attempt {
                    return Some(signalled.elapsed());
                }
                if signalled.elapsed() > Duration::from_secs(2) {
                    return None;
                }
                sleep(Duration::from_millis(25)).await;
            }
        };
        let release = async {
            sleep(Duration::from_millis(500)).await;
            locker
                .batch_execute("COMMIT")
                .await
                .expect("releasing the lock");
            signalled.elapsed()
        };
        let (refused_after, released_after) = tokio::join!(refusal, release);

        let mut answers = Vec::new();
        for task in in_flight {
            let (what, reply) = within(Duration::from_secs(15), "an in-flight request", task)
                .await
                .expect("an in-flight request panicked");
            answers.push((what, reply.status, signalled.elapsed()));
        }
        let exited = within(
            GRACE + Duration::from_secs(5),
            "the process to exit",
            async {
                loop {
                    if let Some(status) = server.child.try_wait().expect("waiting for the server") {
                        return (status, signalled.elapsed());
                    }
                    sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        let log_tail: Vec<String> = server.drain().iter().rev().take(8).rev().cloned().collect();
        let calls = snapshot(&journal);
        eprintln!(
            "{waiting} requests waited on the lock; SIGTERM to {pid}; new connections refused \
             after {refused_after:?}; lock released after {released_after:?}; in flight: \
             {answers:?}; exited with {} after {:?}\ncalls:\n  {}\nlast log lines:\n  {}",
            exited.0,
            exited.1,
            listing(&calls.iter().collect::<Vec<_>>(), origin),
            log_tail.join("\n  ")
        );
        for (what, status, _) in &answers {
            let expected = if *what == "POST" { 201 } else { 200 };
            assert_eq!(
                *status,
                Some(expected),
                "an in-flight {what} did not complete after SIGTERM:\n  {}",
                listing(&calls.iter().collect::<Vec<_>>(), origin)
            );
        }
        assert!(
            refused_after.is_some_and(|after| after < Duration::from_secs(1)),
            "new connections were still accepted {refused_after:?} after SIGTERM"
        );
        assert!(
            exited.1 <= GRACE,
            "the process took {:?} to exit after SIGTERM (grace {GRACE:?})",
            exited.1
        );
        assert!(
            exited.0.success(),
            "the process exited with {} after SIGTERM",
            exited.0
        );
        let summary = verify_ledgers(&database.url, tenant, &[&ledger, &post_ledger]).await;
        assert_eq!(post_ledger.acked(), 1);
        eprintln!("ledgers:\n  {summary}");
    })
    .await;
}

// =============================================================================================
// 6. Slow clients.

/// Reads from `stream` until the server closes it (EOF or reset) or `limit` passes (measured
/// from `since`). Returns what was read and when it closed (None: still open).
async fn until_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = match limit.checked_sub(since.elapsed()) {
            Some(left) => left,
            None => return (data, None),
        };
        match timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return (data, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (data, Some(since.elapsed())),
            Ok(Ok(n)) => data.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Whether what a closed slow connection received is nothing or a 408.
fn nothing_or_408(data: &[u8]) -> bool {
    data.is_empty() || data.starts_with(b"HTTP/1.1 408")
}

/// A client that sends `sent` and stalls.
async fn stalled_client(
    address: String,
    sent: Vec<u8>,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let since = Instant::now();
    let mut stream = TcpStream::connect(&address).await.expect("connecting");
    if !sent.is_empty() {
        stream
            .write_all(&sent)
            .await
            .expect("sending part of a head");
    }
    until_closed(&mut stream, since, limit).await
}

/// A client that sends one byte of `head` every `every`, never finishing it.
async fn trickling_client(
    address: String,
    head: Vec<u8>,
    every: Duration,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>, usize) {
    let since = Instant::now();
    let mut stream = TcpStream::connect(&address).await.expect("connecting");
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut sent = 0;
    loop {
        if since.elapsed() > limit {
            return (data, None, sent);
        }
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return (data, Some(since.elapsed()), sent),
                Ok(n) => data.extend_from_slice(&buffer[..n]),
            },
            _ = sleep(every) => {
                // Never the last byte: the head stays incomplete.
                if sent + 1 < head.len() {
                    if stream.write_all(&head[sent..=sent]).await.is_err() {
                        return (data, Some(since.elapsed()), sent);
                    }
                    sent += 1;
                }
            }
        }
    }
}

/// With HTTP_CLIENT_TIMEOUT_MS=500, connections that send part of a request head (or nothing,
/// or trickle it byte by byte) are closed (or answered 408) within 2 s, an idle keep-alive
/// connection is closed after HTTP_KEEP_ALIVE_SECS, and normal requests on other connections
/// keep being answered promptly all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    within(TEST_LIMIT, "the test", async {
        let app = spawn_app_with(|config| {
            config.http_client_timeout_ms = 500;
            config.http_keep_alive_secs = 1;
        })
        .await;
        let tenant = Uuid::new_v4();
        let token = app.token(tenant);
        let journal = new_journal();
        let endpoint = Endpoint::new("normal", &app.address, token.clone(), &journal);
        let origin = Instant::now();
        let ledger = Ledger::new(ACCOUNTS, "slow");
        write_once(&endpoint, &ledger, 0).await.expect("an account");
        let address = app.address.trim_start_matches("http://").to_owned();

        let stop = Arc::new(AtomicBool::new(false));
        let normal = spawn_reader(
            endpoint.named("normal"),
            vec![
                ("/api/v2/accounts/count".into(), false),
                ("/api/v2/accounts".into(), true),
                (
                    format!(
                        "/api/v2/accounts/{}",
                        ledger.live().into_keys().next().unwrap()
                    ),
                    false,
                ),
            ],
            stop.clone(),
            Duration::from_millis(20),
        );

        let partial = format!(
            "GET /api/v2/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        )
        .into_bytes();
        let limit = Duration::from_secs(4);
        let mut stalled = Vec::new();
        for i in 0..20 {
            let sent = match i % 3 {
                0 => partial.clone(),
                1 => b"GET /health/live HTT".to_vec(),
                _ => Vec::new(),
            };
            stalled.push(tokio::spawn(stalled_client(address.clone(), sent, limit)));
        }
        let trickle = tokio::spawn(trickling_client(
            address.clone(),
            partial.clone(),
            Duration::from_millis(150),
            limit,
        ));
        // Keep-alive: one complete request, then idle.
        let keep_alive = tokio::spawn({
            let address = address.clone();
            async move {
                let mut stream = TcpStream::connect(&address).await.expect("connecting");
                stream
                    .write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .await
                    .expect("sending a request");
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                // The answer ({"status":"ok"}, 15 bytes) ends the exchange.
                while !data.ends_with(b"}") {
                    match timeout(Duration::from_secs(2), stream.read(&mut buffer)).await {
                        Ok(Ok(n)) if n > 0 => data.extend_from_slice(&buffer[..n]),
                        _ => break,
                    }
                }
                let idle_since = Instant::now();
                let (_, closed) = until_closed(&mut stream, idle_since, limit).await;
                (data, closed)
            }
        });

        let mut outcomes = Vec::new();
        for task in stalled {
            outcomes.push(
                within(Duration::from_secs(10), "a stalled client", task)
                    .await
                    .unwrap(),
            );
        }
        let (trickled, trickle_closed, trickle_sent) =
            within(Duration::from_secs(10), "the trickling client", trickle)
                .await
                .unwrap();
        let (kept_answer, kept_closed) =
            within(Duration::from_secs(10), "the keep-alive client", keep_alive)
                .await
                .unwrap();
        sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::SeqCst);
        join_all(vec![normal]).await;

        let calls = snapshot(&journal);
        let closed: Vec<Option<Duration>> = outcomes.iter().map(|(_, closed)| *closed).collect();
        eprintln!(
            "stalled clients closed after {closed:?}; the trickling client (sent {trickle_sent} \
             bytes) after {trickle_closed:?}, receiving {:?}; idle keep-alive closed after \
             {kept_closed:?}; normal requests: {} ({}), slowest {:?}",
            String::from_utf8_lossy(&trickled),
            calls.len(),
            tally(&calls),
            slowest(&calls)
        );
        for (i, (data, closed)) in outcomes.iter().enumerate() {
            assert!(
                closed.is_some_and(|after| after <= Duration::from_secs(2)),
                "stalled client {i} was not cut off within 2 s: {closed:?}"
            );
            assert!(
                nothing_or_408(data),
                "stalled client {i} received {:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert!(
            trickle_closed.is_some_and(|after| after <= Duration::from_secs(2)),
            "a client trickling its head byte by byte was not cut off within 2 s \
             ({trickle_closed:?}, {trickle_sent} bytes sent)"
        );
        assert!(
            nothing_or_408(&trickled),
            "{:?}",
            String::from_utf8_lossy(&trickled)
        );
        assert!(
            kept_answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&kept_answer)
        );
        assert!(
            kept_closed.is_some_and(|after| after <= Duration::from_millis(2_500)),
            "an idle keep-alive connection stayed open {kept_closed:?} with \
             HTTP_KEEP_ALIVE_SECS=1"
        );
        let bad: Vec<&Call> = calls
            .iter()
            .filter(|c| !c.is_2xx() || c.elapsed > Duration::from_secs(1))
            .collect();
        assert!(
            bad.is_empty() && calls.len() >= 30,
            "normal requests suffered from the slow clients ({} calls):\n  {}",
            calls.len(),
            listing(&bad, origin)
        );
        let summary = verify_ledgers(&app.database.url, tenant, &[&ledger]).await;
        eprintln!("ledgers:\n  {summary}");
    })
    .await;
}

// =============================================================================================
// The checker itself.

/// The ledger check is not vacuous: it reports a lost, a changed, a resurrected and a phantom
/// record, and accepts either outcome of a write that was never answered.
#[test]
fn the_ledger_check_catches_lost_changed_and_phantom_writes() {
    let record = |id: &str, name: &str, number: i64| json!({"id": id, "name": name, "employee_count": number, "created_at": "2026-01-01T00:00:00Z"});
    let (one, two, three) = (
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
    );
    let ledger = Ledger::new(ACCOUNTS, "check");
    ledger.track(record(&one, "check-1", 1));
    ledger.track(record(&two, "check-2", 2));
    ledger.settle(&two, None);
    ledger.track(record(&three, "check-3", 3));
    ledger.doubt(
        &three,
        Doubt::Update {
            name: "check-3-u9".into(),
            number: 9,
        },
    );
    ledger.doubt_create("check-4".into(), 4);
    let rows = |entries: Vec<Value>| -> HashMap<String, Value> {
        entries
            .into_iter()
            .map(|row| (row["id"].as_str().unwrap().to_owned(), row))
            .collect()
    };
    let exact = rows(vec![
        record(&one, "check-1", 1),
        record(&three, "check-3", 3),
    ]);
    assert_eq!(ledger.verify(&exact).0, Vec::<String>::new());
    let updated_and_created = rows(vec![
        record(&one, "check-1", 1),
        record(&three, "check-3-u9", 9),
        record(&Uuid::new_v4().to_string(), "check-4", 4),
    ]);
    assert_eq!(ledger.verify(&updated_and_created).0, Vec::<String>::new());
    for (what, wrong) in [
        ("lost", rows(vec![record(&three, "check-3", 3)])),
        (
            "changed",
            rows(vec![
                record(&one, "check-1", 7),
                record(&three, "check-3", 3),
            ]),
        ),
        (
            "resurrected",
            rows(vec![
                record(&one, "check-1", 1),
                record(&two, "check-2", 2),
                record(&three, "check-3", 3),
            ]),
        ),
        (
            "doubtful update to a third value",
            rows(vec![
                record(&one, "check-1", 1),
                record(&three, "check-3-u8", 8),
            ]),
        ),
        (
            "phantom",
            rows(vec![
                record(&one, "check-1", 1),
                record(&three, "check-3", 3),
                record(&Uuid::new_v4().to_string(), "check-5", 5),
            ]),
        ),
    ] {
        assert_eq!(
            ledger.verify(&wrong).0.len(),
            1,
            "a {what} record went unnoticed"
        );
    }
}

/// A client that stops sending its body gets a 400 once `HTTP_BODY_TIMEOUT_MS` passes, instead of
/// holding its connection open forever, and nothing is written.
#[tokio::test]
async fn a_stalled_request_body_is_answered_and_writes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|config| config.http_body_timeout_ms = 500).await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v2/accounts HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": \"x"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("the server answered a stalled body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("invalid_json"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (_, count) = app.get_json("/api/v2/accounts/count", &token).await;
    assert_eq!(count["count"], 0);
}
