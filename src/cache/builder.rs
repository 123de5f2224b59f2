//! How a [`Cache`] is configured and built: its own settings, not the application's whole
//! configuration (the application translates its configuration into these).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::error::CacheError;
use super::flight::Flights;
use super::l1::L1;
use super::l2::Redis;
use super::ttl::Ttls;
use super::versions::Versions;
use super::Cache;
use crate::metrics::Metrics;

/// Where the shared Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Single(String),
    /// Seed nodes of a cluster.
    Cluster(Vec<String>),
}

/// Everything the cache is configured by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `false` turns every cache off: answers are loaded and served as `BYPASS`.
    pub enabled: bool,
    /// `None` in single-instance mode (no L2, no bus, tag versions kept in process).
    pub redis: Option<Target>,
    /// Prefix of every Redis key and of the bus channel.
    pub key_prefix: String,
    /// Bound on every Redis command.
    pub redis_timeout: Duration,
    /// Bound on L1, by weighted bytes; 0 turns L1 off.
    pub l1_max_bytes: u64,
    /// `<MODULE>_<OPERATION>` (any case) to seconds, replacing a route's default TTL.
    pub ttl_overrides: HashMap<String, u64>,
    /// How long past its TTL an entry may still answer when the database cannot; 0 = never.
    pub fail_safe: Duration,
    /// How long L1 keeps an entry while Redis is down (no invalidations can arrive then).
    pub degraded_l1_ttl: Duration,
    /// A PEM file of the CA that signs a `rediss://` server's certificate, instead of the
    /// system's roots.
    pub redis_ca_file: Option<PathBuf>,
}

impl Settings {
    /// The CA of `redis_ca_file`, read now.
    pub(super) fn redis_ca(&self) -> Result<Option<Vec<u8>>, CacheError> {
        self.redis_ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|error| {
                    CacheError::Settings(format!(
                        "REDIS_CA_FILE {} cannot be read: {error}",
                        path.display()
                    ))
                })
            })
            .transpose()
    }
}

/// Answers larger than this are served but not cached.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// Builds a [`Cache`] from its [`Settings`].
pub struct CacheBuilder {
    settings: Settings,
    metrics: Option<Arc<Metrics>>,
}

impl CacheBuilder {
    pub(super) fn new(settings: Settings) -> Self {
        CacheBuilder {
            settings,
            metrics: None,
        }
    }

    /// Where hits, misses and invalidations are counted (a registry of its own by default).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn build(self) -> Result<Cache, CacheError> {
        let settings = self.settings;
        let ca = settings.redis_ca()?;
        let redis = match settings.redis {
            Some(target) => Some(Redis::new(
                target,
                &settings.key_prefix,
                settings.redis_timeout,
                ca.as_deref(),
            )?),
            None => None,
        };
        let max_bytes = settings.l1_max_bytes;
        Ok(Cache {
            enabled: settings.enabled,
            l1: L1::new(max_bytes),
            redis,
            versions: Versions::default(),
            flights: Flights::default(),
            degraded_writes: Mutex::new(0),
            applied_rows: Mutex::default(),
            metrics: self.metrics.unwrap_or_default(),
            instance: Uuid::new_v4(),
            ttls: Ttls::new(&settings.ttl_overrides),
            fail_safe: settings.fail_safe,
            degraded_ttl: settings.degraded_l1_ttl,
            // One answer may take at most an eighth of L1; with L1 off only L2 bounds it.
            max_entry_bytes: if max_bytes == 0 {
                MAX_ENTRY_BYTES
            } else {
                MAX_ENTRY_BYTES.min((max_bytes / 8) as usize)
            },
        })
    }
}
