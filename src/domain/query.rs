//! Strict query strings: only the parameters a route declares, each at most once, each valid.

use std::borrow::Cow;
use std::collections::BTreeMap;

use uuid::Uuid;

use super::cursor::{Cursor, CursorCodec};
use super::echo;
use super::entities::{EntitySpec, FilterKind};
use super::Invalid;
use crate::domain::TenantId;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Longest `q` accepted; longer search text cannot match any searched column anyway.
pub const Q_MAX: usize = 254;

/// The `name=value` pairs of a query string (`application/x-www-form-urlencoded`: `+` is a space,
/// `%XX` a byte), or `None` when a name or value does not decode to UTF-8. Lenient decoders
/// replace such bytes with U+FFFD, which would answer (and cache) a search nobody asked for.
pub fn decode_query(raw: &str) -> Option<Vec<(String, String)>> {
    fn decode(text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            let hex = |offset: usize| {
                bytes
                    .get(at + offset)
                    .and_then(|digit| char::from(*digit).to_digit(16))
            };
            match bytes[at] {
                b'+' => out.push(b' '),
                b'%' => match (hex(1), hex(2)) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        at += 2;
                    }
                    // Not an escape: the percent sign itself, as browsers read it.
                    _ => out.push(b'%'),
                },
                byte => out.push(byte),
            }
            at += 1;
        }
        String::from_utf8(out).ok()
    }
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Splits a query string into its parameters, sorted by name (the canonical order), refusing
/// names outside `allowed` and repeated names.
pub fn parse_params(raw: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, Invalid> {
    let pairs = decode_query(raw)
        .ok_or_else(|| Invalid::Query("the query string is not valid UTF-8 once decoded".into()))?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(Invalid::Query(format!(
                "unknown query parameter {}",
                echo(&name)
            )));
        }
        if params.contains_key(&name) {
            return Err(Invalid::Query(format!(
                "query parameter {} is given more than once",
                echo(&name)
            )));
        }
        params.insert(name, value);
    }
    Ok(params)
}

/// A query's parameters in canonical form: sorted by name, defaults filled in, one spelling per
/// value. Equal answers have equal forms, and the cache keys an answer by it, so the cache reads
/// exactly the query the handler runs.
pub type Params<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// A valid equality-filter value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FilterValue {
    Text(String),
    Uuid(Uuid),
}

/// The `q` search and equality filters of a list or count.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Search text as given (not yet a LIKE pattern).
    pub q: Option<String>,
    values: BTreeMap<&'static str, FilterValue>,
}

impl Filters {
    /// Whether neither a filter nor `q` is given.
    pub fn is_empty(&self) -> bool {
        self.q.is_none() && self.values.is_empty()
    }

    /// The text of filter `name` when it is the only thing given (no other filter, no `q`).
    pub fn sole_text(&self, name: &str) -> Option<&str> {
        (self.q.is_none() && self.values.len() == 1)
            .then(|| self.text(name))
            .flatten()
    }

    /// The equality filters given, by name.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, &FilterValue)> {
        self.values.iter().map(|(&name, value)| (name, value))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name)? {
            FilterValue::Text(text) => Some(text),
            FilterValue::Uuid(_) => None,
        }
    }

    pub fn uuid(&self, name: &str) -> Option<Uuid> {
        match self.values.get(name)? {
            FilterValue::Uuid(id) => Some(*id),
            FilterValue::Text(_) => None,
        }
    }

    /// `q` and the filters in canonical form (unsorted; each UUID in one spelling).
    fn canonical_into<'a>(&'a self, params: &mut Params<'a>) {
        if let Some(q) = &self.q {
            params.push(("q", Cow::Borrowed(q)));
        }
        for (&name, value) in &self.values {
            let value = match value {
                FilterValue::Text(text) => Cow::Borrowed(text.as_str()),
                FilterValue::Uuid(id) => Cow::Owned(id.hyphenated().to_string()),
            };
            params.push((name, value));
        }
    }

    /// The canonical form of a count query.
    pub fn canonical(&self) -> Params<'_> {
        let mut params = Params::new();
        self.canonical_into(&mut params);
        params.sort_unstable_by_key(|(name, _)| *name);
        params
    }

    /// Reads `q` and the entity's filters out of `params`, leaving the rest.
    fn take(spec: &EntitySpec, params: &mut BTreeMap<String, String>) -> Result<Self, Invalid> {
        let mut filters = Filters::default();
        if let Some(q) = params.remove("q") {
            if q.chars().count() > Q_MAX {
                return Err(Invalid::Query(format!(
                    "`q` must be at most {Q_MAX} characters"
                )));
            }
            if q.contains('\0') {
                return Err(Invalid::Query("`q` must not contain NUL".into()));
            }
            // An empty search box means no search.
            filters.q = Some(q).filter(|q| !q.is_empty());
        }
        for filter in spec.filters {
            let Some(raw) = params.remove(filter.name) else {
                continue;
            };
            let invalid = |rule: &str| Invalid::Query(format!("filter `{}` {rule}", filter.name));
            let value = match filter.kind {
                FilterKind::Uuid => {
                    FilterValue::Uuid(Uuid::try_parse(&raw).map_err(|_| invalid("must be a UUID"))?)
                }
                FilterKind::Enum(allowed) => {
                    if !allowed.contains(&raw.as_str()) {
                        return Err(invalid(&format!("must be one of {}", allowed.join(", "))));
                    }
                    FilterValue::Text(raw)
                }
                FilterKind::Text { max } => {
                    if raw.is_empty() || raw.chars().count() > max || raw.contains('\0') {
                        return Err(invalid(&format!("must be 1 to {max} characters")));
                    }
                    FilterValue::Text(raw)
                }
            };
            filters.values.insert(filter.name, value);
        }
        Ok(filters)
    }
}

/// A parsed `GET /api/v2/E` query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub limit: i64,
    pub cursor: Option<Cursor>,
    pub filters: Filters,
}

/// The parameters a list (`paging`) or count of `spec` accepts.
pub fn allowed_params(spec: &EntitySpec, paging: bool) -> Vec<&'static str> {
    let mut allowed = vec!["q"];
    if paging {
        allowed.extend(["limit", "cursor"]);
    }
    allowed.extend(spec.filters.iter().map(|filter| filter.name));
    allowed
}

impl ListQuery {
    /// The first page, unfiltered, of the default size (what a warm fills).
    pub fn first_page() -> Self {
        ListQuery {
            limit: DEFAULT_LIMIT,
            cursor: None,
            filters: Filters::default(),
        }
    }

    /// The canonical form of this list query (the limit always written out).
    pub fn canonical(&self) -> Params<'_> {
        let mut params = Params::new();
        self.filters.canonical_into(&mut params);
        params.push(("limit", Cow::Owned(self.limit.to_string())));
        if let Some(cursor) = &self.cursor {
            let position = format!("{}.{}", cursor.created_at.timestamp_micros(), cursor.id);
            params.push(("cursor", Cow::Owned(position)));
        }
        params.sort_unstable_by_key(|(name, _)| *name);
        params
    }

    pub fn parse(
        spec: &EntitySpec,
        raw: &str,
        codec: &CursorCodec,
        tenant: TenantId,
    ) -> Result<Self, Invalid> {
        let mut params = parse_params(raw, &allowed_params(spec, true))?;
        let limit = match params.remove("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    Invalid::Query(format!("`limit` must be an integer 1 to {MAX_LIMIT}"))
                })?,
        };
        let cursor =
            match params.remove("cursor") {
                None => None,
                Some(text) => Some(codec.decode(tenant, spec.module, &text).ok_or_else(|| {
                    Invalid::Query("`cursor` is not a cursor of this list".into())
                })?),
            };
        let filters = Filters::take(spec, &mut params)?;
        Ok(ListQuery {
            limit,
            cursor,
            filters,
        })
    }
}

/// Parses a `GET /api/v2/E/count` query: `q` and filters only.
pub fn parse_count(spec: &EntitySpec, raw: &str) -> Result<Filters, Invalid> {
    let mut params = parse_params(raw, &allowed_params(spec, false))?;
    Filters::take(spec, &mut params)
}

/// A parsed `GET /api/v2/opportunities/stats` query.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsQuery {
    pub account: Option<Uuid>,
}

impl StatsQuery {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let params = parse_params(raw, &["account_id"])?;
        let account = params
            .get("account_id")
            .map(|raw| {
                Uuid::try_parse(raw)
                    .map_err(|_| Invalid::Query("filter `account_id` must be a UUID".into()))
            })
            .transpose()?;
        Ok(StatsQuery { account })
    }

    pub fn canonical(&self) -> Params<'static> {
        self.account
            .map(|id| ("account_id", Cow::Owned(id.hyphenated().to_string())))
            .into_iter()
            .collect()
    }
}

/// Parses a query that takes no parameters at all (the dashboard bundle).
pub fn parse_none(raw: &str) -> Result<Params<'static>, Invalid> {
    parse_params(raw, &[])?;
    Ok(Params::new())
}

/// Escapes `q` for `ILIKE '%q%'`.
pub fn like_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entities::OPPORTUNITIES;

    fn list(raw: &str) -> Result<ListQuery, Invalid> {
        ListQuery::parse(
            &OPPORTUNITIES,
            raw,
            &CursorCodec::new(b"k"),
            TenantId(Uuid::nil()),
        )
    }

    #[test]
    fn defaults_and_filters() {
        let query = list("stage=proposal&q=acme").unwrap();
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.filters.text("stage"), Some("proposal"));
        assert_eq!(query.filters.q.as_deref(), Some("acme"));
    }

    #[test]
    fn strictness() {
        assert!(list("limit=0").is_err());
        assert!(list("limit=201").is_err());
        assert!(list("limit=abc").is_err());
        assert!(list("stage=won").is_err());
        assert!(list("account_id=1").is_err());
        assert!(list("color=red").is_err());
        assert!(list("stage=proposal&stage=proposal").is_err());
        assert!(list("cursor=abc").is_err());
        assert!(parse_count(&OPPORTUNITIES, "limit=5").is_err());
    }

    fn canonical(raw: &str) -> Vec<(&'static str, String)> {
        let query = list(raw).unwrap();
        query
            .canonical()
            .into_iter()
            .map(|(name, value)| (name, value.into_owned()))
            .collect()
    }

    #[test]
    fn equal_queries_share_one_canonical_form_and_any_difference_changes_it() {
        let a = canonical("stage=proposal&limit=50");
        assert_eq!(a, canonical("limit=50&stage=proposal"));
        assert_eq!(
            a,
            canonical("stage=proposal"),
            "the default limit is written out"
        );
        assert_eq!(
            a,
            canonical("stage=proposal&limit=050&q="),
            "and an empty q is none"
        );
        assert_ne!(a, canonical("stage=negotiation"));
        assert_eq!(
            canonical("stage=closed_won&limit=7"),
            vec![
                ("limit", "7".to_owned()),
                ("stage", "closed_won".to_owned())
            ]
        );
        let id = Uuid::new_v4();
        let upper = id.hyphenated().to_string().to_uppercase();
        assert_eq!(
            canonical(&format!("account_id={upper}")),
            canonical(&format!("account_id={}", id.simple())),
            "one spelling per UUID"
        );
        assert!(parse_count(&OPPORTUNITIES, "q=")
            .unwrap()
            .canonical()
            .is_empty());
        assert_eq!(
            StatsQuery::parse(&format!("account_id={upper}"))
                .unwrap()
                .canonical(),
            vec![("account_id", Cow::Owned(id.to_string()))]
        );
        assert!(parse_none("").unwrap().is_empty());
        assert!(parse_none("x=1").is_err());
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern(r"50%_a\b"), r"%50\%\_a\\b%");
    }
}
