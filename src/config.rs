//! One typed configuration, read from flags and the environment variables of the contract.

use std::fmt;
use std::time::Duration;

use clap::Args;

/// A secret string whose `Debug` never shows its value.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Everything the service can be told at start. Every field is a flag (`--database-url`) and an
/// environment variable (`DATABASE_URL`); flags win.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/aishacrm"
    )]
    pub database_url: String,

    /// Redis URL for the shared cache and the invalidation bus; `none` = single-instance mode.
    #[arg(
        long,
        env = "REDIS_URL",
        global = true,
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub redis_url: String,

    /// Redis Cluster seed nodes, comma-separated `redis://host:port` URLs; when set, the cache uses
    /// the cluster instead of `REDIS_URL`.
    #[arg(long, env = "REDIS_CLUSTER_NODES", global = true)]
    pub redis_cluster_nodes: Option<String>,

    /// A PEM file of the CA that signs the certificate of a `rediss://` server (or cluster
    /// nodes), instead of the system's roots.
    #[arg(long, env = "REDIS_CA_FILE", global = true)]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Listen address of the HTTP API.
    #[arg(long, env = "BIND", global = true, default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// HS256 secret shared by all replicas; unset = a random one per start and a logged dev token.
    #[arg(long, env = "JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Comma-separated secrets still accepted (verify only) during a rotation; cursors signed
    /// with them stay valid. Tokens are minted with `JWT_SECRET` only.
    #[arg(
        long,
        env = "JWT_SECRET_PREVIOUS",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret_previous: Option<Secret>,

    /// When set, tokens must carry this `aud`; when unset, `aud` is not checked.
    #[arg(long, env = "JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// When set, tokens must carry this `iss`; when unset, `iss` is not checked.
    #[arg(long, env = "JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// `false` turns every cache off (rollback switch).
    #[arg(long, env = "CACHE_ENABLED", global = true, default_value_t = true, action = clap::ArgAction::Set)]
    pub cache_enabled: bool,

    /// Hard bound on L1 memory, by bytes of cached bodies.
    #[arg(long, env = "CACHE_L1_MAX_MB", global = true, default_value_t = 64)]
    pub cache_l1_max_mb: u64,

    /// L1 lifetime while Redis is configured but unreachable.
    #[arg(
        long,
        env = "CACHE_DEGRADED_L1_TTL_SECS",
        global = true,
        default_value_t = 5
    )]
    pub cache_degraded_l1_ttl_secs: u64,

    /// How long past its TTL an entry may be served while PostgreSQL is down; 0 = off.
    #[arg(
        long,
        env = "CACHE_FAIL_SAFE_SECS",
        global = true,
        default_value_t = 300
    )]
    pub cache_fail_safe_secs: u64,

    /// Prefix of every Redis key and channel of this service (several deployments can share
    /// one Redis).
    #[arg(
        long,
        env = "CACHE_KEY_PREFIX",
        global = true,
        default_value = "aishacrm"
    )]
    pub cache_key_prefix: String,

    /// Period of the `[Cache] Stats:` log line.
    #[arg(
        long,
        env = "CACHE_STATS_LOG_SECS",
        global = true,
        default_value_t = 60
    )]
    pub cache_stats_log_secs: u64,

    /// Bound on every Redis command; past it Redis counts as down.
    #[arg(long, env = "REDIS_TIMEOUT_MS", global = true, default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// `CACHE_TTL_<MODULE>_<OPERATION>` overrides, keyed `MODULE_OPERATION` (read from the
    /// environment by [`Config::read_ttl_overrides`]).
    #[arg(skip)]
    pub cache_ttl_overrides: std::collections::HashMap<String, u64>,

    /// HTTP worker threads; 0 = one per core.
    #[arg(long, env = "WORKERS", global = true, default_value_t = 0)]
    pub workers: usize,

    /// How long a client may take to send a request's head; slower clients are answered 408 and
    /// disconnected.
    #[arg(
        long,
        env = "HTTP_CLIENT_TIMEOUT_MS",
        global = true,
        default_value_t = 5000
    )]
    pub http_client_timeout_ms: u64,

    /// How long a request body may take to arrive; a stalled body answers 400 `invalid_json`.
    #[arg(
        long,
        env = "HTTP_BODY_TIMEOUT_MS",
        global = true,
        default_value_t = 10_000
    )]
    pub http_body_timeout_ms: u64,

    /// How long an idle keep-alive connection stays open.
    #[arg(long, env = "HTTP_KEEP_ALIVE_SECS", global = true, default_value_t = 5)]
    pub http_keep_alive_secs: u64,

    /// On SIGTERM/SIGINT: stop accepting, let in-flight requests finish for at most this long.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", global = true, default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// The largest share of the database pool (and of background work such as warm) one tenant
    /// may hold at once; past it that tenant's work waits briefly, then answers 429.
    #[arg(
        long,
        env = "TENANT_MAX_DB_SHARE",
        global = true,
        default_value_t = 0.25
    )]
    pub tenant_max_db_share: f64,

    /// Most PostgreSQL connections this process opens.
    #[arg(long, env = "DB_POOL_SIZE", global = true, default_value_t = 16)]
    pub db_pool_size: usize,

    /// How long a request waits for a pooled connection (and for a new one to connect).
    #[arg(
        long,
        env = "DB_ACQUIRE_TIMEOUT_MS",
        global = true,
        default_value_t = 2000
    )]
    pub db_acquire_timeout_ms: u64,

    /// PostgreSQL `statement_timeout` of every pooled connection.
    #[arg(
        long,
        env = "DB_STATEMENT_TIMEOUT_MS",
        global = true,
        default_value_t = 5000
    )]
    pub db_statement_timeout_ms: u64,
}

impl Config {
    /// `None` when `REDIS_URL=none` (single-instance mode).
    pub fn redis_url(&self) -> Option<&str> {
        match self.redis_url.trim() {
            "" | "none" => None,
            url => Some(url),
        }
    }

    /// The seed nodes of `REDIS_CLUSTER_NODES` (empty items skipped); none = no cluster.
    pub fn redis_cluster_nodes(&self) -> Vec<String> {
        self.redis_cluster_nodes
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether a shared Redis is configured (a cluster, or `REDIS_URL` other than `none`).
    pub fn uses_redis(&self) -> bool {
        self.redis_url().is_some() || !self.redis_cluster_nodes().is_empty()
    }

    /// The secrets of `JWT_SECRET_PREVIOUS`, each as bytes (empty items skipped).
    pub fn previous_jwt_secrets(&self) -> Vec<Vec<u8>> {
        self.jwt_secret_previous
            .as_ref()
            .map(|secrets| {
                secrets
                    .0
                    .split(',')
                    .map(str::trim)
                    .filter(|secret| !secret.is_empty())
                    .map(|secret| secret.as_bytes().to_vec())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn db_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.db_statement_timeout_ms)
    }

    /// Collects `CACHE_TTL_<MODULE>_<OPERATION>=<secs>` from the environment.
    pub fn read_ttl_overrides(&mut self) -> Result<(), String> {
        for (name, value) in std::env::vars() {
            if let Some(suffix) = name.strip_prefix("CACHE_TTL_") {
                let secs = value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{name} must be a number of seconds"))?;
                self.cache_ttl_overrides.insert(suffix.to_owned(), secs);
            }
        }
        Ok(())
    }

    /// A configuration for tests and tools: the defaults with the given database.
    pub fn for_database(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        // Parsing an empty command line yields the defaults; environment variables still apply,
        // so callers set every field they care about explicitly.
        let mut config = Wrapper::parse_from(["aishacrm"]).config;
        config.database_url = database_url.to_owned();
        config
    }
}
