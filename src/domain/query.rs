//! Strict query strings: only the parameters a route declares, each at most once, each valid.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::cursor::{Cursor, CursorCodec};
use super::echo;
use super::entities::{EntitySpec, FilterKind};
use crate::auth::TenantId;
use crate::errors::ApiError;

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
pub fn parse_params(raw: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let pairs = decode_query(raw).ok_or_else(|| {
        ApiError::InvalidQuery("the query string is not valid UTF-8 once decoded".into())
    })?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::InvalidQuery(format!(
                "unknown query parameter {}",
                echo(&name)
            )));
        }
        if params.contains_key(&name) {
            return Err(ApiError::InvalidQuery(format!(
                "query parameter {} is given more than once",
                echo(&name)
            )));
        }
        params.insert(name, value);
    }
    Ok(params)
}

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

    /// Reads `q` and the entity's filters out of `params`, leaving the rest.
    fn take(spec: &EntitySpec, params: &mut BTreeMap<String, String>) -> Result<Self, ApiError> {
        let mut filters = Filters::default();
        if let Some(q) = params.remove("q") {
            if q.chars().count() > Q_MAX {
                return Err(ApiError::InvalidQuery(format!(
                    "`q` must be at most {Q_MAX} characters"
                )));
            }
            if q.contains('\0') {
                return Err(ApiError::InvalidQuery("`q` must not contain NUL".into()));
            }
            // An empty search box means no search.
            filters.q = Some(q).filter(|q| !q.is_empty());
        }
        for filter in spec.filters {
            let Some(raw) = params.remove(filter.name) else {
                continue;
            };
            let invalid =
                |rule: &str| ApiError::InvalidQuery(format!("filter `{}` {rule}", filter.name));
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
    pub fn parse(
        spec: &EntitySpec,
        raw: &str,
        codec: &CursorCodec,
        tenant: TenantId,
    ) -> Result<Self, ApiError> {
        let mut params = parse_params(raw, &allowed_params(spec, true))?;
        let limit = match params.remove("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!("`limit` must be an integer 1 to {MAX_LIMIT}"))
                })?,
        };
        let cursor = match params.remove("cursor") {
            None => None,
            Some(text) => Some(codec.decode(tenant, spec.module, &text).ok_or_else(|| {
                ApiError::InvalidQuery("`cursor` is not a cursor of this list".into())
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
pub fn parse_count(spec: &EntitySpec, raw: &str) -> Result<Filters, ApiError> {
    let mut params = parse_params(raw, &allowed_params(spec, false))?;
    Filters::take(spec, &mut params)
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

    fn list(raw: &str) -> Result<ListQuery, ApiError> {
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

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern(r"50%_a\b"), r"%50\%\_a\\b%");
    }
}
