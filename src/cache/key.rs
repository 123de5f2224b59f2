//! Cache keys: the modules and their generations, canonical query parameters, and the MD5 key.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::auth::TenantId;
use crate::domain::entities::{self, EntitySpec};
use crate::domain::query::{allowed_params, parse_params, DEFAULT_LIMIT, MAX_LIMIT};

/// Every module with a generation: the five entities and the dashboard.
pub const MODULES: [&str; 6] = [
    "accounts",
    "contacts",
    "leads",
    "opportunities",
    "activities",
    "dashboard",
];

/// Position of a module in [`MODULES`] and in a generation vector.
pub fn module_index(module: &str) -> Option<usize> {
    MODULES.iter().position(|name| *name == module)
}

/// The `&'static` name of a module, for metric labels.
pub fn module_name(module: &str) -> Option<&'static str> {
    module_index(module).map(|index| MODULES[index])
}

/// The modules whose writes change an answer of `module`: the dashboard bundle depends on
/// every entity (and on its own generation, for admin invalidation).
pub fn dependencies(module: &str) -> &'static [&'static str] {
    match module_index(module) {
        Some(5) | None => &MODULES,
        Some(index) => std::slice::from_ref(&MODULES[index]),
    }
}

/// One generation counter per module of a tenant.
pub type GenVector = [u64; MODULES.len()];

/// Sorted query parameters with defaults filled in, or `None` when the query is invalid (the
/// handler then answers 400 and nothing is cached).
pub fn canonical_params(module: &str, operation: &str, raw: &str) -> Option<Vec<(String, String)>> {
    let spec: Option<&EntitySpec> = entities::ALL
        .iter()
        .copied()
        .find(|spec| spec.module == module);
    let allowed: Vec<&str> = match (spec, operation) {
        (Some(spec), "list") => allowed_params(spec, true),
        (Some(spec), "count") => allowed_params(spec, false),
        (_, "stats") => vec!["account_id"],
        _ => Vec::new(),
    };
    let mut params = parse_params(raw, &allowed).ok()?;
    if operation == "list" {
        let limit = match params.get("limit") {
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))?,
            None => DEFAULT_LIMIT,
        };
        params.insert("limit".into(), limit.to_string());
    }
    if params.get("q").is_some_and(String::is_empty) {
        params.remove("q");
    }
    Some(params.into_iter().collect())
}

/// A cache key: MD5 over every part, each written with its length first (and lists with their
/// count), so that no two different inputs share their bytes (`"ab" + "c"` is not `"a" + "bc"`).
pub type Key = [u8; 16];

/// Version of the key layout; changing the layout changes every key.
const KEY_VERSION: u64 = 2;

pub fn cache_key(
    tenant: TenantId,
    module: &str,
    operation: &str,
    params: &[(String, String)],
    generations: &[u64],
) -> Key {
    fn part(context: &mut md5::Context, bytes: &[u8]) {
        context.consume((bytes.len() as u64).to_be_bytes());
        context.consume(bytes);
    }
    let mut context = md5::Context::new();
    context.consume(KEY_VERSION.to_be_bytes());
    part(&mut context, tenant.0.as_bytes());
    part(&mut context, module.as_bytes());
    part(&mut context, operation.as_bytes());
    context.consume((params.len() as u64).to_be_bytes());
    for (name, value) in params {
        part(&mut context, name.as_bytes());
        part(&mut context, value.as_bytes());
    }
    context.consume((generations.len() as u64).to_be_bytes());
    for generation in generations {
        context.consume(generation.to_be_bytes());
    }
    context.finalize().0
}

pub fn hex(key: &Key) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// This process's view of every tenant's generations. Values only grow while connected (a bus
/// message and a Redis read may arrive in any order); `clear` starts over after a reconnect, and
/// the epoch keeps a read issued before the clear from landing after it.
#[derive(Default)]
pub struct Generations {
    state: Mutex<GenState>,
}

#[derive(Default)]
struct GenState {
    epoch: u64,
    tenants: HashMap<Uuid, GenVector>,
}

/// Past this many tenants the map starts over; entries are re-read from Redis on demand.
const MAX_TENANTS: usize = 100_000;

impl Generations {
    fn lock(&self) -> std::sync::MutexGuard<'_, GenState> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The known generations of `tenant`, and the epoch to pass to [`Self::store_fetched`].
    pub fn get(&self, tenant: TenantId) -> (Option<GenVector>, u64) {
        let state = self.lock();
        (state.tenants.get(&tenant.0).copied(), state.epoch)
    }

    /// Stores generations read from Redis, unless the map was cleared since the read began.
    pub fn store_fetched(&self, tenant: TenantId, fetched: GenVector, epoch: u64) -> GenVector {
        let mut state = self.lock();
        if state.epoch != epoch {
            return fetched;
        }
        if state.tenants.len() >= MAX_TENANTS && !state.tenants.contains_key(&tenant.0) {
            state.tenants.clear();
        }
        let entry = state.tenants.entry(tenant.0).or_insert([0; MODULES.len()]);
        for (known, new) in entry.iter_mut().zip(fetched) {
            *known = (*known).max(new);
        }
        *entry
    }

    /// Raises generations to the values a bus message or an increment reported. For a tenant
    /// not yet known, the whole vector is unknown: nothing is stored, and reads already under way
    /// are kept from storing what they fetched before this change.
    pub fn merge(&self, tenant: TenantId, updates: &[(usize, u64)]) {
        let mut state = self.lock();
        match state.tenants.get_mut(&tenant.0) {
            Some(entry) => {
                for &(index, value) in updates {
                    if let Some(known) = entry.get_mut(index) {
                        *known = (*known).max(value);
                    }
                }
            }
            None => state.epoch += 1,
        }
    }

    /// Bumps generations locally (single-instance mode, or Redis unreachable).
    pub fn bump(&self, tenant: TenantId, indexes: &[usize]) {
        let mut state = self.lock();
        let entry = state.tenants.entry(tenant.0).or_insert([0; MODULES.len()]);
        for &index in indexes {
            if let Some(known) = entry.get_mut(index) {
                *known += 1;
            }
        }
    }

    /// Forgets everything (after a reconnect or a flush).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.epoch += 1;
        state.tenants.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId(Uuid::new_v4())
    }

    #[test]
    fn equal_requests_share_a_key_and_any_difference_changes_it() {
        let t = tenant();
        let a = canonical_params("opportunities", "list", "stage=proposal&limit=50").unwrap();
        let b = canonical_params("opportunities", "list", "limit=50&stage=proposal").unwrap();
        let c = canonical_params("opportunities", "list", "stage=proposal").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        let key = cache_key(t, "opportunities", "list", &a, &[1]);
        assert_eq!(key, cache_key(t, "opportunities", "list", &c, &[1]));
        assert_ne!(key, cache_key(tenant(), "opportunities", "list", &a, &[1]));
        assert_ne!(key, cache_key(t, "opportunities", "count", &a, &[1]));
        assert_ne!(key, cache_key(t, "opportunities", "list", &a, &[2]));
        let d = canonical_params("opportunities", "list", "stage=negotiation").unwrap();
        assert_ne!(key, cache_key(t, "opportunities", "list", &d, &[1]));
    }

    #[test]
    fn parts_cannot_be_shifted_between_fields() {
        let t = tenant();
        assert_ne!(
            cache_key(t, "ab", "c", &[], &[]),
            cache_key(t, "a", "bc", &[], &[])
        );
        let p1 = vec![("a".to_owned(), "b&c=d".to_owned())];
        let p2 = vec![
            ("a".to_owned(), "b".to_owned()),
            ("c".to_owned(), "d".to_owned()),
        ];
        assert_ne!(
            cache_key(t, "m", "o", &p1, &[]),
            cache_key(t, "m", "o", &p2, &[])
        );
    }

    #[test]
    fn invalid_queries_have_no_canonical_form() {
        assert!(canonical_params("opportunities", "list", "limit=0").is_none());
        assert!(canonical_params("opportunities", "count", "limit=5").is_none());
        assert!(canonical_params("opportunities", "list", "color=red").is_none());
        assert_eq!(
            canonical_params("accounts", "count", "q=").unwrap(),
            Vec::<(String, String)>::new()
        );
    }

    #[test]
    fn generations_only_grow_and_stale_reads_after_clear_are_dropped() {
        let generations = Generations::default();
        let t = tenant();
        let (_, epoch) = generations.get(t);
        generations.store_fetched(t, [0, 0, 0, 4, 0, 0], epoch);
        generations.merge(t, &[(3, 6)]);
        let (_, epoch) = generations.get(t);
        let stored = generations.store_fetched(t, [0, 0, 0, 5, 0, 0], epoch);
        assert_eq!(stored[3], 6, "an older read never lowers a generation");

        let other = tenant();
        let (_, epoch) = generations.get(other);
        generations.merge(other, &[(3, 2)]);
        generations.store_fetched(other, [0, 0, 0, 1, 0, 0], epoch);
        assert_eq!(
            generations.get(other).0,
            None,
            "a read that began before a change of an unknown tenant is not stored"
        );
        generations.clear();
        generations.store_fetched(t, [9; 6], epoch);
        assert_eq!(
            generations.get(t).0,
            None,
            "a read from before the clear is dropped"
        );
    }
}
