//! Prometheus metrics of one process (one registry per `Application`, so two instances in one
//! test process keep separate counts). Labels never carry tenant ids.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub module: &'static str,
    pub operation: &'static str,
    pub result: &'static str,
    pub tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvalidationLabels {
    pub module: &'static str,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

fn duration_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// How a cached route answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Bypass,
    Stale,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
            Outcome::Stale => "stale",
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
    None,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::None => "none",
        }
    }
}

/// Every metric of the service, plus plain counters for the admin stats route and the periodic
/// `[Cache] Stats:` line.
pub struct Metrics {
    registry: Registry,
    cache_requests: Family<CacheLabels, Counter>,
    invalidations: Family<InvalidationLabels, Counter>,
    pub l1_entries: Gauge,
    pub l1_bytes: Gauge,
    pub bus_connected: Gauge,
    http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub hits_l1: AtomicU64,
    pub hits_l2: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub bypass: AtomicU64,
    pub invalidations_local: AtomicU64,
    pub invalidations_remote: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "aishacrm_cache_requests",
            "Cached-route requests by result and tier",
            cache_requests.clone(),
        );
        let invalidations = Family::<InvalidationLabels, Counter>::default();
        registry.register(
            "aishacrm_cache_invalidations",
            "Module invalidations, local (this instance wrote) or remote (learned from the bus)",
            invalidations.clone(),
        );
        let l1_entries = Gauge::default();
        registry.register(
            "aishacrm_cache_l1_entries",
            "Entries in L1",
            l1_entries.clone(),
        );
        let l1_bytes = Gauge::default();
        registry.register(
            "aishacrm_cache_l1_bytes",
            "Weighted bytes in L1",
            l1_bytes.clone(),
        );
        let bus_connected = Gauge::default();
        registry.register(
            "aishacrm_cache_bus_connected",
            "1 while the invalidation bus is subscribed",
            bus_connected.clone(),
        );
        let http_duration =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "aishacrm_http_request_duration_seconds",
            "HTTP request duration by route pattern",
            http_duration.clone(),
        );
        Metrics {
            registry,
            cache_requests,
            invalidations,
            l1_entries,
            l1_bytes,
            bus_connected,
            http_duration,
            hits_l1: AtomicU64::new(0),
            hits_l2: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            bypass: AtomicU64::new(0),
            invalidations_local: AtomicU64::new(0),
            invalidations_remote: AtomicU64::new(0),
        }
    }

    pub fn cache_request(
        &self,
        module: &'static str,
        operation: &'static str,
        outcome: Outcome,
        tier: Tier,
    ) {
        self.cache_requests
            .get_or_create(&CacheLabels {
                module,
                operation,
                result: outcome.label(),
                tier: tier.label(),
            })
            .inc();
        let counter = match (outcome, tier) {
            (Outcome::Hit, Tier::L2) => &self.hits_l2,
            (Outcome::Hit, _) => &self.hits_l1,
            (Outcome::Miss, _) => &self.misses,
            (Outcome::Stale, _) => &self.stale,
            (Outcome::Bypass, _) => &self.bypass,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn invalidation(&self, module: &'static str, remote: bool) {
        let source = if remote { "remote" } else { "local" };
        self.invalidations
            .get_or_create(&InvalidationLabels { module, source })
            .inc();
        let counter = if remote {
            &self.invalidations_remote
        } else {
            &self.invalidations_local
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_request(&self, route: String, method: String, status: u16, seconds: f64) {
        self.http_duration
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Hits (L1, L2), misses and the hit rate so far.
    pub fn hit_counts(&self) -> (u64, u64, u64, f64) {
        let l1 = self.hits_l1.load(Ordering::Relaxed);
        let l2 = self.hits_l2.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let total = l1 + l2 + misses;
        let rate = if total == 0 {
            0.0
        } else {
            (l1 + l2) as f64 / total as f64
        };
        (l1, l2, misses, rate)
    }
}
