//! The `aishacrm` command line: `serve` (default), `migrate`, `seed`, `token`, `cache`, `aggregates`.

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::auth::{JwtKeys, Role};
use crate::config::Config;
use crate::db::{self, BoxError};
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "aishacrm",
    version,
    about = "Multi-tenant CRM API with a two-tier cache"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (the default).
    Serve,
    /// Apply the embedded migrations and exit.
    Migrate,
    /// Write demo data.
    Seed(SeedArgs),
    /// Print a signed bearer token.
    Token(TokenArgs),
    /// Manage the shared cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Check or rebuild the per-tenant counts and stage totals the database keeps.
    #[command(subcommand)]
    Aggregates(AggregatesCommand),
}

#[derive(Debug, Subcommand)]
pub enum AggregatesCommand {
    /// Compare every tenant's aggregates with COUNT(*) and GROUP BY over its rows; exits non-zero
    /// naming each figure that drifted.
    Verify,
    /// Recompute the aggregates from the rows (writers wait meanwhile).
    Rebuild {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove every cache entry of this service from Redis (never FLUSHDB) and tell every
    /// instance to drop its L1.
    Flush,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many new tenants to fill.
    #[arg(long, default_value_t = 1)]
    pub tenants: usize,
    /// Opportunities per tenant; accounts, contacts, leads and activities get a fifth of this.
    #[arg(long, default_value_t = 1000)]
    pub per_tenant: usize,
    /// Fill this one tenant instead of new ones.
    #[arg(long)]
    pub tenant: Option<Uuid>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long)]
    pub tenant: Uuid,
    #[arg(long, value_enum, default_value_t = Role::Admin)]
    pub role: Role,
    #[arg(long, default_value = "cli")]
    pub sub: String,
    #[arg(long, default_value_t = 86_400)]
    pub ttl_secs: u64,
}

/// Runs one subcommand to completion.
pub fn run(cli: Cli) -> Result<(), BoxError> {
    let mut config = cli.config;
    config.read_ttl_overrides()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            db::prepare(&config.database_url)?;
            actix_rt::System::new().block_on(async move {
                let app = Application::build(config).await?;
                app.run_until_stopped().await?;
                Ok(())
            })
        }
        Command::Migrate => {
            db::prepare(&config.database_url)?;
            log::info!("migrations are up to date");
            Ok(())
        }
        Command::Seed(args) => {
            db::prepare(&config.database_url)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let plan = db::seed::Plan {
                tenants: args.tenants,
                per_tenant: args.per_tenant,
                tenant: args.tenant,
            };
            runtime.block_on(db::seed::run(&config, &plan))
        }
        Command::Aggregates(command) => {
            db::prepare(&config.database_url)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(aggregates(&config, command))
        }
        Command::Cache(CacheCommand::Flush) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let settings = crate::startup::cache_settings(&config);
            if settings.redis.is_none() {
                return Err("REDIS_URL is none: there is no shared cache to flush".into());
            }
            let removed = runtime.block_on(crate::cache::flush(&settings))?;
            println!("removed {removed} cache entries");
            Ok(())
        }
        Command::Token(args) => {
            let secret = config
                .jwt_secret
                .as_ref()
                .filter(|secret| !secret.0.is_empty())
                .ok_or("JWT_SECRET must be set to mint a token the service accepts")?;
            let token = JwtKeys::new(secret.0.as_bytes())
                .expecting(config.jwt_audience.as_deref(), config.jwt_issuer.as_deref())
                .mint(args.tenant, args.role, &args.sub, args.ttl_secs)?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn aggregates(config: &Config, command: AggregatesCommand) -> Result<(), BoxError> {
    let mut conn = db::connect(&config.database_url).await?;
    match command {
        AggregatesCommand::Verify => {
            let drift = db::aggregates::drift(&mut conn).await?;
            for figure in &drift {
                println!("{figure}");
            }
            if drift.is_empty() {
                println!("aggregates match the rows");
                Ok(())
            } else {
                Err(format!("{} aggregate figures drifted from the rows", drift.len()).into())
            }
        }
        AggregatesCommand::Rebuild { tenant } => {
            db::aggregates::rebuild(&mut conn, tenant.map(crate::domain::TenantId)).await?;
            println!("aggregates rebuilt");
            Ok(())
        }
    }
}
