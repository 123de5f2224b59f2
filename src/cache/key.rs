//! Cache keys: the modules and their generations, canonical query parameters, and the MD5 key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::auth::TenantId;
use crate::domain::entities::{self, EntitySpec, FilterKind};
use crate::domain::query::{decode_query, MAX_LIMIT};

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

/// What a tenant's cached answers are keyed by: the epoch of its namespace and a generation per
/// module. A namespace whose counters Redis lost starts with a new random epoch, so counters
/// that start over can never name an entry of an earlier state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantGenerations {
    pub epoch: u64,
    pub modules: GenVector,
}

impl TenantGenerations {
    /// A namespace no entry was ever stored under: a random epoch, every module at 0.
    pub fn fresh() -> Self {
        TenantGenerations {
            epoch: rand::random(),
            modules: [0; MODULES.len()],
        }
    }
}

/// The generations of [`dependencies`]`(module)`, in the same order, out of a tenant's vector.
pub fn dependency_generations<'a>(module: &str, all: &'a GenVector) -> &'a [u64] {
    match module_index(module) {
        Some(index) if dependencies(module).len() == 1 => std::slice::from_ref(&all[index]),
        _ => all,
    }
}

/// Canonical query parameters: `(name, value)` sorted by name, defaults filled in.
pub type Params = Vec<(&'static str, Cow<'static, str>)>;

/// `DEFAULT_LIMIT` as the text a key carries for it.
const DEFAULT_LIMIT_TEXT: &str = "50";

/// The `&'static` name of a parameter `module`/`operation` accepts, and whether its values are
/// UUIDs.
fn accepted(
    spec: Option<&EntitySpec>,
    operation: &str,
    name: &str,
) -> Option<(&'static str, bool)> {
    let paging: &[&'static str] = if operation == "list" {
        &["limit", "cursor"]
    } else {
        &[]
    };
    match (spec, operation) {
        (Some(spec), "list" | "count") => ["q"]
            .iter()
            .chain(paging)
            .map(|name| (*name, false))
            .chain(
                spec.filters
                    .iter()
                    .map(|filter| (filter.name, matches!(filter.kind, FilterKind::Uuid))),
            )
            .find(|(accepted, _)| *accepted == name),
        (_, "stats") => (name == "account_id").then_some(("account_id", true)),
        _ => None,
    }
}

/// The query's parameters in canonical form, or `None` when the query is invalid (the handler
/// then answers 400 and nothing is cached). The same rules as the handlers' own parsing
/// ([`crate::domain::query::parse_params`]): only declared names, each at most once.
pub fn canonical_params(module: &str, operation: &str, raw: &str) -> Option<Params> {
    let spec: Option<&EntitySpec> = entities::ALL
        .iter()
        .copied()
        .find(|spec| spec.module == module);
    let mut params = Params::new();
    // Most dashboard requests carry no query at all.
    if !raw.is_empty() {
        for (name, value) in decode_query(raw)? {
            let (name, is_uuid) = accepted(spec, operation, &name)?;
            if params.iter().any(|(seen, _)| *seen == name) {
                return None;
            }
            // One spelling per UUID (`ABC…`, `abc…` and the form without dashes are one id),
            // so equal answers share one entry.
            let value = match Uuid::try_parse(&value) {
                Ok(id) if is_uuid => id.hyphenated().to_string(),
                _ => value,
            };
            params.push((name, Cow::Owned(value)));
        }
    }
    if operation == "list" {
        let limit = match params.iter().position(|(name, _)| *name == "limit") {
            Some(at) => {
                let limit = params.swap_remove(at).1.parse::<i64>().ok()?;
                Cow::Owned(
                    (1..=MAX_LIMIT)
                        .contains(&limit)
                        .then_some(limit)?
                        .to_string(),
                )
            }
            None => Cow::Borrowed(DEFAULT_LIMIT_TEXT),
        };
        params.push(("limit", limit));
    }
    params.retain(|(name, value)| !(*name == "q" && value.is_empty()));
    params.sort_unstable_by_key(|(name, _)| *name);
    Some(params)
}

/// A cache key: MD5 over every part, each written with its length first (and lists with their
/// count), so that no two different inputs share their bytes (`"ab" + "c"` is not `"a" + "bc"`).
pub type Key = [u8; 16];

/// Version of the key layout; changing the layout changes every key.
const KEY_VERSION: u64 = 3;

pub fn cache_key(
    tenant: TenantId,
    module: &str,
    operation: &str,
    params: &[(&str, Cow<'_, str>)],
    epoch: u64,
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
    context.consume(epoch.to_be_bytes());
    context.consume((generations.len() as u64).to_be_bytes());
    for generation in generations {
        context.consume(generation.to_be_bytes());
    }
    context.finalize().0
}

/// Lowercase hex of a key, appended to `out` (every L2 read names its key this way).
pub fn push_hex(out: &mut String, key: &Key) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in key {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// This process's view of every tenant's generations. Within one epoch values only grow (a bus
/// message and a Redis read may arrive in any order); a different epoch means Redis lost the
/// tenant's counters, and the tenant is forgotten, to be read again. Every change that may make a
/// read already under way outdated moves the fence, which keeps that read from being stored.
#[derive(Default)]
pub struct Generations {
    state: Mutex<GenState>,
}

#[derive(Default)]
struct GenState {
    fence: u64,
    tenants: HashMap<Uuid, TenantGenerations>,
}

/// Past this many tenants the map starts over. Forgetting is safe: a forgotten tenant is read
/// again from Redis, or, without Redis, starts a fresh epoch that no entry was stored under.
const MAX_TENANTS: usize = 100_000;

impl GenState {
    fn forget(&mut self, tenant: TenantId) {
        self.tenants.remove(&tenant.0);
        self.fence += 1;
    }

    /// Keeps the map bounded before `tenant` is added.
    fn make_room_for(&mut self, tenant: TenantId) {
        if self.tenants.len() >= MAX_TENANTS && !self.tenants.contains_key(&tenant.0) {
            self.tenants.clear();
            self.fence += 1;
        }
    }
}

impl Generations {
    fn lock(&self) -> std::sync::MutexGuard<'_, GenState> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The known generations of `tenant`, and the fence to pass to [`Self::store_fetched`].
    pub fn get(&self, tenant: TenantId) -> (Option<TenantGenerations>, u64) {
        let state = self.lock();
        (state.tenants.get(&tenant.0).copied(), state.fence)
    }

    /// Stores generations read from Redis, unless something changed since the read began.
    pub fn store_fetched(
        &self,
        tenant: TenantId,
        fetched: TenantGenerations,
        fence: u64,
    ) -> TenantGenerations {
        let mut state = self.lock();
        if state.fence != fence {
            return fetched;
        }
        state.make_room_for(tenant);
        match state.tenants.get_mut(&tenant.0) {
            None => {
                state.tenants.insert(tenant.0, fetched);
                fetched
            }
            // Two reads raced; within one epoch the larger values are the newer ones.
            Some(known) if known.epoch == fetched.epoch => {
                for (known, new) in known.modules.iter_mut().zip(fetched.modules) {
                    *known = (*known).max(new);
                }
                *known
            }
            // Two reads disagree on the epoch: which is newer cannot be told; read again.
            Some(_) => {
                state.forget(tenant);
                fetched
            }
        }
    }

    /// Applies what a bus message or an increment reported: new values of `updates` in `epoch`.
    /// For a tenant not yet known, or known in another epoch, nothing is stored: the tenant is
    /// read again, and reads already under way are kept from storing what they fetched.
    pub fn apply(&self, tenant: TenantId, epoch: u64, updates: &[(usize, u64)]) {
        let mut state = self.lock();
        match state.tenants.get_mut(&tenant.0) {
            Some(entry) if entry.epoch == epoch => {
                for &(index, value) in updates {
                    if let Some(known) = entry.modules.get_mut(index) {
                        *known = (*known).max(value);
                    }
                }
            }
            _ => state.forget(tenant),
        }
    }

    /// Moves a tenant into a namespace of this instance alone (a fresh random epoch), for a
    /// write that could not reach Redis.
    pub fn detach(&self, tenant: TenantId) {
        let mut state = self.lock();
        state.make_room_for(tenant);
        state.fence += 1;
        state.tenants.insert(tenant.0, TenantGenerations::fresh());
    }

    /// Bumps generations locally (single-instance mode, or Redis unreachable). A tenant not
    /// known starts a fresh epoch.
    pub fn bump(&self, tenant: TenantId, indexes: &[usize]) {
        let mut state = self.lock();
        state.make_room_for(tenant);
        state.fence += 1;
        let entry = state
            .tenants
            .entry(tenant.0)
            .or_insert_with(TenantGenerations::fresh);
        for &index in indexes {
            if let Some(known) = entry.modules.get_mut(index) {
                *known += 1;
            }
        }
    }

    /// Forgets everything (after a reconnect or a flush).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.fence += 1;
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
        let key = cache_key(t, "opportunities", "list", &a, 7, &[1]);
        assert_eq!(key, cache_key(t, "opportunities", "list", &c, 7, &[1]));
        assert_ne!(
            key,
            cache_key(tenant(), "opportunities", "list", &a, 7, &[1])
        );
        assert_ne!(key, cache_key(t, "opportunities", "count", &a, 7, &[1]));
        assert_ne!(key, cache_key(t, "opportunities", "list", &a, 7, &[2]));
        let d = canonical_params("opportunities", "list", "stage=negotiation").unwrap();
        assert_ne!(key, cache_key(t, "opportunities", "list", &d, 7, &[1]));
    }

    #[test]
    fn parts_cannot_be_shifted_between_fields() {
        let t = tenant();
        assert_ne!(
            cache_key(t, "ab", "c", &[], 7, &[]),
            cache_key(t, "a", "bc", &[], 7, &[])
        );
        let p1 = vec![("a", Cow::Borrowed("b&c=d"))];
        let p2 = vec![("a", Cow::Borrowed("b")), ("c", Cow::Borrowed("d"))];
        assert_ne!(
            cache_key(t, "m", "o", &p1, 7, &[]),
            cache_key(t, "m", "o", &p2, 7, &[])
        );
    }

    #[test]
    fn keys_read_as_lowercase_hex() {
        let key: Key = [
            0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ];
        let mut text = String::from("x:");
        push_hex(&mut text, &key);
        let expected: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(text, format!("x:{expected}"));
    }

    #[test]
    fn dependency_generations_follow_dependencies() {
        let all: GenVector = [11, 12, 13, 14, 15, 16];
        for module in MODULES.iter().copied().chain(["unknown"]) {
            let expected: Vec<u64> = dependencies(module)
                .iter()
                .map(|dependency| all[module_index(dependency).unwrap()])
                .collect();
            assert_eq!(dependency_generations(module, &all), expected, "{module}");
        }
    }

    #[test]
    fn the_default_limit_reads_as_an_explicit_one() {
        assert_eq!(
            DEFAULT_LIMIT_TEXT,
            crate::domain::query::DEFAULT_LIMIT.to_string()
        );
        assert_eq!(
            canonical_params("leads", "list", "").unwrap(),
            canonical_params("leads", "list", "limit=050").unwrap()
        );
        assert_eq!(
            canonical_params("opportunities", "list", "stage=won&q=&limit=7").unwrap(),
            vec![
                ("limit", Cow::Borrowed("7")),
                ("stage", Cow::Borrowed("won"))
            ]
        );
        assert!(canonical_params("opportunities", "list", "limit=5&limit=5").is_none());
        assert!(canonical_params("opportunities", "stats", "account_id=x&account_id=y").is_none());
        assert_eq!(
            canonical_params("opportunities", "stats", "").unwrap(),
            vec![]
        );
    }

    #[test]
    fn invalid_queries_have_no_canonical_form() {
        assert!(canonical_params("opportunities", "list", "limit=0").is_none());
        assert!(canonical_params("opportunities", "count", "limit=5").is_none());
        assert!(canonical_params("opportunities", "list", "color=red").is_none());
        assert_eq!(
            canonical_params("accounts", "count", "q=").unwrap(),
            Params::new()
        );
    }

    fn at(epoch: u64, leads: u64) -> TenantGenerations {
        let mut modules = [0; MODULES.len()];
        modules[3] = leads;
        TenantGenerations { epoch, modules }
    }

    #[test]
    fn generations_only_grow_within_an_epoch_and_stale_reads_are_dropped() {
        let generations = Generations::default();
        let t = tenant();
        let (_, fence) = generations.get(t);
        generations.store_fetched(t, at(1, 4), fence);
        generations.apply(t, 1, &[(3, 6)]);
        let (_, fence) = generations.get(t);
        let stored = generations.store_fetched(t, at(1, 5), fence);
        assert_eq!(
            stored.modules[3], 6,
            "an older read never lowers a generation"
        );

        let other = tenant();
        let (_, fence) = generations.get(other);
        generations.apply(other, 1, &[(3, 2)]);
        generations.store_fetched(other, at(1, 1), fence);
        assert_eq!(
            generations.get(other).0,
            None,
            "a read that began before a change of an unknown tenant is not stored"
        );
        let (_, fence) = generations.get(t);
        generations.clear();
        generations.store_fetched(t, at(1, 9), fence);
        assert_eq!(
            generations.get(t).0,
            None,
            "a read from before the clear is dropped"
        );
    }

    #[test]
    fn another_epoch_forgets_the_tenant_whatever_its_counters_say() {
        let generations = Generations::default();
        let t = tenant();
        let (_, fence) = generations.get(t);
        generations.store_fetched(t, at(1, 40), fence);
        // Redis lost the counters: the next write counts from 1 in a new epoch.
        generations.apply(t, 2, &[(3, 1)]);
        let (known, fence) = generations.get(t);
        assert_eq!(known, None, "the tenant is read again");
        assert_eq!(generations.store_fetched(t, at(2, 1), fence), at(2, 1));
        assert_eq!(generations.get(t).0, Some(at(2, 1)));
        // Two reads that disagree on the epoch store neither.
        let (_, fence) = generations.get(t);
        generations.store_fetched(t, at(3, 0), fence);
        assert_eq!(generations.get(t).0, None);
    }

    #[test]
    fn a_forgotten_tenant_never_comes_back_under_an_epoch_it_had() {
        let generations = Generations::default();
        let t = tenant();
        generations.bump(t, &[3]);
        let before = generations.get(t).0.unwrap();
        generations.clear();
        generations.bump(t, &[3]);
        let after = generations.get(t).0.unwrap();
        assert_eq!(after.modules[3], 1);
        assert_ne!(
            after.epoch, before.epoch,
            "a new namespace, not the old one again"
        );
    }

    #[test]
    fn past_the_bound_the_map_starts_over_without_reviving_a_handed_out_generation() {
        let generations = Generations::default();
        let written = tenant();
        generations.bump(written, &[3]);
        let handed_out = generations.get(written).0.unwrap();
        for _ in 0..MAX_TENANTS {
            let other = tenant();
            let (_, fence) = generations.get(other);
            generations.store_fetched(other, TenantGenerations::fresh(), fence);
        }
        assert_eq!(generations.get(written).0, None, "the map started over");
        // Without Redis the tenant is read as a fresh namespace, never as its state before
        // the write (which an L1 entry may still hold).
        let (_, fence) = generations.get(written);
        let again = generations.store_fetched(written, TenantGenerations::fresh(), fence);
        assert_ne!(again.epoch, handed_out.epoch);
    }
}
