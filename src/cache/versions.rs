//! What this process knows of every tenant's tag versions: for each tag a write changed, the
//! sequence number of that write, so that a cached answer is served only while none of the tags
//! it depends on changed after it was built.
//!
//! A tenant's writes are numbered in Redis (its `seq`); a write changes its tags "at" its number.
//! An answer is built "as of" the number known when its read began, before its query ran: every
//! write numbered up to it had committed by then, so the answer shows it. An answer is current
//! while each of its tags changed at or before the number it was built as of (the stale-set fence:
//! a write that lands during the query is numbered later, so the late answer is not current).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

use crate::domain::tags::Tag;
use crate::domain::TenantId;

/// What a read needs of its tenant's versions: the namespace its key lives in, the number its
/// answer is built as of, and the revision of the versions it read them from (0: none kept here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: u64,
    pub seq: u64,
    pub revision: u64,
}

impl Stamp {
    /// A namespace of one read only, which no entry was stored under.
    pub fn detached() -> Self {
        Stamp {
            epoch: rand::random(),
            seq: 0,
            revision: 0,
        }
    }
}

/// A tenant's versions as Redis holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub epoch: u64,
    pub seq: u64,
    /// Every change at or below it was forgotten (see [`TenantVersions::floor`]).
    pub floor: u64,
    pub changed: Vec<(Tag, u64)>,
}

impl Fetched {
    /// A namespace no entry was ever stored under: a random epoch, nothing written.
    pub fn fresh() -> Self {
        Fetched {
            epoch: rand::random(),
            ..Fetched::default()
        }
    }
}

/// What an answer depends on: each tag with the number the answer was built as of (a composed
/// answer has parts built as of different numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    pairs: Box<[(Tag, u64)]>,
    /// The smallest of the numbers.
    oldest: u64,
}

impl Dependencies {
    /// From pairs in any order; a tag given twice keeps its older number.
    pub fn new(mut pairs: Vec<(Tag, u64)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup_by_key(|(tag, _)| *tag);
        let oldest = pairs.iter().map(|&(_, seq)| seq).min().unwrap_or(u64::MAX);
        Dependencies {
            pairs: pairs.into_boxed_slice(),
            oldest,
        }
    }

    pub fn pairs(&self) -> &[(Tag, u64)] {
        &self.pairs
    }
}

/// One tenant's versions in this process.
struct TenantVersions {
    epoch: u64,
    seq: u64,
    /// The changes of tags not kept here any more were numbered at or below it: an answer built
    /// as of an earlier number may show a state before them.
    floor: u64,
    changed: HashMap<Tag, u64>,
    /// Moves on every change of this tenant's versions, to a value no tenant had before: an
    /// answer checked at this revision needs no second check until it moves.
    revision: u64,
}

impl TenantVersions {
    fn from_fetched(fetched: Fetched, revision: u64) -> Self {
        let mut versions = TenantVersions {
            epoch: fetched.epoch,
            seq: fetched.seq,
            floor: fetched.floor,
            changed: HashMap::with_capacity(fetched.changed.len()),
            revision,
        };
        versions.record(&fetched.changed);
        versions
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            epoch: self.epoch,
            seq: self.seq,
            revision: self.revision,
        }
    }

    /// Records that write `seq` changed `tag` (a later write's number is never lowered).
    fn record_one(&mut self, tag: Tag, seq: u64) {
        let known = self.changed.entry(tag).or_insert(0);
        *known = (*known).max(seq);
    }

    fn record(&mut self, changes: &[(Tag, u64)]) {
        for &(tag, seq) in changes {
            self.record_one(tag, seq);
        }
    }

    /// Keeps at most [`MAX_TAGS`] changes: forgets the older half, raising the floor past it.
    /// Safe: an answer built before the floor counts as changed; one built after it shows them.
    fn trim(&mut self) {
        if self.changed.len() <= MAX_TAGS {
            return;
        }
        let mut seqs: Vec<u64> = self.changed.values().copied().collect();
        let middle = seqs.len() / 2;
        let (_, &mut cut, _) = seqs.select_nth_unstable(middle);
        self.changed.retain(|_, seq| *seq > cut);
        self.floor = self.floor.max(cut);
    }

    fn is_current(&self, dependencies: &Dependencies) -> bool {
        dependencies.oldest >= self.floor
            && dependencies
                .pairs
                .iter()
                .all(|(tag, seq)| self.changed.get(tag).is_none_or(|changed| changed <= seq))
    }
}

/// Changes one tenant keeps, here and in Redis; past it the older half is forgotten.
pub const MAX_TAGS: usize = 4096;
/// Tenants kept; past it the map starts over.
const MAX_TENANTS: usize = 100_000;
/// Changes kept over all tenants (about 40 MB); past it the map starts over.
const MAX_CHANGES: usize = 1 << 20;

/// Every tenant's versions in this process. Within one epoch numbers only grow (a bus message and
/// a Redis read may arrive in any order); a different epoch means Redis lost the tenant's
/// versions, and the tenant is forgotten, to be read again. Forgetting is always safe: a
/// forgotten tenant is read again from Redis (which keeps the same changes), or, without Redis,
/// starts a fresh epoch that no entry was stored under. Every change that may make a read
/// already under way outdated moves the fence, which keeps that read from being stored: the
/// whole map's fence when everything is forgotten, else the fence of the tenant's stripe, so that
/// writes of other tenants do not keep a tenant's first read from being stored.
#[derive(Default)]
pub struct Versions {
    state: Mutex<State>,
}

/// Where a read of Redis began, to tell whether anything overtook it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    all: u64,
    stripe: u64,
}

/// Tenants share fence stripes by their id's low bits: a change of one moves the fence of a
/// few hundredths of a percent of the others.
const STRIPES: usize = 4096;

struct State {
    fence: u64,
    stripes: Box<[u64]>,
    revision: u64,
    changes: usize,
    tenants: HashMap<Uuid, TenantVersions>,
}

impl Default for State {
    fn default() -> Self {
        State {
            fence: 0,
            stripes: vec![0; STRIPES].into_boxed_slice(),
            revision: 0,
            changes: 0,
            tenants: HashMap::new(),
        }
    }
}

impl State {
    fn stripe(tenant: TenantId) -> usize {
        (tenant.0.as_u128() % STRIPES as u128) as usize
    }

    fn fence_of(&self, tenant: TenantId) -> Fence {
        Fence {
            all: self.fence,
            stripe: self.stripes[Self::stripe(tenant)],
        }
    }

    /// Keeps reads of `tenant` already under way from being stored.
    fn move_fence(&mut self, tenant: TenantId) {
        self.stripes[Self::stripe(tenant)] += 1;
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn forget(&mut self, tenant: TenantId) {
        if let Some(gone) = self.tenants.remove(&tenant.0) {
            self.changes -= gone.changed.len();
        }
        self.move_fence(tenant);
    }

    /// Keeps the map bounded before `tenant` is added or grows.
    fn make_room_for(&mut self, tenant: TenantId) {
        let full = self.tenants.len() >= MAX_TENANTS && !self.tenants.contains_key(&tenant.0);
        if full || self.changes >= MAX_CHANGES {
            self.tenants.clear();
            self.changes = 0;
            self.fence += 1;
        }
    }

    /// Runs `change` on a known tenant and keeps the counts and bounds.
    fn update(&mut self, tenant: TenantId, change: impl FnOnce(&mut TenantVersions)) {
        let revision = self.next_revision();
        if let Some(versions) = self.tenants.get_mut(&tenant.0) {
            let before = versions.changed.len();
            change(versions);
            versions.trim();
            versions.revision = revision;
            self.changes = self.changes - before + versions.changed.len();
        }
    }

    fn insert(&mut self, tenant: TenantId, fetched: Fetched) -> Stamp {
        self.make_room_for(tenant);
        let revision = self.next_revision();
        let mut versions = TenantVersions::from_fetched(fetched, revision);
        versions.trim();
        let stamp = versions.stamp();
        self.changes += versions.changed.len();
        if let Some(replaced) = self.tenants.insert(tenant.0, versions) {
            self.changes -= replaced.changed.len();
        }
        stamp
    }
}

impl Versions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stamp of `tenant` if known, and the fence to pass to [`Self::store_fetched`].
    pub fn get(&self, tenant: TenantId) -> (Option<Stamp>, Fence) {
        let state = self.lock();
        let stamp = state.tenants.get(&tenant.0).map(TenantVersions::stamp);
        (stamp, state.fence_of(tenant))
    }

    /// Stores versions read from Redis and answers the stamp a read starts from; `None` when
    /// something changed since the read began (the read is to be made again).
    pub fn store_fetched(&self, tenant: TenantId, fetched: Fetched, fence: Fence) -> Option<Stamp> {
        let mut state = self.lock();
        if state.fence_of(tenant) != fence {
            return None;
        }
        match state.tenants.get(&tenant.0).map(|known| known.epoch) {
            None => Some(state.insert(tenant, fetched)),
            // Two reads raced; within one epoch the larger numbers are the newer ones.
            Some(epoch) if epoch == fetched.epoch => {
                state.update(tenant, |known| {
                    known.seq = known.seq.max(fetched.seq);
                    known.floor = known.floor.max(fetched.floor);
                    known.record(&fetched.changed);
                });
                state.tenants.get(&tenant.0).map(TenantVersions::stamp)
            }
            // Two reads disagree on the epoch: which is newer cannot be told; read again.
            Some(_) => {
                state.forget(tenant);
                None
            }
        }
    }

    /// Whether an answer of `tenant` keyed in `stamp`'s epoch and depending on `dependencies` is
    /// still current for a read that began at `stamp`. `checked` is the answer's own memo of the
    /// revision it was last found current at: found current at the very versions the read
    /// began from, it is current for that read without another look (nor the lock), so that a
    /// hit costs one comparison until the tenant's versions move.
    pub fn is_current(
        &self,
        tenant: TenantId,
        stamp: Stamp,
        dependencies: &Dependencies,
        checked: &AtomicU64,
    ) -> bool {
        if stamp.revision != 0 && checked.load(Ordering::Relaxed) == stamp.revision {
            return true;
        }
        let state = self.lock();
        let Some(versions) = state
            .tenants
            .get(&tenant.0)
            .filter(|versions| versions.epoch == stamp.epoch)
        else {
            return false;
        };
        if checked.load(Ordering::Relaxed) == versions.revision {
            return true;
        }
        let current = versions.is_current(dependencies);
        if current {
            checked.store(versions.revision, Ordering::Relaxed);
        }
        current
    }

    /// Applies what a bus message or an increment reported: write `seq` of `epoch` changed
    /// `tags`, with the floor Redis keeps. For a tenant not yet known, or known in another epoch,
    /// nothing is stored: the tenant is read again, and reads already under way are kept from
    /// storing what they fetched.
    pub fn apply(&self, tenant: TenantId, epoch: u64, seq: u64, floor: u64, tags: &[Tag]) {
        let mut state = self.lock();
        match state.tenants.get(&tenant.0).map(|known| known.epoch) {
            Some(known) if known == epoch => {
                state.make_room_for(tenant);
                state.update(tenant, |versions| {
                    versions.seq = versions.seq.max(seq);
                    versions.floor = versions.floor.max(floor);
                    for &tag in tags {
                        versions.record_one(tag, seq);
                    }
                });
            }
            _ => state.forget(tenant),
        }
    }

    /// Moves a tenant into a namespace of this instance alone (a fresh random epoch), for a
    /// write that could not reach Redis.
    pub fn detach(&self, tenant: TenantId) {
        let mut state = self.lock();
        state.move_fence(tenant);
        state.insert(tenant, Fetched::fresh());
    }

    /// Numbers a write here (single-instance mode). A tenant not known starts a fresh epoch.
    pub fn bump(&self, tenant: TenantId, tags: &[Tag]) {
        let mut state = self.lock();
        state.move_fence(tenant);
        state.make_room_for(tenant);
        if !state.tenants.contains_key(&tenant.0) {
            state.insert(tenant, Fetched::fresh());
        }
        state.update(tenant, |versions| {
            versions.seq += 1;
            let seq = versions.seq;
            for &tag in tags {
                versions.record_one(tag, seq);
            }
        });
    }

    /// Forgets everything (after a reconnect or a flush).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.fence += 1;
        state.changes = 0;
        state.tenants.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Module;

    fn tenant() -> TenantId {
        TenantId(Uuid::new_v4())
    }

    fn tag(n: u64) -> Tag {
        Tag::value(Module::Leads, "status", &n.to_string())
    }

    fn known(versions: &Versions, t: TenantId, epoch: u64, seq: u64) {
        let (_, fence) = versions.get(t);
        versions.store_fetched(
            t,
            Fetched {
                epoch,
                seq,
                ..Fetched::default()
            },
            fence,
        );
    }

    fn current(versions: &Versions, t: TenantId, epoch: u64, pairs: Vec<(Tag, u64)>) -> bool {
        let stamp = Stamp {
            epoch,
            seq: 0,
            revision: 0,
        };
        versions.is_current(t, stamp, &Dependencies::new(pairs), &AtomicU64::new(0))
    }

    #[test]
    fn an_answer_is_current_until_one_of_its_tags_changes_after_it_was_built() {
        let versions = Versions::default();
        let t = tenant();
        known(&versions, t, 1, 10);
        let built = vec![(tag(1), 10), (tag(2), 10)];
        assert!(current(&versions, t, 1, built.clone()));
        versions.apply(t, 1, 11, 0, &[tag(3)]);
        assert!(
            current(&versions, t, 1, built.clone()),
            "another tag changed"
        );
        versions.apply(t, 1, 12, 0, &[tag(2)]);
        assert!(!current(&versions, t, 1, built));
        assert!(
            current(&versions, t, 1, vec![(tag(1), 12), (tag(2), 12)]),
            "an answer built after the change shows it"
        );
        assert!(!current(&versions, t, 2, vec![]), "another epoch");
    }

    #[test]
    fn a_memo_of_the_last_check_is_dropped_when_the_tenant_moves() {
        let versions = Versions::default();
        let t = tenant();
        known(&versions, t, 1, 10);
        let dependencies = Dependencies::new(vec![(tag(1), 10)]);
        let memo = AtomicU64::new(0);
        let before = versions.get(t).0.unwrap();
        assert!(versions.is_current(t, before, &dependencies, &memo));
        assert!(
            versions.is_current(t, before, &dependencies, &memo),
            "found current at the versions the read began from"
        );
        versions.apply(t, 1, 11, 0, &[tag(1)]);
        let after = versions.get(t).0.unwrap();
        assert!(!versions.is_current(t, after, &dependencies, &memo));
        assert!(
            !versions.is_current(t, Stamp::detached(), &dependencies, &AtomicU64::new(0)),
            "no memo matches a read that kept no versions"
        );
    }

    #[test]
    fn messages_in_any_order_and_stale_reads_never_lower_a_number() {
        let versions = Versions::default();
        let t = tenant();
        known(&versions, t, 1, 4);
        versions.apply(t, 1, 6, 0, &[tag(1)]);
        versions.apply(t, 1, 5, 0, &[tag(1)]);
        let (_, fence) = versions.get(t);
        let stamp = versions.store_fetched(
            t,
            Fetched {
                epoch: 1,
                seq: 5,
                floor: 0,
                changed: vec![(tag(1), 5)],
            },
            fence,
        );
        assert_eq!(
            stamp.map(|stamp| stamp.seq),
            Some(6),
            "an older read never lowers the number"
        );
        assert!(!current(&versions, t, 1, vec![(tag(1), 5)]));

        let other = tenant();
        let (_, fence) = versions.get(other);
        versions.apply(other, 1, 2, 0, &[tag(1)]);
        assert_eq!(versions.store_fetched(other, Fetched::fresh(), fence), None);
        let (_, fence) = versions.get(other);
        versions.apply(tenant(), 1, 2, 0, &[tag(1)]);
        assert!(
            versions
                .store_fetched(other, Fetched::fresh(), fence)
                .is_some(),
            "a change of another tenant does not keep a read from being stored"
        );
        let (_, fence) = versions.get(t);
        versions.clear();
        assert_eq!(versions.store_fetched(t, Fetched::fresh(), fence), None);
        assert_eq!(
            versions.get(other).0,
            None,
            "a read that began before a change of an unknown tenant is not stored"
        );
    }

    #[test]
    fn another_epoch_forgets_the_tenant() {
        let versions = Versions::default();
        let t = tenant();
        known(&versions, t, 1, 40);
        versions.apply(t, 2, 1, 0, &[tag(1)]);
        assert_eq!(versions.get(t).0, None, "the tenant is read again");
    }

    #[test]
    fn forgetting_old_changes_raises_the_floor_past_them() {
        let versions = Versions::default();
        let t = tenant();
        known(&versions, t, 1, 0);
        let early = vec![(tag(0), 1)];
        for seq in 1..=(MAX_TAGS as u64 + 1) {
            versions.apply(t, 1, seq, 0, &[tag(seq)]);
        }
        let state = versions.lock();
        let kept = &state.tenants[&t.0];
        assert!(kept.changed.len() <= MAX_TAGS);
        assert!(kept.floor > 1);
        assert_eq!(state.changes, kept.changed.len());
        drop(state);
        assert!(
            !current(&versions, t, 1, early),
            "an answer from before the forgotten changes is not current"
        );
        let latest = MAX_TAGS as u64 + 1;
        assert!(current(&versions, t, 1, vec![(tag(0), latest)]));
    }

    #[test]
    fn without_redis_a_write_is_numbered_here_and_a_forgotten_tenant_starts_a_new_epoch() {
        let versions = Versions::default();
        let t = tenant();
        versions.bump(t, &[tag(1)]);
        let before = versions.get(t).0.unwrap();
        assert_eq!(before.seq, 1);
        assert!(!current(&versions, t, before.epoch, vec![(tag(1), 0)]));
        versions.clear();
        versions.bump(t, &[tag(1)]);
        assert_ne!(versions.get(t).0.unwrap().epoch, before.epoch);
    }
}
