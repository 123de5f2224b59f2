//! `spawn_app()`: a fresh database (random name, dropped afterwards), the service on port 0, and
//! typed request helpers.

use std::sync::Arc;
use std::time::Duration;

use aishacrm::auth::{JwtKeys, Role};
use aishacrm::config::{Config, Secret};
use aishacrm::db;
use aishacrm::startup::Application;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use reqwest::{Method, Response};
use serde_json::Value;
use uuid::Uuid;

/// The server the test databases live on: `DATABASE_URL` if set (its database name is
/// replaced), else the local PostgreSQL.
pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test, dropped (with its sessions) when the guard drops.
pub struct TestDatabase {
    pub url: String,
}

impl TestDatabase {
    /// A clone of the migrated template: `CREATE DATABASE … TEMPLATE` copies files, far
    /// quicker than running every migration again for each test.
    pub async fn create() -> Self {
        let name = format!("aishacrm_test_{}", Uuid::new_v4().simple());
        let url = db::with_database(&base_database_url(), &name);
        let template = TEMPLATE.get_or_init(build_template).await;
        let mut conn = maintenance_connection().await;
        conn.batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .await
        .expect("cloning the template database");
        TestDatabase { url }
    }
}

/// The template of this process's test databases, once built or found.
static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

async fn maintenance_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&db::with_database(&base_database_url(), "postgres"))
        .await
        .expect("connecting to the maintenance database")
}

/// A digest of every migration file: a changed migration names a new template.
fn migrations_digest() -> String {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("reading migrations/")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut paths = Vec::new();
    files(&root, &mut paths);
    paths.sort();
    let mut context = md5::Context::new();
    for path in paths {
        let relative = path.strip_prefix(&root).unwrap_or(&path);
        context.consume(relative.to_string_lossy().as_bytes());
        context.consume(std::fs::read(&path).expect("reading a migration"));
    }
    format!("{:x}", context.finalize())
}

/// The migrated template, built once per migration set (as crates.io's test-db does): migrated
/// under a scratch name, then renamed, so that no test ever clones one still being migrated.
async fn build_template() -> String {
    let name = format!("aishacrm_template_{}", &migrations_digest()[..16]);
    let mut conn = maintenance_connection().await;
    // The name is hex digits: safe inside the statement.
    let probe = format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}') \
         THEN RAISE EXCEPTION 'absent'; END IF; END $$"
    );
    if conn.batch_execute(&probe).await.is_ok() {
        return name;
    }
    let scratch = format!("aishacrm_test_{}", Uuid::new_v4().simple());
    let scratch_url = db::with_database(&base_database_url(), &scratch);
    let migrate_url = scratch_url.clone();
    tokio::task::spawn_blocking(move || db::prepare(&migrate_url))
        .await
        .expect("migration task panicked")
        .expect("creating and migrating the template database");
    let rename = format!("ALTER DATABASE \"{scratch}\" RENAME TO \"{name}\"");
    let mut renamed = conn.batch_execute(&rename).await;
    // The migrating session may take a moment to end on the server.
    for _ in 0..50 {
        match &renamed {
            Err(error) if error.to_string().contains("being accessed") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                renamed = conn.batch_execute(&rename).await;
            }
            _ => break,
        }
    }
    if renamed.is_err() {
        // Another test binary built it meanwhile.
        let _ = tokio::task::spawn_blocking(move || db::drop_database(&scratch_url)).await;
    }
    name
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        // A plain thread: the blocking connection must not run on the test's async runtime.
        let dropped = std::thread::spawn(move || db::drop_database(&url)).join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.url);
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// The configuration it was started with (another replica can start from it).
    pub config: Config,
    pub client: reqwest::Client,
    pub keys: JwtKeys,
    pub secret: String,
    pub database: Arc<TestDatabase>,
    /// Deletes the instance's Redis keys when the last app of a test is gone (held for its Drop).
    pub _redis_keys: Option<Arc<RedisPrefix>>,
}

/// A test's Redis key prefix; its keys are deleted on drop (only those: Redis may be shared).
pub struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

/// A key prefix no other test uses; never the production one, since tests share the local Redis.
pub fn test_prefix() -> String {
    format!("aishacrm-test-{}", Uuid::new_v4().simple())
}

impl RedisPrefix {
    /// A fresh prefix on the shared Redis.
    pub fn fresh() -> Self {
        RedisPrefix {
            url: redis_url(),
            prefix: test_prefix(),
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}:*", self.prefix);
        let cleaned = std::thread::spawn(move || -> redis::RedisResult<()> {
            let client = redis::Client::open(url)?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
            let keys: Vec<String> = redis::Commands::scan_match::<_, String>(&mut conn, pattern)?
                .collect::<Result<_, _>>()?;
            for chunk in keys.chunks(500) {
                redis::cmd("UNLINK").arg(chunk).query::<()>(&mut conn)?;
            }
            Ok(())
        })
        .join();
        // A Redis that a fault test stopped has nothing left to clean.
        let _ = cleaned;
    }
}

/// The configuration every test app starts from.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::for_database(database_url);
    config.bind = "127.0.0.1:0".into();
    config.redis_url = "none".into();
    config.workers = 1;
    config.db_pool_size = 4;
    config.db_acquire_timeout_ms = 2_000;
    config.jwt_secret = Some(Secret(format!("test-secret-{}", Uuid::new_v4())));
    config.cache_key_prefix = test_prefix();
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the service on a fresh database after `customize` adjusted its configuration.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    let database = TestDatabase::create().await;
    let mut config = test_config(&database.url);
    customize(&mut config);
    start(config, database).await
}

/// Starts the service with `config` as given, keeping `database` alive as long as the app.
pub async fn start(config: Config, database: impl Into<Arc<TestDatabase>>) -> TestApp {
    let database = database.into();
    let app = Application::build(config.clone())
        .await
        .expect("building the application");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let secret = config
        .jwt_secret
        .as_ref()
        .map(|secret| secret.0.clone())
        .unwrap_or_default();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        config: config.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        keys: JwtKeys::new(secret.as_bytes()),
        secret,
        _redis_keys: config.redis_url().map(|url| {
            Arc::new(RedisPrefix {
                url: url.to_owned(),
                prefix: config.cache_key_prefix.clone(),
            })
        }),
        database,
    }
}

impl TestApp {
    /// One more instance like this one (same database, Redis, key prefix and JWT secret), started
    /// now; returns once its bus is connected (when it has Redis).
    pub async fn another_replica(&self) -> TestApp {
        let app = start(self.config.clone(), self.database.clone()).await;
        if self.config.redis_url().is_some() {
            app.wait_for_redis("up").await;
        }
        app
    }

    /// One more instance like this one whose Redis connections all go through `proxy`.
    pub async fn another_replica_behind(&self, proxy: &super::proxy::Proxy) -> TestApp {
        let mut config = self.config.clone();
        config.redis_url = format!("redis://127.0.0.1:{}/0", proxy.port);
        let app = start(config, self.database.clone()).await;
        app.wait_for_redis("up").await;
        app
    }

    /// `GET /api/v2/leads/count`: the count and how it was served (`"HIT L1"`, `"MISS "`, …).
    pub async fn leads_count(&self, token: &str) -> (i64, String) {
        let (cache, tier, body) = self.get_cached("/api/v2/leads/count", token).await;
        let count = body["count"]
            .as_i64()
            .unwrap_or_else(|| panic!("a count without a number: {body}"));
        (count, format!("{cache} {tier}"))
    }

    /// Reads the leads count until it is `expected`; how long that took (fails past `limit`).
    pub async fn until_leads_count(&self, token: &str, expected: i64, limit: Duration) -> Duration {
        let started = std::time::Instant::now();
        loop {
            let (seen, how) = self.leads_count(token).await;
            if seen == expected {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{} still answers {seen} ({how}) {limit:?} after the write",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An admin token for `tenant`.
    pub fn token(&self, tenant: Uuid) -> String {
        self.token_as(tenant, Role::Admin)
    }

    pub fn token_as(&self, tenant: Uuid, role: Role) -> String {
        self.keys
            .mint(tenant, role, "test", 3600)
            .expect("minting a token")
    }

    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.database.url)
            .await
            .expect("connecting to the test database")
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("sending the request")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a record and returns its JSON, failing the test unless the answer is 201.
    pub async fn create(&self, module: &str, token: &str, body: Value) -> Value {
        let response = self.post(&format!("/api/v2/{module}"), token, &body).await;
        let status = response.status().as_u16();
        let json: Value = response.json().await.expect("JSON body");
        assert_eq!(status, 201, "creating {module} with {body}: {json}");
        json
    }

    /// Waits (up to 10 s) until `/health/ready` reports Redis as `state`.
    pub async fn wait_for_redis(&self, state: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = self
                .client
                .get(format!("{}/health/ready", self.address))
                .send()
                .await;
            if let Ok(response) = response {
                if let Ok(body) = response.json::<Value>().await {
                    if body["redis"] == state {
                        return;
                    }
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis never became {state} on {}",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GETs `path` with extra headers.
    pub async fn get_with(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("sending the request")
    }

    /// GETs `path` and returns `X-Cache`, `X-Cache-Tier` and the JSON body.
    pub async fn get_cached(&self, path: &str, token: &str) -> (String, String, Value) {
        let response = self.get(path, token).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        let (cache, tier) = (
            header(&response, "x-cache"),
            header(&response, "x-cache-tier"),
        );
        let body = response.json().await.expect("JSON body");
        (cache, tier, body)
    }

    /// GETs `path` and returns status and JSON body (`Null` when empty).
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        into_json(self.get(path, token).await).await
    }
}

/// Status and JSON body of a response (`Null` when the body is empty).
pub async fn into_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("reading the body");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, json)
}

/// Asserts the contract's error shape, status and code; returns the message.
pub async fn assert_error(response: Response, status: u16, code: &str) -> String {
    let (actual, body) = into_json(response).await;
    assert_eq!(actual, status, "expected {status} {code}, got {body}");
    assert_eq!(body["error"]["code"], code, "wrong code in {body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without message: {body}"));
    assert!(!message.is_empty());
    message.to_owned()
}

/// A minimal valid create body for each entity.
pub fn minimal(module: &str) -> Value {
    match module {
        "accounts" => serde_json::json!({"name": "Acme"}),
        "contacts" | "leads" => serde_json::json!({"last_name": "Khan"}),
        "opportunities" => serde_json::json!({"name": "Renewal"}),
        "activities" => serde_json::json!({"type": "call", "subject": "Intro"}),
        other => panic!("unknown module {other}"),
    }
}

/// The shared Redis of the tests (`REDIS_URL`, else the local one).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// `n` instances of the service on one fresh database and one Redis, with one JWT secret and a
/// key prefix of their own (so tests never see each other's keys). Returns once every instance
/// has subscribed to the bus.
pub async fn spawn_replicas(n: usize, customize: impl Fn(&mut Config)) -> Vec<TestApp> {
    spawn_replicas_on(n, &redis_url(), customize).await
}

pub async fn spawn_replicas_on(
    n: usize,
    redis: &str,
    customize: impl Fn(&mut Config),
) -> Vec<TestApp> {
    let database = Arc::new(TestDatabase::create().await);
    let mut base = test_config(&database.url);
    base.redis_url = redis.to_owned();
    base.cache_key_prefix = test_prefix();
    let mut apps = Vec::new();
    for _ in 0..n {
        let mut config = base.clone();
        customize(&mut config);
        apps.push(start(config, database.clone()).await);
    }
    for app in &apps {
        app.wait_for_redis("up").await;
    }
    apps
}

pub const MODULES: [&str; 5] = [
    "accounts",
    "contacts",
    "leads",
    "opportunities",
    "activities",
];

/// A response header's text, or `""` when it is absent or not text.
pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `GET /health/ready`: status and body, or `(0, null)` when the instance does not answer
/// within 5 s (a fault test may have made it hang).
pub async fn ready(app: &TestApp) -> (u16, Value) {
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        app.client
            .get(format!("{}/health/ready", app.address))
            .send(),
    )
    .await;
    match response {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        _ => (0, Value::Null),
    }
}

/// Polls `/health/ready` every 10 ms until Redis is `state`; returns how long that took.
pub async fn time_until_redis(app: &TestApp, state: &str, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let (_, body) = ready(app).await;
        if body["redis"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} did not report redis {state} within {limit:?}: {body}",
            app.address
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Words that would mean an answer leaks SQL, driver or server internals.
pub const LEAKS: [&str; 22] = [
    "diesel",
    "select ",
    "insert into",
    "delete from",
    "update ",
    "constraint",
    "violates",
    "sqlstate",
    "postgres",
    "deadpool",
    "pool",
    "tokio",
    "connection refused",
    "os error",
    "127.0.0.1",
    "panicked",
    "backtrace",
    "src/",
    ".rs:",
    "_fk",
    "relation ",
    "syntax error",
];
