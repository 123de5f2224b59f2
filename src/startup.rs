//! Builds the HTTP application from a [`Config`]: keys, pool, state and the bound listener.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use rand::RngCore;
use uuid::Uuid;

use crate::auth::{JwtKeys, Role};
use crate::cache::{self, Cache};
use crate::config::Config;
use crate::db::share::TenantShares;
use crate::db::{self, BoxError};
use crate::domain::cursor::CursorCodec;
use crate::http;
use crate::metrics::Metrics;
use crate::relay::{self, Outbox};
use crate::state::AppState;

/// The tenant of the dev token logged when `JWT_SECRET` is unset; `aishacrm seed --tenant` with
/// this id fills it with demo data.
pub const DEMO_TENANT: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// How long the logged dev token is valid.
const DEV_TOKEN_TTL_SECS: u64 = 24 * 3600;

/// The cache's settings out of the application's configuration.
pub fn cache_settings(config: &Config) -> cache::Settings {
    let nodes = config.redis_cluster_nodes();
    let redis = if !nodes.is_empty() {
        Some(cache::Target::Cluster(nodes))
    } else {
        config
            .redis_url()
            .map(|url| cache::Target::Single(url.to_owned()))
    };
    cache::Settings {
        enabled: config.cache_enabled,
        redis,
        key_prefix: config.cache_key_prefix.clone(),
        redis_timeout: Duration::from_millis(config.redis_timeout_ms),
        l1_max_bytes: config.cache_l1_max_mb.saturating_mul(1024 * 1024),
        ttl_overrides: config.cache_ttl_overrides.clone(),
        fail_safe: Duration::from_secs(config.cache_fail_safe_secs),
        degraded_l1_ttl: Duration::from_secs(config.cache_degraded_l1_ttl_secs),
        redis_ca_file: config.redis_ca_file.clone(),
    }
}

/// A server bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `config.bind` (port 0 picks a free port) and wires the app. The database must
    /// already be prepared (`db::prepare`).
    pub async fn build(config: Config) -> Result<Self, BoxError> {
        let secret = match &config.jwt_secret {
            Some(secret) if !secret.0.is_empty() => secret.0.clone().into_bytes(),
            _ => {
                let mut secret = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut secret);
                secret
            }
        };
        let previous = config.previous_jwt_secrets();
        let keys = JwtKeys::new(&secret)
            .with_previous(&previous)
            .expecting(config.jwt_audience.as_deref(), config.jwt_issuer.as_deref());
        if config.jwt_secret.is_none() {
            let token = keys.mint(DEMO_TENANT, Role::Admin, "dev", DEV_TOKEN_TTL_SECS)?;
            log::info!(
                "JWT_SECRET is unset: tokens are signed with a random secret for this run only. \
                 Dev admin token for demo tenant {DEMO_TENANT} (24 h): {token}"
            );
        }
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(
            Cache::builder(cache_settings(&config))
                .metrics(metrics.clone())
                .build()?,
        );
        let pool = db::build_pool(&config)?;
        // Background tasks live as long as the runtime that runs the server.
        let outbox = Outbox::start(pool.clone(), cache.clone());
        tokio::spawn(cache.clone().run_bus({
            let (pool, cache) = (pool.clone(), cache.clone());
            move || {
                let (pool, cache) = (pool.clone(), cache.clone());
                async move { relay::relay_all(&pool, &cache).await }
            }
        }));
        let stats_period = Duration::from_secs(config.cache_stats_log_secs.max(1));
        tokio::spawn({
            let cache = cache.clone();
            async move { cache.log_stats_every(stats_period).await }
        });
        let state = web::Data::new(AppState {
            shares: TenantShares::new(config.db_pool_size.max(1), config.tenant_max_db_share),
            pool,
            outbox,
            cursors: CursorCodec::new(&secret).with_previous(&previous),
            cache,
            db_timeout: config.db_statement_timeout() + Duration::from_secs(1),
            body_timeout: Duration::from_millis(config.http_body_timeout_ms),
            metrics,
            warming: Default::default(),
        });
        let keys = web::Data::new(keys);

        let listener = TcpListener::bind(&config.bind)?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(keys.clone())
                .wrap(from_fn(http::metrics::track_duration))
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        });
        if config.workers > 0 {
            server = server.workers(config.workers);
        }
        server = server
            .client_request_timeout(Duration::from_millis(config.http_client_timeout_ms))
            .client_disconnect_timeout(Duration::from_secs(1))
            .keep_alive(Duration::from_secs(config.http_keep_alive_secs))
            .shutdown_timeout(config.shutdown_grace_secs);
        let server = server.listen(listener)?.run();
        log::info!(
            "listening on http://{}",
            config.bind.replace(":0", &format!(":{port}"))
        );
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that can stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
