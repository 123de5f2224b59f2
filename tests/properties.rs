//! Property tests of the pure parts of the service: canonical query parameters and cache keys,
//! signed cursors, and every field validator's accepted and rejected ranges.
//!
//! Each property runs a modest number of cases so that the whole binary takes a few seconds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;

use aishacrm::auth::TenantId;
use aishacrm::cache::cache_key;
use aishacrm::domain::cursor::{Cursor, CursorCodec};
use aishacrm::domain::entities::{self, EntitySpec, FilterKind};
use aishacrm::domain::fields::{parse_body, FieldKind, FieldSpec, FieldValue, Mode, Presence};
use aishacrm::domain::query::{parse_count, parse_none, ListQuery, StatsQuery};
use aishacrm::domain::Module;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bigdecimal::BigDecimal;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};
use uuid::Uuid;

fn config() -> ProptestConfig {
    ProptestConfig {
        // No regression files: this binary must leave the source tree as it found it.
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical query parameters and cache keys
// ---------------------------------------------------------------------------------------------

/// A cached route: module, operation and the parameters it takes.
#[derive(Debug, Clone)]
struct Route {
    module: &'static str,
    operation: &'static str,
    params: Vec<&'static str>,
}

impl Route {
    fn spec(&self) -> Option<&'static EntitySpec> {
        entities::ALL
            .iter()
            .copied()
            .find(|spec| spec.module.name() == self.module)
    }

    fn module(&self) -> Module {
        Module::from_name(self.module).expect("a route of a known module")
    }
}

fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for spec in entities::ALL {
        let filters: Vec<&'static str> = spec.filters.iter().map(|filter| filter.name).collect();
        let mut list = vec!["q", "limit", "cursor"];
        list.extend(&filters);
        let mut count = vec!["q"];
        count.extend(&filters);
        routes.push(Route {
            module: spec.module.name(),
            operation: "list",
            params: list,
        });
        routes.push(Route {
            module: spec.module.name(),
            operation: "count",
            params: count,
        });
    }
    routes.push(Route {
        module: "opportunities",
        operation: "stats",
        params: vec!["account_id"],
    });
    routes.push(Route {
        module: "dashboard",
        operation: "bundle",
        params: vec![],
    });
    routes
}

/// Parameter values: anything a client can send, including the characters that separate
/// parameters and names from values.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{1,12}",
        "\\PC{1,16}",
        "[&=+%# ?;a-b]{1,10}",
        Just("a&b=c".to_owned()),
        any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
    ]
}

/// A valid `limit` value, as text.
fn limit_value() -> impl Strategy<Value = String> {
    (1i64..=200).prop_map(|limit| limit.to_string())
}

/// The tenant and cursor secret the route's queries are parsed for (a cursor is valid for one).
const QUERY_TENANT: TenantId = TenantId(Uuid::from_u128(7));
fn codec() -> CursorCodec {
    CursorCodec::new(b"property secret")
}

/// Values `name` of `route` accepts: any text for `q` and text filters, the listed values of an
/// enum, UUIDs, signed cursors and limits.
fn value_of(route: &Route, name: &str) -> BoxedStrategy<String> {
    let uuid = || {
        any::<u128>()
            .prop_map(|n| Uuid::from_u128(n).to_string())
            .boxed()
    };
    match name {
        "q" => param_value().boxed(),
        "limit" => limit_value().boxed(),
        "account_id" if route.operation == "stats" => uuid(),
        "cursor" => {
            let module = route.module();
            cursor()
                .prop_map(move |cursor| codec().encode(QUERY_TENANT, module, cursor))
                .boxed()
        }
        filter => match route
            .spec()
            .and_then(|spec| spec.filter(filter))
            .map(|f| f.kind)
        {
            Some(FilterKind::Enum(allowed)) => {
                select(allowed.to_vec()).prop_map(str::to_owned).boxed()
            }
            Some(FilterKind::Uuid) => uuid(),
            Some(FilterKind::Text { .. }) | None => param_value().boxed(),
        },
    }
}

/// A route and a set of its parameters (each at most once) with values; `q` is never empty
/// here (an empty `q` means no search, tested on its own).
fn route_and_params() -> impl Strategy<Value = (Route, Vec<(String, String)>)> {
    route_and_params_with_others().prop_map(|(route, params, _)| (route, params))
}

/// [`route_and_params`], and another valid value for each parameter.
fn route_and_params_with_others(
) -> impl Strategy<Value = (Route, Vec<(String, String)>, Vec<String>)> {
    select(routes()).prop_flat_map(|route| {
        let names = route.params.clone();
        let picks = proptest::sample::subsequence(names.clone(), 0..=names.len());
        (Just(route), picks).prop_flat_map(|(route, picked)| {
            let values: Vec<BoxedStrategy<String>> =
                picked.iter().map(|name| value_of(&route, name)).collect();
            let others: Vec<BoxedStrategy<String>> =
                picked.iter().map(|name| value_of(&route, name)).collect();
            let names: Vec<String> = picked.iter().map(|name| (*name).to_owned()).collect();
            (Just(route), Just(names), values, others).prop_map(|(route, names, values, others)| {
                (
                    route,
                    names.into_iter().zip(values).collect::<Vec<_>>(),
                    others,
                )
            })
        })
    })
}

fn encode(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).expect("encoding a query string")
}

/// The canonical form the route's own parser gives `raw`, or `None` when it refuses it.
fn try_canonical(route: &Route, raw: &str) -> Option<Vec<(String, String)>> {
    let owned = |params: Vec<(&str, Cow<'_, str>)>| -> Vec<(String, String)> {
        params
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_owned()))
            .collect()
    };
    match (route.operation, route.spec()) {
        ("list", Some(spec)) => ListQuery::parse(spec, raw, &codec(), QUERY_TENANT)
            .ok()
            .map(|query| owned(query.canonical())),
        ("count", Some(spec)) => parse_count(spec, raw)
            .ok()
            .map(|filters| owned(filters.canonical())),
        ("stats", _) => StatsQuery::parse(raw)
            .ok()
            .map(|query| owned(query.canonical())),
        _ => parse_none(raw).ok().map(owned),
    }
}

fn canonical(route: &Route, raw: &str) -> Vec<(String, String)> {
    try_canonical(route, raw).unwrap_or_else(|| panic!("{raw:?} is a valid query of {route:?}"))
}

/// The canonical form of one cursor: the position it names.
fn canonical_cursor(route: &Route, text: &str) -> String {
    let cursor = codec()
        .decode(QUERY_TENANT, route.module(), text)
        .expect("a cursor of the route");
    format!("{}.{}", cursor.created_at.timestamp_micros(), cursor.id)
}

/// `params` as [`cache_key`] takes them.
fn borrowed(params: &[(String, String)]) -> Vec<(&str, Cow<'_, str>)> {
    params
        .iter()
        .map(|(name, value)| (name.as_str(), Cow::Borrowed(value.as_str())))
        .collect()
}

/// What the canonical form of `params` must be: sorted by name, `limit` filled in on lists,
/// an empty `q` dropped.
fn expected_canonical(route: &Route, params: &[(String, String)]) -> Vec<(String, String)> {
    let mut sorted: BTreeMap<String, String> = params.iter().cloned().collect();
    if let Some(cursor) = sorted.get_mut("cursor") {
        *cursor = canonical_cursor(route, cursor);
    }
    if route.operation == "list" {
        let limit = sorted.get("limit").map_or(50, |text| text.parse().unwrap());
        sorted.insert("limit".into(), limit.to_string());
    }
    if sorted.get("q").is_some_and(String::is_empty) {
        sorted.remove("q");
    }
    sorted.into_iter().collect()
}

fn tenant() -> impl Strategy<Value = TenantId> {
    any::<u128>().prop_map(|n| TenantId(Uuid::from_u128(n)))
}

/// Everything a key is made of.
#[derive(Debug, Clone, PartialEq)]
struct KeyParts {
    tenant: TenantId,
    module: String,
    operation: String,
    params: Vec<(String, String)>,
    epoch: u64,
}

impl KeyParts {
    fn key(&self) -> [u8; 16] {
        cache_key(
            self.tenant,
            &self.module,
            &self.operation,
            &borrowed(&self.params),
            self.epoch,
        )
    }
}

fn key_parts() -> impl Strategy<Value = KeyParts> {
    (
        tenant(),
        "\\PC{0,12}",
        "\\PC{0,8}",
        prop::collection::vec(("\\PC{0,6}", "\\PC{0,8}"), 0..4),
        any::<u64>(),
    )
        .prop_map(|(tenant, module, operation, params, epoch)| KeyParts {
            tenant,
            module,
            operation,
            params,
            epoch,
        })
}

/// One change to one part of a key; `None` when the change would leave the parts equal.
fn mutate(parts: &KeyParts, which: u8, seed: u128, text: &str) -> Option<KeyParts> {
    let mut changed = parts.clone();
    match which % 8 {
        0 => changed.tenant = TenantId(Uuid::from_u128(seed)),
        1 => changed.epoch = changed.epoch.wrapping_add(1 + (seed as u64) % 1000),
        2 => changed.module.push_str(text),
        3 => changed.operation.push_str(text),
        4 => changed.params.push((text.to_owned(), String::new())),
        5 => {
            let index = (seed as usize) % changed.params.len().max(1);
            changed.params.get_mut(index)?.1.push_str(text);
        }
        6 => {
            let index = (seed as usize) % changed.params.len().max(1);
            changed.params.get_mut(index)?.0.push_str(text);
        }
        _ => {
            let index = (seed as usize) % changed.params.len().max(1);
            if index >= changed.params.len() {
                return None;
            }
            changed.params.remove(index);
        }
    }
    (changed != *parts).then_some(changed)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_permutation_of_the_same_parameters_has_one_canonical_form_and_one_key(
        (route, params) in route_and_params(),
        shuffled in any::<u64>(),
        tenant in tenant(),
    ) {
        let mut permuted = params.clone();
        // A deterministic shuffle from the generated seed (Fisher-Yates).
        let mut state = shuffled;
        for i in (1..permuted.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            permuted.swap(i, (state >> 33) as usize % (i + 1));
        }
        let a = canonical(&route, &encode(&params));
        let b = canonical(&route, &encode(&permuted));
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &expected_canonical(&route, &params));
        prop_assert_eq!(
            cache_key(tenant, route.module, route.operation, &borrowed(&a), 1),
            cache_key(tenant, route.module, route.operation, &borrowed(&b), 1)
        );
    }

    #[test]
    fn defaults_given_or_not_and_an_empty_q_share_the_key(
        (route, params) in route_and_params(),
        position in any::<usize>(),
        tenant in tenant(),
    ) {
        let base = canonical(&route, &encode(&params));
        let key = cache_key(tenant, route.module, route.operation, &borrowed(&base), 1);
        let mut variants: Vec<Vec<(String, String)>> = Vec::new();
        let names: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
        if route.operation == "list" && !names.contains(&"limit") {
            for written in ["50", "050", "+50", "0050"] {
                let mut with = params.clone();
                with.insert(position % (with.len() + 1), ("limit".into(), written.into()));
                variants.push(with);
            }
        }
        if route.params.contains(&"q") && !names.contains(&"q") {
            let mut with = params.clone();
            with.insert(position % (with.len() + 1), ("q".into(), String::new()));
            variants.push(with);
        }
        for variant in variants {
            let raw = encode(&variant);
            let same = canonical(&route, &raw);
            prop_assert_eq!(&same, &base, "{}", raw);
            prop_assert_eq!(
                cache_key(tenant, route.module, route.operation, &borrowed(&same), 1),
                key,
                "{}", raw
            );
        }
        // A bare `q=` in the raw text, not only as serde_urlencoded writes it.
        if route.params.contains(&"q") && !names.contains(&"q") {
            let raw = format!("q=&{}", encode(&params));
            prop_assert_eq!(canonical(&route, raw.trim_end_matches('&')), base.clone());
            let raw = format!("{}&q", encode(&params));
            prop_assert_eq!(canonical(&route, raw.trim_start_matches('&')), base);
        }
    }

    #[test]
    fn a_different_parameter_name_or_value_is_a_different_key(
        (route, params, others) in route_and_params_with_others(),
        index in any::<usize>(),
        tenant in tenant(),
    ) {
        prop_assume!(!params.is_empty());
        let base = canonical(&route, &encode(&params));
        let key = cache_key(tenant, route.module, route.operation, &borrowed(&base), 1);
        let index = index % params.len();

        // Another value for one parameter.
        let mut changed = params.clone();
        let (name, value) = &mut changed[index];
        let other_value = others[index].clone();
        if name == "limit" {
            prop_assume!(value.parse::<i64>().unwrap() != other_value.parse::<i64>().unwrap());
        } else if name == "cursor" {
            prop_assume!(canonical_cursor(&route, value) != canonical_cursor(&route, &other_value));
        } else {
            prop_assume!(*value != other_value);
        }
        *value = other_value;
        let other = canonical(&route, &encode(&changed));
        prop_assert_ne!(&other, &base);
        prop_assert_ne!(
            cache_key(tenant, route.module, route.operation, &borrowed(&other), 1),
            key
        );

        // The parameter left out (unless leaving it out means its default).
        let mut fewer = params.clone();
        let (name, value) = fewer.remove(index);
        if !(name == "limit" && value == "50") {
            let other = canonical(&route, &encode(&fewer));
            prop_assert_ne!(&other, &base);
            prop_assert_ne!(
                cache_key(tenant, route.module, route.operation, &borrowed(&other), 1),
                key
            );
        }

        // The same value under another name the route takes.
        let used: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
        if let Some(free) = route.params.iter().find(|name| !used.contains(name) && **name != "limit") {
            let mut renamed = params.clone();
            if renamed[index].0 != "limit" {
                renamed[index].0 = (*free).to_owned();
                // Only where the other parameter takes the value at all.
                if let Some(other) = try_canonical(&route, &encode(&renamed)) {
                prop_assert_ne!(&other, &base);
                prop_assert_ne!(
                    cache_key(tenant, route.module, route.operation, &borrowed(&other), 1),
                    key
                );
                }
            }
        }
    }

    #[test]
    fn a_value_holding_separators_is_not_two_parameters(
        spec in select(entities::ALL.to_vec()),
        first in "[a-z0-9 ]{0,8}",
        second in "[a-z0-9]{1,8}",
        tenant in tenant(),
    ) {
        // `q` = "first&<filter>=second" versus `q` = "first" and `<filter>` = "second".
        let filter = spec.filters[0];
        let second = match filter.kind {
            FilterKind::Enum(allowed) => allowed[second.len() % allowed.len()].to_owned(),
            FilterKind::Uuid => Uuid::from_u128(second.len() as u128).to_string(),
            FilterKind::Text { .. } => second,
        };
        let filter = filter.name;
        let joined = vec![("q".to_owned(), format!("{first}&{filter}={second}"))];
        let mut split = vec![("q".to_owned(), first.clone())];
        split.push((filter.to_owned(), second.clone()));
        for operation in ["list", "count"] {
            let route = Route { module: spec.module.name(), operation, params: Vec::new() };
            let a = canonical(&route, &encode(&joined));
            let b = canonical(&route, &encode(&split));
            prop_assert_ne!(&a, &b);
            prop_assert_ne!(
                cache_key(tenant, spec.module.name(), operation, &borrowed(&a), 1),
                cache_key(tenant, spec.module.name(), operation, &borrowed(&b), 1)
            );
        }
        // The same at the key level with any names.
        let p1 = vec![("a".to_owned(), format!("{first}&b={second}"))];
        let p2 = vec![("a".to_owned(), first.clone()), ("b".to_owned(), second.clone())];
        prop_assert_ne!(
            cache_key(tenant, "m", "o", &borrowed(&p1), 1),
            cache_key(tenant, "m", "o", &borrowed(&p2), 1)
        );
        let p3 = vec![("a".to_owned(), format!("{first}={second}"))];
        let p4 = vec![(format!("a={first}"), second.clone())];
        prop_assert_ne!(
            cache_key(tenant, "m", "o", &borrowed(&p3), 1),
            cache_key(tenant, "m", "o", &borrowed(&p4), 1)
        );
    }

    #[test]
    fn parts_whose_concatenations_are_equal_have_different_keys(
        text in "\\PC{1,24}",
        cuts in (any::<usize>(), any::<usize>()),
        tenant in tenant(),
    ) {
        let chars: Vec<char> = text.chars().collect();
        let (i, j) = (cuts.0 % (chars.len() + 1), cuts.1 % (chars.len() + 1));
        prop_assume!(i != j);
        let split = |at: usize| -> (String, String) {
            (chars[..at].iter().collect(), chars[at..].iter().collect())
        };
        let ((a1, a2), (b1, b2)) = (split(i), split(j));
        // module + operation
        prop_assert_ne!(
            cache_key(tenant, &a1, &a2, &[], 1),
            cache_key(tenant, &b1, &b2, &[], 1)
        );
        // operation + first parameter name
        prop_assert_ne!(
            cache_key(tenant, "m", &a1, &[(&a2, "v".into())], 1),
            cache_key(tenant, "m", &b1, &[(&b2, "v".into())], 1)
        );
        // parameter name + value
        prop_assert_ne!(
            cache_key(tenant, "m", "o", &[(&a1, Cow::Borrowed(a2.as_str()))], 1),
            cache_key(tenant, "m", "o", &[(&b1, Cow::Borrowed(b2.as_str()))], 1)
        );
        // one value versus two parameters
        let one = vec![("n".to_owned(), text.clone())];
        let two = vec![("n".to_owned(), a1.clone()), (a2.clone(), String::new())];
        prop_assert_ne!(
            cache_key(tenant, "m", "o", &borrowed(&one), 1),
            cache_key(tenant, "m", "o", &borrowed(&two), 1)
        );
        // the last parameter value versus the epoch
        prop_assert_ne!(
            cache_key(tenant, "m", "o", &[("n", a1.clone().into())], 1),
            cache_key(tenant, "m", "o", &[("n", a1.into())], 2)
        );
        // the tenant's bytes versus the module
        let tenant_text = String::from_utf8_lossy(tenant.0.as_bytes()).into_owned();
        prop_assert_ne!(
            cache_key(tenant, &a2, "o", &[], 1),
            cache_key(TenantId(Uuid::nil()), &format!("{tenant_text}{a2}"), "o", &[], 1)
        );
    }

    #[test]
    fn any_difference_in_tenant_module_operation_params_or_epoch_changes_the_key(
        parts in key_parts(),
        which in any::<u8>(),
        seed in any::<u128>(),
        text in "\\PC{1,4}",
    ) {
        let key = parts.key();
        prop_assert_eq!(key, parts.clone().key(), "keys are deterministic");
        if let Some(changed) = mutate(&parts, which, seed, &text) {
            prop_assert_ne!(changed.key(), key, "{:?} versus {:?}", parts, changed);
        }
    }

    #[test]
    fn different_tenants_or_routes_never_share_a_key_for_the_same_query(
        (route, params) in route_and_params(),
        tenants in (tenant(), tenant()),
    ) {
        prop_assume!(tenants.0 != tenants.1);
        let canonical = canonical(&route, &encode(&params));
        let key = cache_key(tenants.0, route.module, route.operation, &borrowed(&canonical), 1);
        prop_assert_ne!(
            cache_key(tenants.1, route.module, route.operation, &borrowed(&canonical), 1),
            key
        );
        for other in routes() {
            if other.module != route.module || other.operation != route.operation {
                prop_assert_ne!(
                    cache_key(tenants.0, other.module, other.operation, &borrowed(&canonical), 1),
                    key
                );
            }
        }
        prop_assert_ne!(
            cache_key(tenants.0, route.module, route.operation, &borrowed(&canonical), 2),
            key,
            "another epoch"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------------------------

/// 9999-12-31T23:59:59.999999Z in microseconds since the epoch.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

fn cursor() -> impl Strategy<Value = Cursor> {
    (
        prop_oneof![
            0..=MAX_MICROS,
            0i64..=1_000_000,
            (MAX_MICROS - 1_000_000)..=MAX_MICROS,
            1_600_000_000_000_000i64..=1_900_000_000_000_000,
        ],
        any::<u128>(),
    )
        .prop_map(|(micros, id)| Cursor {
            created_at: DateTime::from_timestamp_micros(micros).unwrap(),
            id: Uuid::from_u128(id),
        })
}

fn module() -> impl Strategy<Value = Module> {
    select(
        entities::ALL
            .iter()
            .map(|spec| spec.module)
            .collect::<Vec<_>>(),
    )
}

fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..64)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cursors_round_trip(
        secret in secret(),
        tenant in tenant(),
        module in module(),
        cursor in cursor(),
    ) {
        let codec = CursorCodec::new(&secret);
        let text = codec.encode(tenant, module, cursor);
        prop_assert!(
            text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe text: {}", text
        );
        prop_assert_eq!(codec.decode(tenant, module, &text), Some(cursor));
        // The same codec secret in another instance (replicas sharing JWT_SECRET) reads it too.
        prop_assert_eq!(CursorCodec::new(&secret).decode(tenant, module, &text), Some(cursor));
    }

    #[test]
    fn any_single_bit_flip_of_a_cursor_is_rejected(
        secret in secret(),
        tenant in tenant(),
        module in module(),
        cursor in cursor(),
        position in any::<usize>(),
        bit in 0u8..7,
        raw_bit in 0u8..8,
    ) {
        let codec = CursorCodec::new(&secret);
        let text = codec.encode(tenant, module, cursor);
        // A flip in the text (bits 0..=6 keep it ASCII, so it stays a valid &str).
        let mut bytes = text.clone().into_bytes();
        let index = position % bytes.len();
        bytes[index] ^= 1 << bit;
        let flipped = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(codec.decode(tenant, module, &flipped), None, "{} -> {}", text, flipped);
        // A flip in the signed bytes, encoded again.
        let mut raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let index = position % raw.len();
        raw[index] ^= 1 << raw_bit;
        let reencoded = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert_eq!(codec.decode(tenant, module, &reencoded), None);
    }

    #[test]
    fn truncated_or_extended_cursors_are_rejected(
        secret in secret(),
        tenant in tenant(),
        module in module(),
        cursor in cursor(),
        keep in any::<usize>(),
        suffix in prop_oneof!["[A-Za-z0-9_=-]{1,8}", "\\PC{1,4}", Just("=".to_owned()), Just("==".to_owned())],
        prefix in prop_oneof!["[A-Za-z0-9_-]{1,4}", Just(" ".to_owned())],
    ) {
        let codec = CursorCodec::new(&secret);
        let text = codec.encode(tenant, module, cursor);
        let truncated = &text[..keep % text.len()];
        prop_assert_eq!(codec.decode(tenant, module, truncated), None, "{}", truncated);
        let extended = format!("{text}{suffix}");
        prop_assert_eq!(codec.decode(tenant, module, &extended), None, "{}", extended);
        let prefixed = format!("{prefix}{text}");
        prop_assert_eq!(codec.decode(tenant, module, &prefixed), None, "{}", prefixed);
        // Dropping the last character and adding another in its place.
        let mut swapped = text[..text.len() - 1].to_owned();
        let last = text.as_bytes()[text.len() - 1];
        swapped.push(if last == b'A' { 'B' } else { 'A' });
        prop_assert_eq!(codec.decode(tenant, module, &swapped), None);
    }

    #[test]
    fn a_cursor_for_another_tenant_module_or_secret_is_rejected(
        secret in secret(),
        other_secret in secret(),
        tenants in (tenant(), tenant()),
        modules in (module(), module()),
        cursor in cursor(),
    ) {
        let codec = CursorCodec::new(&secret);
        let (tenant, other_tenant) = tenants;
        let (module, other_module) = modules;
        let text = codec.encode(tenant, module, cursor);
        if other_tenant != tenant {
            prop_assert_eq!(codec.decode(other_tenant, module, &text), None);
        }
        if other_module != module {
            prop_assert_eq!(codec.decode(tenant, other_module, &text), None);
        }
        if other_secret != secret {
            prop_assert_eq!(CursorCodec::new(&other_secret).decode(tenant, module, &text), None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field validators
// ---------------------------------------------------------------------------------------------

/// Every writable field with its entity.
fn fields_where(kind: fn(&FieldKind) -> bool) -> Vec<(&'static EntitySpec, &'static FieldSpec)> {
    let pairs: Vec<_> = entities::ALL
        .iter()
        .flat_map(|spec| spec.fields.iter().map(move |field| (*spec, field)))
        .filter(|(_, field)| kind(&field.kind))
        .collect();
    assert!(!pairs.is_empty());
    pairs
}

/// A valid create body of `spec` without `field`.
fn create_body_without(spec: &EntitySpec, field: &str) -> Map<String, Value> {
    let mut body = Map::new();
    for required in spec.fields {
        if !matches!(required.presence, Presence::Required) || required.name == field {
            continue;
        }
        let value = match required.kind {
            FieldKind::Enum(allowed) => json!(allowed[0]),
            _ => json!("Required"),
        };
        body.insert(required.name.to_owned(), value);
    }
    body
}

/// Checks `value` for `field` directly and inside update and create bodies; all three must
/// agree. Returns the accepted value, or `None` when refused (with a message naming the field).
fn check(
    spec: &'static EntitySpec,
    field: &'static FieldSpec,
    value: Value,
) -> Result<Option<FieldValue>, TestCaseError> {
    let direct = field.parse(value.clone());
    let mut update = Map::new();
    update.insert(field.name.to_owned(), value.clone());
    let in_update = parse_body(spec, update, Mode::Update);
    let mut create = create_body_without(spec, field.name);
    create.insert(field.name.to_owned(), value.clone());
    let in_create = parse_body(spec, create, Mode::Create);
    prop_assert_eq!(
        direct.is_ok(),
        in_update.is_ok(),
        "{}.{} = {}: field and update body disagree",
        spec.module,
        field.name,
        value
    );
    prop_assert_eq!(
        direct.is_ok(),
        in_create.is_ok(),
        "{}.{} = {}: field and create body disagree",
        spec.module,
        field.name,
        value
    );
    match direct {
        Ok(parsed) => Ok(Some(parsed)),
        Err(error) => {
            let message = error.to_string();
            prop_assert!(
                message.contains(&format!("`{}`", field.name)),
                "the message names the field: {}",
                message
            );
            prop_assert!(message.chars().count() < 300, "short message: {}", message);
            Ok(None)
        }
    }
}

/// Characters of 1 to 4 UTF-8 bytes, none of them whitespace or NUL.
const TEXT_CHARS: &[char] = &[
    'a', 'Z', '7', '-', '.', '\'', '"', '\\', '%', '_', '<', '@', 'é', 'ß', 'Ω', '€', '中', '𝄞',
    '😀', '\u{301}', '\u{200b}', '\u{1}', '\u{7f}', '\u{ffff}',
];

const WHITESPACE: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{a0}', '\u{2003}', '\u{3000}', '\u{85}',
];

/// A length from 0 to `max + 5`, often at the edges.
fn length_around(min: usize, max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        0..=max + 5,
        max.saturating_sub(3)..=max + 5,
        min.saturating_sub(1)..=min + 2,
    ]
}

fn text_of(chars: Vec<char>) -> String {
    chars.into_iter().collect()
}

fn text_field() -> impl Strategy<Value = (&'static EntitySpec, &'static FieldSpec, String)> {
    select(fields_where(|kind| matches!(kind, FieldKind::Text { .. }))).prop_flat_map(
        |(spec, field)| {
            let FieldKind::Text { min, max } = field.kind else {
                unreachable!()
            };
            (Just(spec), Just(field), length_around(min, max)).prop_flat_map(
                |(spec, field, len)| {
                    (
                        Just(spec),
                        Just(field),
                        prop::collection::vec(select(TEXT_CHARS), len).prop_map(text_of),
                    )
                },
            )
        },
    )
}

fn email_field() -> impl Strategy<Value = (&'static EntitySpec, &'static FieldSpec, String)> {
    select(fields_where(|kind| matches!(kind, FieldKind::Email { .. }))).prop_flat_map(
        |(spec, field)| {
            let FieldKind::Email { max } = field.kind else {
                unreachable!()
            };
            let chars = prop_oneof![
                4 => select(TEXT_CHARS.iter().copied().filter(|c| *c != '@').collect::<Vec<_>>()),
                1 => Just('@'),
            ];
            (Just(spec), Just(field), length_around(0, max)).prop_flat_map(
                move |(spec, field, len)| {
                    (
                        Just(spec),
                        Just(field),
                        prop::collection::vec(chars.clone(), len).prop_map(text_of),
                    )
                },
            )
        },
    )
}

fn integer_field() -> impl Strategy<Value = (&'static EntitySpec, &'static FieldSpec, i64)> {
    select(fields_where(|kind| {
        matches!(kind, FieldKind::Integer { .. })
    }))
    .prop_flat_map(|(spec, field)| {
        let FieldKind::Integer { min, max } = field.kind else {
            unreachable!()
        };
        let (min, max) = (i64::from(min), i64::from(max));
        (
            Just(spec),
            Just(field),
            prop_oneof![
                (min - 3)..=(min + 3),
                (max - 3)..=(max + 3),
                min..=max,
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
                Just(i64::from(i32::MAX) + 1),
            ],
        )
    })
}

fn field_of(
    kind: fn(&FieldKind) -> bool,
) -> impl Strategy<Value = (&'static EntitySpec, &'static FieldSpec)> {
    select(fields_where(kind))
}

/// Money written by a client: sign, integer part, number of decimals (0–4) and their digits.
fn money() -> impl Strategy<Value = (bool, u64, u32, u64)> {
    (
        prop::bool::weighted(0.2),
        prop_oneof![
            0u64..=3,
            999_999_999_990u64..=1_000_000_000_002,
            0u64..=999_999_999_999,
            0u64..=10_000,
        ],
        0u32..=4,
        any::<u64>(),
        prop::bool::weighted(0.5),
    )
        .prop_map(|(negative, int, decimals, digits, near_a_cent)| {
            let scale = 10u64.pow(decimals);
            let digits = if near_a_cent && decimals > 2 {
                // One unit of the last decimal off a whole cent (e.g. .9299, .9301): the values
                // that binary floating point is most likely to blur into two decimals.
                let step = 10u64.pow(decimals - 2);
                let cent = (digits % 100) * step;
                if digits & (1 << 40) == 0 {
                    cent + 1
                } else {
                    (cent + scale - 1) % scale
                }
            } else {
                digits % scale
            };
            (negative, int, decimals, digits)
        })
}

/// The largest money value, in units of 0.0001.
const MONEY_MAX_UNITS: u128 = 9_999_999_999_999_900;

fn date_text(date: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// `YYYY-MM-DD` exactly, naming a real day of a year 1–9999 (checked without chrono's parser).
fn strict_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9];
    if !digits.iter().all(|&i| bytes[i].is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> u32 { text[range].parse().unwrap() };
    let year = i32::try_from(number(0..4)).ok()?;
    if year < 1 {
        return None;
    }
    NaiveDate::from_ymd_opt(year, number(5..7), number(8..10))
}

/// A day of the years 1–9999.
fn any_date() -> impl Strategy<Value = NaiveDate> {
    let first = NaiveDate::from_ymd_opt(1, 1, 1).unwrap().num_days_from_ce();
    let last = NaiveDate::from_ymd_opt(9999, 12, 31)
        .unwrap()
        .num_days_from_ce();
    prop_oneof![
        first..=last,
        first..=first + 400,
        last - 400..=last,
        // Around leap days of recent years.
        NaiveDate::from_ymd_opt(1999, 1, 1)
            .unwrap()
            .num_days_from_ce()
            ..=NaiveDate::from_ymd_opt(2101, 1, 1)
                .unwrap()
                .num_days_from_ce(),
    ]
    .prop_map(|days| NaiveDate::from_num_days_from_ce_opt(days).unwrap())
}

/// Edits of a text: replace, insert or delete one character.
fn edit(text: &str, kind: u8, position: usize, with: char) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let index = position % (chars.len() + 1);
    match kind % 3 {
        0 if index < chars.len() => chars[index] = with,
        1 => chars.insert(index, with),
        _ if index < chars.len() => {
            chars.remove(index);
        }
        _ => chars.push(with),
    }
    chars.into_iter().collect()
}

/// Does `text` read as a UUID in any of the forms a UUID parser may take (hyphenated, simple,
/// braced, URN)? Written without the uuid crate.
fn uuid_shaped(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let inner = lower.strip_prefix("urn:uuid:").unwrap_or(&lower);
    let inner = inner
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(inner);
    let hex: String = inner.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn text_fields_accept_exactly_the_lengths_of_their_rule(
        (spec, field, text) in text_field(),
    ) {
        let FieldKind::Text { min, max } = field.kind else { unreachable!() };
        let len = text.chars().count();
        let accepted = check(spec, field, Value::String(text.clone()))?;
        prop_assert_eq!(
            accepted.is_some(),
            (min..=max).contains(&len),
            "{}.{} ({}..={}) with {} chars / {} bytes", spec.module, field.name, min, max, len, text.len()
        );
        if let Some(value) = accepted {
            prop_assert_eq!(value, FieldValue::Text(text));
        }
    }

    #[test]
    fn blank_names_are_refused_and_blank_optional_text_is_kept(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Text { .. })),
        blank in prop::collection::vec(select(WHITESPACE), 1..=20).prop_map(text_of),
        (nul_at, with_nul) in (any::<usize>(), prop::collection::vec(select(TEXT_CHARS), 0..20)),
    ) {
        let FieldKind::Text { min, .. } = field.kind else { unreachable!() };
        let accepted = check(spec, field, Value::String(blank.clone()))?;
        prop_assert_eq!(accepted.is_some(), min == 0, "{}.{} = {:?}", spec.module, field.name, blank);
        // NUL is refused anywhere in any string (PostgreSQL cannot store it).
        let mut chars = with_nul;
        chars.insert(nul_at % (chars.len() + 1), '\0');
        prop_assert!(check(spec, field, Value::String(text_of(chars)))?.is_none());
    }

    #[test]
    fn email_fields_accept_up_to_their_max_with_an_at_sign(
        (spec, field, text) in email_field(),
    ) {
        let FieldKind::Email { max } = field.kind else { unreachable!() };
        let len = text.chars().count();
        let accepted = check(spec, field, Value::String(text.clone()))?;
        prop_assert_eq!(
            accepted.is_some(),
            len <= max && text.contains('@'),
            "{}.{} with {} chars: {:?}", spec.module, field.name, len, text
        );
    }

    #[test]
    fn integer_fields_accept_exactly_their_range(
        (spec, field, number) in integer_field(),
    ) {
        let FieldKind::Integer { min, max } = field.kind else { unreachable!() };
        let in_range = (i64::from(min)..=i64::from(max)).contains(&number);
        let accepted = check(spec, field, json!(number))?;
        prop_assert_eq!(accepted.is_some(), in_range, "{}.{} = {}", spec.module, field.name, number);
        if let Some(value) = accepted {
            prop_assert_eq!(value, FieldValue::Integer(number as i32));
        }
        // The same number written as a float, or as a string, is not an integer.
        let float: Value = serde_json::from_str(&format!("{number}.0")).unwrap();
        prop_assert!(check(spec, field, float)?.is_none(), "{}.0", number);
        prop_assert!(check(spec, field, json!(number.to_string()))?.is_none());
    }

    #[test]
    fn integers_beyond_i64_are_refused(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Integer { .. })),
        big in (i64::MAX as u64 + 1)..=u64::MAX,
    ) {
        prop_assert!(check(spec, field, json!(big))?.is_none());
        let huge: Value = serde_json::from_str(&format!("{big}000")).unwrap();
        prop_assert!(check(spec, field, huge)?.is_none());
    }

    #[test]
    fn money_accepts_0_to_the_max_with_at_most_two_decimals(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Money { .. })),
        (negative, int, decimals, digits) in money(),
    ) {
        let sign = if negative { "-" } else { "" };
        let text = if decimals == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{digits:0width$}", width = decimals as usize)
        };
        // The value in units of 0.0001.
        let units = u128::from(int) * 10_000 + u128::from(digits) * 10u128.pow(4 - decimals);
        let expected = (units == 0 || !negative) && units <= MONEY_MAX_UNITS && units.is_multiple_of(100);
        let value: Value = serde_json::from_str(&text).unwrap();
        let accepted = check(spec, field, value)?;
        prop_assert_eq!(accepted.is_some(), expected, "{}.{} = {}", spec.module, field.name, text);
        if let Some(FieldValue::Money(amount)) = accepted {
            let cents = units / 100;
            let exact = BigDecimal::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap();
            prop_assert_eq!(&amount, &exact, "{}", text);
            prop_assert!(amount.fractional_digit_count() <= 2, "{} kept as {}", text, amount);
        }
        // Money as a JSON string is not a number.
        prop_assert!(check(spec, field, json!(text))?.is_none());
    }

    #[test]
    fn enum_fields_accept_only_their_listed_values(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Enum(_))),
        random in prop_oneof!["[a-z_]{0,14}", "\\PC{0,70}"],
        pick in any::<usize>(),
    ) {
        let FieldKind::Enum(allowed) = field.kind else { unreachable!() };
        let accepted = check(spec, field, json!(random))?;
        prop_assert_eq!(accepted.is_some(), allowed.contains(&random.as_str()), "{:?}", random);
        let listed = allowed[pick % allowed.len()];
        prop_assert_eq!(
            check(spec, field, json!(listed))?,
            Some(FieldValue::Text(listed.to_owned()))
        );
        for variant in [
            listed.to_uppercase(),
            format!(" {listed}"),
            format!("{listed} "),
            format!("{listed}\0"),
            listed[..listed.len() - 1].to_owned(),
            format!("{listed}s"),
        ] {
            prop_assert!(check(spec, field, json!(variant))?.is_none(), "{:?}", variant);
        }
    }

    #[test]
    fn uuid_fields_accept_uuids_and_refuse_other_strings(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Uuid)),
        id in any::<u128>(),
        random in prop_oneof!["\\PC{0,40}", "[0-9a-f-]{0,40}"],
        (kind, position, with) in (any::<u8>(), any::<usize>(), select(vec!['g', 'z', ' ', '-', 'G', '0', 'é'])),
    ) {
        let id = Uuid::from_u128(id);
        for text in [
            id.hyphenated().to_string(),
            id.hyphenated().to_string().to_uppercase(),
            id.simple().to_string(),
        ] {
            prop_assert_eq!(check(spec, field, json!(text))?, Some(FieldValue::Uuid(id)));
        }
        if !uuid_shaped(&random) {
            prop_assert!(check(spec, field, json!(random))?.is_none(), "{:?}", random);
        }
        let edited = edit(&id.hyphenated().to_string(), kind, position, with);
        if !uuid_shaped(&edited) {
            prop_assert!(check(spec, field, json!(edited))?.is_none(), "{:?}", edited);
        }
        // A UUID as a JSON number or array is not a UUID string.
        prop_assert!(check(spec, field, json!(id.as_u128() as u64))?.is_none());
        prop_assert!(check(spec, field, json!([id.to_string()]))?.is_none());
    }

    #[test]
    fn date_fields_accept_exactly_yyyy_mm_dd_of_real_days(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Date)),
        date in any_date(),
        edits in prop::collection::vec(
            (any::<u8>(), any::<usize>(), select(vec!['0', '1', '2', '3', '9', '-', '+', ' ', 'T', '/', ':', '٣'])),
            1..=2,
        ),
        random in "\\PC{0,12}",
    ) {
        let text = date_text(date);
        prop_assert_eq!(check(spec, field, json!(text))?, Some(FieldValue::Date(date)));
        let mut edited = text.clone();
        for (kind, position, with) in edits {
            edited = edit(&edited, kind, position, with);
        }
        let accepted = check(spec, field, json!(edited))?;
        let expected = strict_date(&edited);
        prop_assert_eq!(
            accepted,
            expected.map(FieldValue::Date),
            "{:?} (edited from {:?})", edited, text
        );
        prop_assert_eq!(check(spec, field, json!(random))?.is_some(), strict_date(&random).is_some(), "{:?}", random);
    }

    #[test]
    fn timestamp_fields_accept_rfc_3339_times_of_years_1_to_9999_in_utc(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Timestamp)),
        date in any_date(),
        seconds in 0u32..86_400,
        nanos in 0u32..1_000_000_000,
        digits in select(vec![0usize, 1, 3, 6, 9]),
        offset in prop_oneof![Just(None), (-1439i32..=1439).prop_map(Some)],
        random in "\\PC{0,40}",
    ) {
        let precision = 10u32.pow(9 - digits as u32);
        let nanos = nanos / precision * precision;
        let local = NaiveDateTime::new(
            date,
            chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos).unwrap(),
        );
        let fraction = if digits == 0 {
            String::new()
        } else {
            format!(".{:09}", nanos)[..=digits].to_owned()
        };
        let zone = match offset {
            None => "Z".to_owned(),
            Some(minutes) => {
                let sign = if minutes < 0 { '-' } else { '+' };
                format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
            }
        };
        let text = format!("{}{fraction}{zone}", local.format("%Y-%m-%dT%H:%M:%S"));
        let instant = (local - Duration::minutes(i64::from(offset.unwrap_or(0)))).and_utc();
        let expected = (1..=9999).contains(&instant.year());
        let accepted = check(spec, field, json!(text))?;
        prop_assert_eq!(accepted.is_some(), expected, "{} is {}", text, instant);
        if let Some(value) = accepted {
            prop_assert_eq!(value, FieldValue::Timestamp(instant), "{}", text);
        }
        prop_assert!(check(spec, field, json!(random))?.is_none(), "{:?}", random);
        // A date alone, or a time without its zone, is not an RFC 3339 date-time.
        prop_assert!(check(spec, field, json!(date_text(date)))?.is_none());
        let zoneless = format!("{}{fraction}", local.format("%Y-%m-%dT%H:%M:%S"));
        prop_assert!(check(spec, field, json!(zoneless))?.is_none(), "{}", zoneless);
    }

    #[test]
    fn leap_seconds_are_accepted_only_when_the_time_they_name_is_within_years_1_to_9999(
        (spec, field) in field_of(|kind| matches!(kind, FieldKind::Timestamp)),
        date in prop_oneof![
            any_date(),
            Just(NaiveDate::from_ymd_opt(9999, 12, 31).unwrap()),
            Just(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
        ],
        (hour, minute) in prop_oneof![Just((23u32, 59u32)), (0u32..24, 0u32..60)],
        micros in prop_oneof![Just(None), (0u32..1_000_000).prop_map(Some)],
        offset in prop_oneof![2 => Just(None), 1 => (-90i32..=90).prop_map(Some)],
    ) {
        let fraction = micros.map(|m| format!(".{m:06}")).unwrap_or_default();
        let zone = match offset {
            None => "Z".to_owned(),
            Some(minutes) => {
                let sign = if minutes < 0 { '-' } else { '+' };
                format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
            }
        };
        let text = format!("{}T{hour:02}:{minute:02}:60{fraction}{zone}", date_text(date));
        if let Some(FieldValue::Timestamp(at)) = check(spec, field, json!(text))? {
            // The instant a leap second names, as PostgreSQL (and every reader) counts it: one
            // second after hh:mm:59.
            let normalized = DateTime::from_timestamp(at.timestamp(), 0).unwrap()
                + Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
            prop_assert!(
                (1..=9999).contains(&normalized.year()),
                "{} accepted, but it names {} (year {})", text, normalized, normalized.year()
            );
        }
    }

    #[test]
    fn null_is_accepted_exactly_by_nullable_fields(
        (spec, field) in field_of(|_| true),
    ) {
        let accepted = check(spec, field, Value::Null)?;
        prop_assert_eq!(
            accepted,
            matches!(field.presence, Presence::Nullable).then_some(FieldValue::Null)
        );
    }
}

/// The cursor timestamps generated above span exactly the years 1970 to 9999.
#[test]
fn cursor_micros_bounds_are_the_years_1970_to_9999() {
    let first: DateTime<Utc> = DateTime::from_timestamp_micros(0).unwrap();
    let last: DateTime<Utc> = DateTime::from_timestamp_micros(MAX_MICROS).unwrap();
    assert_eq!(first.to_rfc3339(), "1970-01-01T00:00:00+00:00");
    assert_eq!(last.to_rfc3339(), "9999-12-31T23:59:59.999999+00:00");
    assert!(
        DateTime::from_timestamp_micros(MAX_MICROS + 1)
            .unwrap()
            .year()
            == 10000
    );
}

/// Deterministic cases of the rules above that the service has been seen to break.
#[test]
fn close_date_refuses_padded_and_signed_forms() {
    let field = entities::OPPORTUNITIES.field("close_date").unwrap();
    for text in [
        "2024-11- 1",
        "2024- 1-01",
        "2024- 1- 1",
        "+024-11-01",
        " 024-11-01",
        "  2024-1-1",
    ] {
        assert!(
            field.parse(json!(text)).is_err(),
            "close_date {text:?} is not YYYY-MM-DD but was accepted as {:?}",
            field.parse(json!(text))
        );
    }
}

#[test]
fn money_with_more_than_two_decimals_is_refused_at_large_magnitudes_too() {
    let field = entities::OPPORTUNITIES.field("amount").unwrap();
    for text in ["999999999990.9299", "0.125", "12.345"] {
        let value: Value = serde_json::from_str(text).unwrap();
        assert!(
            field.parse(value).is_err(),
            "amount {text} has four decimals but was accepted as {:?}",
            field.parse(serde_json::from_str(text).unwrap())
        );
    }
}

#[test]
fn a_leap_second_at_the_end_of_9999_is_refused() {
    let field = entities::ACTIVITIES.field("due_at").unwrap();
    for text in ["9999-12-31T23:59:60Z", "9999-12-31T23:59:60.999999Z"] {
        assert!(
            field.parse(json!(text)).is_err(),
            "due_at {text} names a time in year 10000 but was accepted"
        );
    }
}
