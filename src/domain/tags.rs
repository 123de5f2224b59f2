//! Cache tags: what a cached answer depends on, and what a write changes. An answer carries the
//! tags of the records it contains and of the sets it enumerates; a write changes only the tags
//! its change can alter, so an answer stays current while none of its tags changed.
//!
//! | tag | an answer depends on it when it | a write changes it when it |
//! |---|---|---|
//! | `module(M)` | is any answer of module M | never: an admin invalidates M, a seed fills M |
//! | `members(M)` | enumerates all of M, unfiltered (a list or count without filters, a bundle part) | creates or deletes a record of M |
//! | `record(M, id)` | contains record `id` | creates, updates or deletes `id`, or a cascade sets a reference of `id` to null |
//! | `value(M, f, v)` | filters on `f = v` | creates or deletes a record whose `f` is `v`, or changes `f` of a record from or to `v` |
//! | `search(M)` | searches with a `q` that has no key ([`search_key`]: no three letters or digits in a row) | creates or deletes a record, or changes a field `q` searches |
//! | `search_for(M, g)` | searches with a `q` whose key trigram ([`search_key`]) is `g` | does that to a record whose old or new value of such a field holds `g` |
//! | `totals(M)` | sums all records (stats) | creates or deletes a record, or changes a field the stats add up or group by |
//! | `totals_in(M, f, v)` | sums the records with `f = v` (stats of one account) | does that to a record whose `f` is `v` |
//!
//! A filtered answer enumerates only the records matching every filter, and a record entering or
//! leaving it matches each filter before or after: so the values of each filter say enough, and
//! a create of a lead with `status=new` leaves the `status=contacted` lists cached. Records never
//! move between pages on update: the order (`created_at`, `id`) never changes.
//!
//! A `q` search matches a record when one searched field holds `q`, case aside: that field then
//! holds every three letters or digits in a row of `q`, so a search depends on one of them (its
//! key), and a write changes the trigrams its searched fields held before and after. A lead
//! created as "Bench Mixed" leaves `q=hooli` cached.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::entities::EntitySpec;
use super::query::{FilterValue, Filters};
use super::Module;

/// One tag of a tenant: the module in the top bits (so that a write's modules are known from
/// its tags alone), a stable hash of what it names below them. Two names sharing a hash only
/// make one invalidate the other's answers too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u64);

const MODULE_SHIFT: u32 = 60;
const HASH_MASK: u64 = (1 << MODULE_SHIFT) - 1;

impl Tag {
    fn of(module: Module, parts: &[&[u8]]) -> Tag {
        let mut context = md5::Context::new();
        for part in parts {
            context.consume((part.len() as u64).to_be_bytes());
            context.consume(part);
        }
        let digest = context.finalize().0;
        let mut low = [0; 8];
        low.copy_from_slice(&digest[..8]);
        Tag(((module.index() as u64) << MODULE_SHIFT) | (u64::from_be_bytes(low) & HASH_MASK))
    }

    /// Every answer of `module`: changed only to drop them all (an admin invalidation, a seed).
    pub fn module(module: Module) -> Tag {
        Tag::of(module, &[b"module"])
    }

    /// All records of `module`: changed when one is created or deleted.
    pub fn members(module: Module) -> Tag {
        Tag::of(module, &[b"members"])
    }

    pub fn record(module: Module, id: Uuid) -> Tag {
        Tag::of(module, &[b"record", id.as_bytes()])
    }

    /// The records whose filter field `field` equals `value` (its canonical text).
    pub fn value(module: Module, field: &str, value: &str) -> Tag {
        Tag::of(module, &[b"value", field.as_bytes(), value.as_bytes()])
    }

    /// The records a `q` search of `module` may match.
    pub fn search(module: Module) -> Tag {
        Tag::of(module, &[b"search"])
    }

    /// The records a `q` search of `module` whose key is `gram` may match: those with a searched
    /// field holding `gram` ([`search_key`]).
    pub fn search_for(module: Module, gram: Gram) -> Tag {
        Tag::of(module, &[b"search", &gram])
    }

    /// What the stats of `module` add up.
    pub fn totals(module: Module) -> Tag {
        Tag::of(module, &[b"totals"])
    }

    /// What the stats of `module`'s records whose `field` equals `value` add up.
    pub fn totals_in(module: Module, field: &str, value: &str) -> Tag {
        Tag::of(module, &[b"totals_in", field.as_bytes(), value.as_bytes()])
    }

    /// The module the tag belongs to (`None` for a value no tag has).
    pub fn module_of(self) -> Option<Module> {
        Module::ALL.get((self.0 >> MODULE_SHIFT) as usize).copied()
    }
}

/// The modules `tags` belong to, each once, in the contract's order.
pub fn modules_of(tags: &[Tag]) -> Vec<Module> {
    let mut modules: Vec<Module> = tags.iter().filter_map(|tag| tag.module_of()).collect();
    modules.sort_unstable();
    modules.dedup();
    modules
}

/// Sorts and removes repeats.
pub fn normalized(mut tags: Vec<Tag>) -> Vec<Tag> {
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// Three ASCII letters (lowercase) or digits.
pub type Gram = [u8; 3];

/// The trigrams of `chars` mapped by `letter`: every three mapped characters in a row.
fn grams(chars: impl Iterator<Item = Option<u8>>) -> Vec<Gram> {
    let chars: Vec<Option<u8>> = chars.collect();
    chars
        .windows(3)
        .filter_map(|window| Some([window[0]?, window[1]?, window[2]?]))
        .collect()
}

/// The trigram a search for `q` depends on, `None` when `q` has no three letters or digits in a
/// row. PostgreSQL's `ILIKE` compares lowercased text; only characters whose lowercase is the
/// same in every collation count: ASCII lowercase letters and digits, and uppercase letters
/// but `I` (Turkish lowercases it to `ı`). Of those trigrams, the greatest: any would do, and
/// one that comes late in the alphabet is held by fewer records.
pub fn search_key(q: &str) -> Option<Gram> {
    let letter = |c: char| match c {
        'a'..='z' | '0'..='9' => Some(c as u8),
        'A'..='Z' if c != 'I' => Some(c.to_ascii_lowercase() as u8),
        _ => None,
    };
    grams(q.chars().map(letter)).into_iter().max()
}

/// The trigrams a field's text holds, as [`search_key`] picks them from a search: each
/// character counted as its lowercase (its first character, as `ILIKE` lowercases one character
/// to one), a trigram of ASCII letters and digits only. Every search whose key this text does
/// not hold fails to match it.
pub fn held_grams(text: &str) -> Vec<Gram> {
    let letter = |c: char| {
        let lower = c.to_lowercase().next()?;
        (lower.is_ascii_lowercase() || lower.is_ascii_digit()).then_some(lower as u8)
    };
    grams(text.chars().map(letter))
}

/// The canonical text of a filter value, as a record's field is compared with it.
fn filter_text(value: &FilterValue) -> String {
    match value {
        FilterValue::Text(text) => text.clone(),
        FilterValue::Uuid(id) => id.hyphenated().to_string(),
    }
}

/// The tags of a read of `spec`'s records through `filters` (a list or a count): each filter's
/// value and the search, or all of the module's records when it has neither; a list adds its
/// records' tags. (Every answer also depends on its module's tag: [`Tag::module`].)
pub fn read_tags(spec: &EntitySpec, filters: &Filters) -> Vec<Tag> {
    let module = spec.module;
    let mut tags: Vec<Tag> = filters
        .values()
        .map(|(field, value)| Tag::value(module, field, &filter_text(value)))
        .collect();
    if let Some(q) = &filters.q {
        tags.push(match search_key(q) {
            Some(gram) => Tag::search_for(module, gram),
            None => Tag::search(module),
        });
    }
    if tags.is_empty() {
        tags.push(Tag::members(module));
    }
    tags
}

/// A record's field as filters compare it; `None` for null (no filter value matches null).
fn field_text(record: &Map<String, Value>, field: &str) -> Option<String> {
    match record.get(field)? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// The tags a write of one `spec` record changes, from the record before and after it (as the
/// API answers them): `None` before a create and after a delete.
pub fn changed_tags(
    spec: &EntitySpec,
    before: Option<&Map<String, Value>>,
    after: Option<&Map<String, Value>>,
) -> Vec<Tag> {
    let module = spec.module;
    let id = after
        .or(before)
        .and_then(|record| field_text(record, "id"))
        .and_then(|id| Uuid::try_parse(&id).ok());
    let mut tags = Vec::new();
    if let Some(id) = id {
        tags.push(Tag::record(module, id));
    }
    let records: Vec<&Map<String, Value>> = before.into_iter().chain(after).collect();
    let changed = |field: &str| match (before, after) {
        (Some(before), Some(after)) => before.get(field) != after.get(field),
        // A create or a delete: the record enters or leaves every set it belongs to.
        _ => true,
    };
    if before.is_none() || after.is_none() {
        tags.push(Tag::members(module));
    }
    for filter in spec.filters.iter().filter(|filter| changed(filter.name)) {
        for record in &records {
            if let Some(text) = field_text(record, filter.name) {
                tags.push(Tag::value(module, filter.name, &text));
            }
        }
    }
    let searched: Vec<&str> = spec
        .search
        .iter()
        .copied()
        .filter(|field| changed(field))
        .collect();
    if !searched.is_empty() {
        tags.push(Tag::search(module));
        for record in &records {
            for field in &searched {
                if let Some(text) = field_text(record, field) {
                    let held = held_grams(&text);
                    tags.extend(held.into_iter().map(|gram| Tag::search_for(module, gram)));
                }
            }
        }
    }
    if spec.totals.iter().any(|field| changed(field)) {
        tags.push(Tag::totals(module));
        if let Some(scope) = spec.totals_scope {
            for record in &records {
                if let Some(text) = field_text(record, scope) {
                    tags.push(Tag::totals_in(module, scope, &text));
                }
            }
        }
    }
    tags
}

/// The tags of records of `spec` whose reference `field` a cascade set from `old` to null.
pub fn cascade_tags(spec: &EntitySpec, field: &str, old: Uuid, ids: &[Uuid]) -> Vec<Tag> {
    let module = spec.module;
    let mut tags: Vec<Tag> = ids.iter().map(|&id| Tag::record(module, id)).collect();
    if !ids.is_empty() && spec.filter(field).is_some() {
        tags.push(Tag::value(module, field, &old.hyphenated().to_string()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entities::{CONTACTS, LEADS, OPPORTUNITIES};
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn tags_keep_their_module_and_tell_names_apart() {
        let id = Uuid::new_v4();
        for module in Module::ALL {
            for tag in [
                Tag::module(module),
                Tag::members(module),
                Tag::record(module, id),
                Tag::value(module, "stage", "proposal"),
                Tag::search(module),
                Tag::totals(module),
                Tag::totals_in(module, "account_id", "x"),
            ] {
                assert_eq!(tag.module_of(), Some(module));
            }
        }
        assert_ne!(
            Tag::value(Module::Leads, "ab", "c"),
            Tag::value(Module::Leads, "a", "bc")
        );
        assert_ne!(
            Tag::module(Module::Leads),
            Tag::module(Module::Opportunities)
        );
    }

    #[test]
    fn a_search_depends_on_its_greatest_trigram_of_letters_and_digits() {
        assert_eq!(search_key("emma"), Some(*b"mma"));
        assert_eq!(search_key("EMMA"), Some(*b"mma"));
        assert_eq!(search_key("al-pha"), Some(*b"pha"));
        assert_eq!(search_key("Q3 2026"), Some(*b"202"));
        assert_eq!(search_key("em"), None);
        assert_eq!(search_key("a b c d"), None);
        // `I` lowercases to `ı` in a Turkish collation: never part of a key.
        assert_eq!(search_key("LIMA"), None);
        assert_eq!(search_key("lima"), Some(*b"lim"));
    }

    #[test]
    fn a_text_holds_the_key_of_every_search_it_matches() {
        let text = "Dr. Émile KELVIN-Öz \u{212a}elvin İstanbul";
        let held = held_grams(text);
        for q in ["kelvin", "KELVIN", "elvin", "stanbul", "ist", "mil"] {
            let key = search_key(q).expect("a key");
            assert!(held.contains(&key), "{q}: {:?}", std::str::from_utf8(&key));
        }
    }

    #[test]
    fn a_created_record_changes_the_searches_its_text_may_match_only() {
        let id = Uuid::new_v4();
        let lead = record(
            json!({"id": id, "first_name": "Bench", "last_name": "Mixed 3-17",
                                 "status": "new"}),
        );
        let tags = changed_tags(&LEADS, None, Some(&lead));
        for q in ["bench", "MIXED", "ixe"] {
            let key = search_key(q).expect("a key");
            assert!(tags.contains(&Tag::search_for(Module::Leads, key)), "{q}");
        }
        let other = search_key("hooli").expect("a key");
        assert!(!tags.contains(&Tag::search_for(Module::Leads, other)));
        assert!(tags.contains(&Tag::search(Module::Leads)));
        // An update of a field no search reads changes no search.
        let scored = record(
            json!({"id": id, "first_name": "Bench", "last_name": "Mixed 3-17",
                                   "status": "new", "score": 5}),
        );
        let tags = changed_tags(&LEADS, Some(&lead), Some(&scored));
        assert!(!tags.contains(&Tag::search(Module::Leads)));
    }

    #[test]
    fn an_amount_update_changes_the_record_and_the_totals_only() {
        let id = Uuid::new_v4();
        let account = Uuid::new_v4().to_string();
        let before = record(
            json!({"id": id, "name": "a", "stage": "proposal", "amount": 1.0,
                                   "account_id": account}),
        );
        let after = record(
            json!({"id": id, "name": "a", "stage": "proposal", "amount": 2.0,
                                  "account_id": account}),
        );
        let tags = changed_tags(&OPPORTUNITIES, Some(&before), Some(&after));
        assert_eq!(
            normalized(tags),
            normalized(vec![
                Tag::record(Module::Opportunities, id),
                Tag::totals(Module::Opportunities),
                Tag::totals_in(Module::Opportunities, "account_id", &account),
            ])
        );
    }

    #[test]
    fn a_filter_change_changes_the_old_and_new_values() {
        let id = Uuid::new_v4();
        let account = Uuid::new_v4();
        let before = record(json!({"id": id, "last_name": "x", "account_id": account}));
        let after = record(json!({"id": id, "last_name": "y", "account_id": null}));
        let tags = normalized(changed_tags(&CONTACTS, Some(&before), Some(&after)));
        assert_eq!(
            tags,
            normalized(vec![
                Tag::record(Module::Contacts, id),
                Tag::value(Module::Contacts, "account_id", &account.to_string()),
                Tag::search(Module::Contacts),
            ])
        );
    }

    #[test]
    fn a_create_or_delete_changes_all_records_and_only_its_own_values() {
        let id = Uuid::new_v4();
        let account = Uuid::new_v4().to_string();
        let deal = record(
            json!({"id": id, "name": "a", "stage": "proposal", "amount": 1.0,
                                 "account_id": account}),
        );
        let expected = normalized(vec![
            Tag::record(Module::Opportunities, id),
            Tag::members(Module::Opportunities),
            Tag::value(Module::Opportunities, "stage", "proposal"),
            Tag::value(Module::Opportunities, "account_id", &account),
            Tag::search(Module::Opportunities),
            Tag::totals(Module::Opportunities),
            Tag::totals_in(Module::Opportunities, "account_id", &account),
        ]);
        let created = normalized(changed_tags(&OPPORTUNITIES, None, Some(&deal)));
        assert_eq!(created, expected);
        assert_eq!(
            normalized(changed_tags(&OPPORTUNITIES, Some(&deal), None)),
            expected
        );
        assert!(!created.contains(&Tag::module(Module::Opportunities)));
        assert!(!created.contains(&Tag::value(Module::Opportunities, "stage", "qualification")));
        assert_eq!(modules_of(&created), vec![Module::Opportunities]);
    }
}
