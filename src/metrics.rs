//! Prometheus metrics of one process (one registry per `Application`, so two instances in one
//! test process keep separate counts). Labels never carry tenant ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::{Module, Operation};

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
pub struct OperationLabels {
    pub module: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

fn duration_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// 100 µs .. ~3.3 s: from a writer's commit to another instance applying its invalidation.
fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// 10 ms .. ~11 min: how old an entry a hit served was (TTLs reach 10 minutes).
fn age_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

/// How a cached route answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    // The discriminants index the counters of `cache_slot` (four outcomes).
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
    // The discriminants index the counters of `cache_slot` (three tiers).
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

const OUTCOMES: usize = 4;
const TIERS: usize = 3;
const OPERATION_SLOTS: usize = Module::COUNT * Operation::COUNT;
const CACHE_SLOTS: usize = OPERATION_SLOTS * OUTCOMES * TIERS;

/// The position of a module and operation among the hit-age histograms.
fn operation_slot(module: Module, operation: Operation) -> usize {
    module.index() * Operation::COUNT + operation.index()
}

/// The position of a label set among [`CACHE_SLOTS`].
fn cache_slot(module: Module, operation: Operation, outcome: Outcome, tier: Tier) -> usize {
    (operation_slot(module, operation) * OUTCOMES + outcome as usize) * TIERS + tier as usize
}

/// Every metric of the service, plus plain counters for the admin stats route and the periodic
/// `[Cache] Stats:` line.
pub struct Metrics {
    registry: Registry,
    cache_requests: Family<CacheLabels, Counter>,
    /// The counters of `cache_requests`, each fetched from the family on first use.
    cache_slots: Box<[OnceLock<Counter>]>,
    invalidations: Family<InvalidationLabels, Counter>,
    pub l1_entries: Gauge,
    pub l1_bytes: Gauge,
    pub bus_connected: Gauge,
    invalidation_lag: Histogram,
    hit_age: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// The histograms of `hit_age`, each fetched from the family on first use.
    hit_age_slots: Box<[OnceLock<Histogram>]>,
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
        let invalidation_lag = lag_histogram();
        registry.register(
            "aishacrm_cache_invalidation_lag_seconds",
            "From a writer's commit until another instance applied its invalidation",
            invalidation_lag.clone(),
        );
        let hit_age = Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            age_histogram,
        );
        registry.register(
            "aishacrm_cache_hit_age_seconds",
            "Age of the entry a cache hit served",
            hit_age.clone(),
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
            cache_slots: (0..CACHE_SLOTS).map(|_| OnceLock::new()).collect(),
            invalidations,
            l1_entries,
            l1_bytes,
            bus_connected,
            invalidation_lag,
            hit_age,
            hit_age_slots: (0..OPERATION_SLOTS).map(|_| OnceLock::new()).collect(),
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
        module: Module,
        operation: Operation,
        outcome: Outcome,
        tier: Tier,
    ) {
        let labels = || CacheLabels {
            module: module.name(),
            operation: operation.name(),
            result: outcome.label(),
            tier: tier.label(),
        };
        // Every cached request counts here: the family's (hashed, locked) lookup happens once per
        // label set, after which the counter is reached by index.
        self.cache_slots[cache_slot(module, operation, outcome, tier)]
            .get_or_init(|| self.cache_requests.get_or_create(&labels()).clone())
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

    /// A hit served an entry stored `age` ago.
    pub fn hit_age(&self, module: Module, operation: Operation, age: Duration) {
        let labels = || OperationLabels {
            module: module.name(),
            operation: operation.name(),
        };
        self.hit_age_slots[operation_slot(module, operation)]
            .get_or_init(|| self.hit_age.get_or_create(&labels()).clone())
            .observe(age.as_secs_f64());
    }

    /// This instance applied an invalidation of a write another instance committed `lag` ago.
    pub fn invalidation_lag(&self, lag: Duration) {
        self.invalidation_lag.observe(lag.as_secs_f64());
    }

    pub fn invalidation(&self, module: Module, remote: bool) {
        let source = if remote { "remote" } else { "local" };
        self.invalidations
            .get_or_create(&InvalidationLabels {
                module: module.name(),
                source,
            })
            .inc();
        let counter = if remote {
            &self.invalidations_remote
        } else {
            &self.invalidations_local
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_request(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        seconds: f64,
    ) {
        self.http_duration
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .observe(seconds);
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Exposition) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        match format {
            Exposition::OpenMetrics => text,
            Exposition::Prometheus => prometheus_text(&text),
        }
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

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// `text/plain; version=0.0.4`, what a plain scrape gets.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`, when the scraper asks for it.
    OpenMetrics,
}

impl Exposition {
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// OpenMetrics text (all the encoder writes) as Prometheus text 0.0.4. The samples are the same;
/// what differs is metadata: 0.0.4 has no `# UNIT` and no `# EOF`, and a counter family is named
/// by its sample (`x_total`), where OpenMetrics names it without the suffix.
fn prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name);
        }
    }
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let metadata = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|kind| line.strip_prefix(kind).map(|rest| (kind, rest)));
        match metadata {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(kind);
                text.push_str(name);
                if counters.contains(name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_label_set_has_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        for module in Module::ALL {
            for operation in Operation::ALL {
                for outcome in [Outcome::Hit, Outcome::Miss, Outcome::Bypass, Outcome::Stale] {
                    for tier in [Tier::L1, Tier::L2, Tier::None] {
                        let slot = cache_slot(module, operation, outcome, tier);
                        assert!(slot < CACHE_SLOTS);
                        assert!(seen.insert(slot));
                    }
                }
            }
        }
    }

    #[test]
    fn counts_by_slot_and_by_family_land_in_the_same_series() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.cache_request(Module::Leads, Operation::Count, Outcome::Hit, Tier::L2);
        }
        metrics.cache_request(Module::Leads, Operation::Stats, Outcome::Hit, Tier::L2);
        let text = metrics.render(Exposition::OpenMetrics);
        assert!(
            text.contains(
                r#"aishacrm_cache_requests_total{module="leads",operation="count",result="hit",tier="l2"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"aishacrm_cache_requests_total{module="leads",operation="stats",result="hit",tier="l2"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_prometheus_text_names_counter_families_by_their_samples() {
        let metrics = Metrics::new();
        metrics.cache_request(Module::Leads, Operation::Count, Outcome::Hit, Tier::L1);
        let text = metrics.render(Exposition::Prometheus);
        assert!(
            text.contains("# TYPE aishacrm_cache_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP aishacrm_cache_requests_total Cached-route requests"),
            "{text}"
        );
        assert!(text.contains("# TYPE aishacrm_cache_l1_entries gauge\n"));
        assert!(!text.contains("# EOF"), "{text}");
        let open = metrics.render(Exposition::OpenMetrics);
        assert!(open.contains("# TYPE aishacrm_cache_requests counter\n"));
        assert!(open.trim_end().ends_with("# EOF"));
    }
}
