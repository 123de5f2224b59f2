//! Cached GET routes over HTTP. Each route declares its [`CachePolicy`] next to its path (as the
//! contract's route table does); its handler parses the query, and [`respond`] serves the
//! answer through the cache with the headers the contract names: `X-Cache`, `X-Cache-Tier`,
//! `ETag`, and `304` for a client that already has it.

use std::future::Future;
use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};

use crate::cache::{Answer, Composition, Entry, Lookup, Read, Source};
use crate::domain::query::Params;
use crate::domain::{Module, Operation, TenantId};
use crate::errors::ApiError;
use crate::metrics::Tier;
use crate::state::AppState;

/// How a route's answers are cached: under which module and operation, and for how long by
/// default (`CACHE_TTL_<MODULE>_<OPERATION>` overrides it).
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub module: Module,
    pub operation: Operation,
    pub ttl_secs: u64,
}

impl CachePolicy {
    pub const fn new(module: Module, operation: Operation, ttl_secs: u64) -> Self {
        CachePolicy {
            module,
            operation,
            ttl_secs,
        }
    }

    /// What a read of `params` for `tenant` looks up.
    pub fn lookup<'a>(&self, tenant: TenantId, params: &'a Params<'a>, read: Read) -> Lookup<'a> {
        Lookup {
            tenant,
            module: self.module,
            operation: self.operation,
            params,
            ttl: Duration::from_secs(self.ttl_secs),
            read,
        }
    }
}

/// The answer of a cached route: `load` runs only when the cache has no current answer. A
/// route whose answer is composed of other cached answers loads a [`Composition`]: a `HIT`
/// only when the composed answer was cached, which it is only while every part it was made of
/// is.
pub async fn respond(
    req: &HttpRequest,
    state: &AppState,
    tenant: TenantId,
    policy: CachePolicy,
    params: &Params<'_>,
    load: impl Future<Output = Result<impl Into<Composition>, ApiError>>,
) -> Result<HttpResponse, ApiError> {
    let answer = state
        .cache
        .get_or_load(&policy.lookup(tenant, params, read_of(req)), load)
        .await?;
    Ok(reply(req, &answer))
}

/// How a request reads the cache: `Cache-Control: no-cache` reads fresh.
pub fn read_of(req: &HttpRequest) -> Read {
    if wants_fresh(req) {
        Read::Fresh
    } else {
        Read::Cached
    }
}

/// A loader's answer: `value` as the JSON bytes the cache keeps.
pub fn json_body<T: serde::Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

/// `Cache-Control: no-cache`: the client wants an answer read now.
fn wants_fresh(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::CACHE_CONTROL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"))
}

/// Whether `If-None-Match` names `etag` (or `*`), by the weak comparison RFC 9110 prescribes
/// for it: `W/"x"` matches `"x"` (a proxy that compresses, such as nginx's gzip, makes strong
/// validators weak).
fn not_modified(req: &HttpRequest, etag: &HeaderValue) -> bool {
    fn opaque(tag: &[u8]) -> &[u8] {
        tag.strip_prefix(b"W/").unwrap_or(tag)
    }
    let etag = opaque(etag.as_bytes());
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .any(|candidate| candidate == b"*" || opaque(candidate) == etag)
}

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");

/// The stored bytes of an answer, or `304` when the client has them.
fn reply(req: &HttpRequest, answer: &Answer) -> HttpResponse {
    let entry: &Entry = &answer.entry;
    let unchanged = not_modified(req, &entry.etag);
    let mut builder = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    let (cache, tier) = match answer.source {
        Source::Hit(Tier::L2) => ("HIT", Some("L2")),
        Source::Hit(_) => ("HIT", Some("L1")),
        Source::Miss => ("MISS", None),
        Source::Bypass => ("BYPASS", None),
        Source::Stale => ("STALE", None),
    };
    // Header names and values ready-made: a hit parses no header text.
    builder
        .insert_header((header::ETAG, entry.etag.clone()))
        .insert_header((X_CACHE.clone(), HeaderValue::from_static(cache)));
    if let Some(tier) = tier {
        builder.insert_header((X_CACHE_TIER.clone(), HeaderValue::from_static(tier)));
    }
    if unchanged {
        builder.finish()
    } else {
        builder
            .insert_header((header::CONTENT_TYPE, entry.content_type.clone()))
            .body(entry.body.clone())
    }
}
