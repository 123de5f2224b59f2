//! What this process knows of every tenant's generations: the counters a cached answer's key
//! carries, so that a write makes every earlier key unreachable at once.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::domain::{Module, TenantId};

/// One generation counter per module of a tenant.
pub type GenVector = [u64; Module::COUNT];

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
            modules: [0; Module::COUNT],
        }
    }
}

/// The generations of `module`'s [`Module::dependencies`], in the same order, out of a
/// tenant's vector.
pub fn dependency_generations(module: Module, all: &GenVector) -> &[u64] {
    match module {
        Module::Dashboard => all,
        module => std::slice::from_ref(&all[module.index()]),
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
    pub fn apply(&self, tenant: TenantId, epoch: u64, updates: &[(Module, u64)]) {
        let mut state = self.lock();
        match state.tenants.get_mut(&tenant.0) {
            Some(entry) if entry.epoch == epoch => {
                for &(module, value) in updates {
                    let known = &mut entry.modules[module.index()];
                    *known = (*known).max(value);
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
    pub fn bump(&self, tenant: TenantId, modules: &[Module]) {
        let mut state = self.lock();
        state.make_room_for(tenant);
        state.fence += 1;
        let entry = state
            .tenants
            .entry(tenant.0)
            .or_insert_with(TenantGenerations::fresh);
        for module in modules {
            entry.modules[module.index()] += 1;
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
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId(Uuid::new_v4())
    }

    #[test]
    fn dependency_generations_follow_dependencies() {
        let all: GenVector = [11, 12, 13, 14, 15, 16];
        for module in Module::ALL {
            let expected: Vec<u64> = module
                .dependencies()
                .iter()
                .map(|dependency| all[dependency.index()])
                .collect();
            assert_eq!(dependency_generations(module, &all), expected, "{module}");
        }
    }

    fn at(epoch: u64, leads: u64) -> TenantGenerations {
        let mut modules = [0; Module::COUNT];
        modules[Module::Leads.index()] = leads;
        TenantGenerations { epoch, modules }
    }

    #[test]
    fn generations_only_grow_within_an_epoch_and_stale_reads_are_dropped() {
        let generations = Generations::default();
        let t = tenant();
        let (_, fence) = generations.get(t);
        generations.store_fetched(t, at(1, 4), fence);
        generations.apply(t, 1, &[(Module::Leads, 6)]);
        let (_, fence) = generations.get(t);
        let stored = generations.store_fetched(t, at(1, 5), fence);
        assert_eq!(
            stored.modules[Module::Leads.index()],
            6,
            "an older read never lowers a generation"
        );

        let other = tenant();
        let (_, fence) = generations.get(other);
        generations.apply(other, 1, &[(Module::Leads, 2)]);
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
        generations.apply(t, 2, &[(Module::Leads, 1)]);
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
        generations.bump(t, &[Module::Leads]);
        let before = generations.get(t).0.unwrap();
        generations.clear();
        generations.bump(t, &[Module::Leads]);
        let after = generations.get(t).0.unwrap();
        assert_eq!(after.modules[Module::Leads.index()], 1);
        assert_ne!(
            after.epoch, before.epoch,
            "a new namespace, not the old one again"
        );
    }

    #[test]
    fn past_the_bound_the_map_starts_over_without_reviving_a_handed_out_generation() {
        let generations = Generations::default();
        let written = tenant();
        generations.bump(written, &[Module::Leads]);
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
