//! The cache as route wrappers, declared next to each route:
//! `web::get().to(list).wrap(cache_list("opportunities", "list", 180))` and
//! `web::post().to(create).wrap(invalidate(&["opportunities"]))`.

use std::time::SystemTime;

use actix_web::body::{to_bytes, BoxBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use super::entry::{etag_of, Entry};
use super::flight::{self, Role};
use super::key::{canonical_params, module_name};
use super::{Found, Lookup};
use crate::auth::{JwtKeys, Principal};
use crate::errors::ApiError;
use crate::metrics::{Outcome, Tier};
use crate::state::AppState;

type Reply = LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, Error>>;

/// A cached GET: `module`/`operation` with a default TTL (overridable by
/// `CACHE_TTL_<MODULE>_<OPERATION>`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub module: &'static str,
    pub operation: &'static str,
    pub ttl_secs: u64,
}

/// Caches the 200 answers of a GET route.
pub fn cache_list<S>(
    module: &'static str,
    operation: &'static str,
    ttl_secs: u64,
) -> impl Transform<
    S,
    ServiceRequest,
    Response = ServiceResponse<BoxBody>,
    Error = Error,
    InitError = (),
> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    let policy = Policy {
        module,
        operation,
        ttl_secs,
    };
    from_fn(move |req: ServiceRequest, next: Next<BoxBody>| -> Reply {
        Box::pin(serve_cached(policy, req, next))
    })
}

/// After a successful write, evicts the caller tenant's answers of `modules` everywhere.
pub fn invalidate<S>(
    modules: &'static [&'static str],
) -> impl Transform<
    S,
    ServiceRequest,
    Response = ServiceResponse<BoxBody>,
    Error = Error,
    InitError = (),
> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    from_fn(move |req: ServiceRequest, next: Next<BoxBody>| -> Reply {
        Box::pin(invalidating(modules, req, next))
    })
}

/// The caller, resolved once here and kept for the handler's `Principal` extractor.
fn principal(req: &ServiceRequest) -> Option<Principal> {
    let keys = req.app_data::<web::Data<JwtKeys>>()?;
    let principal = keys.principal_of(req.request()).ok()?;
    req.extensions_mut().insert(principal.clone());
    Some(principal)
}

/// The modules a write route invalidates, as its route declares them; the handler records them
/// in the outbox of the write's transaction.
#[derive(Debug, Clone, Copy)]
pub struct Invalidates(pub &'static [&'static str]);

/// Put on a write's response by its handler when the write may have committed (it did, or its
/// outcome is unknown), with its outbox row if it recorded one. Without it, nothing is
/// invalidated: a write refused before or inside its transaction changed nothing.
#[derive(Debug, Clone, Copy)]
pub struct MayHaveCommitted(pub Option<i64>);

async fn invalidating(
    modules: &'static [&'static str],
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let principal = principal(&req);
    req.extensions_mut().insert(Invalidates(modules));
    let response = next.call(req).await?;
    let committed = response
        .response()
        .extensions()
        .get::<MayHaveCommitted>()
        .copied();
    if let (Some(MayHaveCommitted(row)), Some(state), Some(principal)) =
        (committed, state, principal)
    {
        let committed_at = SystemTime::now();
        // Tests kill the writer here to show that the outbox survives it.
        fail::fail_point!("cache::after_commit", |_| std::process::abort());
        let acknowledged = state
            .cache
            .invalidate(principal.tenant, modules, committed_at)
            .await;
        if let (true, Some(row)) = (acknowledged, row) {
            state.outbox.acknowledged(row);
        }
    }
    Ok(response)
}

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

/// The answer for a cached entry: the stored bytes, or 304 when the client has them.
fn reply(
    req: HttpRequest,
    entry: &Entry,
    cache: &'static str,
    tier: Option<Tier>,
) -> ServiceResponse<BoxBody> {
    let unchanged = not_modified(&req, &entry.etag);
    let mut builder = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    // Header names and values ready-made: a hit parses no header text.
    builder
        .insert_header((header::ETAG, entry.etag.clone()))
        .insert_header((X_CACHE.clone(), HeaderValue::from_static(cache)));
    if let Some(tier) = tier {
        let tier = if tier == Tier::L2 { "L2" } else { "L1" };
        builder.insert_header((X_CACHE_TIER.clone(), HeaderValue::from_static(tier)));
    }
    let response = if unchanged {
        builder.finish()
    } else {
        builder
            .insert_header((header::CONTENT_TYPE, entry.content_type.clone()))
            .body(entry.body.clone())
    };
    ServiceResponse::new(req, response)
}

/// A handler's answer, read whole.
struct Loaded {
    req: HttpRequest,
    status: StatusCode,
    content_type: HeaderValue,
    body: actix_web::web::Bytes,
    response: HttpResponse<()>,
}

async fn read(response: ServiceResponse<BoxBody>) -> Result<Loaded, Error> {
    let (req, response) = response.into_parts();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let (response, body) = response.into_parts();
    let body = to_bytes(body)
        .await
        .map_err(|_| ApiError::internal("reading a handler's body"))?;
    Ok(Loaded {
        req,
        status,
        content_type,
        body,
        response,
    })
}

impl Loaded {
    /// The handler's answer unchanged (errors are never cached and carry no `X-Cache`).
    fn passthrough(self) -> ServiceResponse<BoxBody> {
        let response = self.response.set_body(BoxBody::new(self.body));
        ServiceResponse::new(self.req, response)
    }

    /// A 200 served as loaded (cache off, or too large to store).
    fn uncached(self, cache: &'static str) -> ServiceResponse<BoxBody> {
        let entry = Entry {
            etag: etag_of(&self.body),
            body: self.body,
            content_type: self.content_type,
            stored_ms: 0,
            fresh_until_ms: 0,
            stale_until_ms: 0,
        };
        reply(self.req, &entry, cache, None)
    }
}

fn log_hit(lookup: &Lookup, tier: Tier) {
    log::info!(
        "[Cache] Hit: {} {} for tenant {} ({})",
        lookup.module,
        lookup.operation,
        lookup.tenant,
        if tier == Tier::L2 { "L2" } else { "L1" }
    );
}

fn log_miss(lookup: &Lookup) {
    log::info!(
        "[Cache] Miss: {} {} for tenant {}",
        lookup.module,
        lookup.operation,
        lookup.tenant
    );
}

async fn serve_cached(
    policy: Policy,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let cache = &state.cache;
    let operation = policy.operation;
    let module = module_name(policy.module).unwrap_or("dashboard");
    if !cache.enabled {
        let loaded = read(next.call(req).await?).await?;
        if loaded.status != StatusCode::OK {
            return Ok(loaded.passthrough());
        }
        cache
            .metrics
            .cache_request(module, operation, Outcome::Bypass, Tier::None);
        return Ok(loaded.uncached("BYPASS"));
    }
    let (Some(principal), Some(params)) = (
        principal(&req),
        canonical_params(policy.module, operation, req.query_string()),
    ) else {
        // Unauthenticated or invalid: the handler answers the error; nothing is cached.
        return next.call(req).await;
    };
    let ttl = cache.ttl(policy.module, operation, policy.ttl_secs);
    let lookup = cache
        .lookup(principal.tenant, module, operation, &params, ttl)
        .await;

    // `Cache-Control: no-cache` reads fresh (and stores what it read); otherwise L1, then L2.
    let fresh = wants_fresh(req.request());
    let stale = if fresh {
        None
    } else {
        match cache.find(&lookup).await {
            Found::Fresh(tier, entry) => {
                cache
                    .metrics
                    .cache_request(module, operation, Outcome::Hit, tier);
                cache.metrics.hit_age(module, operation, entry.age());
                log_hit(&lookup, tier);
                return Ok(reply(req.request().clone(), &entry, "HIT", Some(tier)));
            }
            Found::Stale(entry) => Some(entry),
            Found::Absent => None,
        }
    };
    let (label, outcome) = if fresh {
        ("BYPASS", Outcome::Bypass)
    } else {
        ("MISS", Outcome::Miss)
    };

    // Overlapping loads of one key share one, fresh reads included: a client sending `no-cache`
    // on every request cannot multiply the queries. A load under way began after every write
    // this request could have seen (its key carries their generations).
    let leader = match cache.flights.join(lookup.key) {
        Role::Leader(leader) => Some(leader),
        Role::Follower(receiver) => {
            if let Some(entry) = flight::wait(receiver).await {
                cache
                    .metrics
                    .cache_request(module, operation, outcome, Tier::None);
                return Ok(reply(req.request().clone(), &entry, label, None));
            }
            None
        }
    };

    let loaded = read(next.call(req).await?).await?;
    if loaded.status == StatusCode::OK {
        cache
            .metrics
            .cache_request(module, operation, outcome, Tier::None);
        if !fresh {
            log_miss(&lookup);
        }
        let entry = cache
            .store(&lookup, loaded.body.clone(), loaded.content_type.clone())
            .await;
        if let Some(leader) = leader {
            leader.finish(entry.clone());
        }
        return Ok(match entry {
            Some(entry) => reply(loaded.req, &entry, label, None),
            None => loaded.uncached(label),
        });
    }
    if let Some(leader) = leader {
        leader.finish(None);
    }
    match stale {
        // The database cannot answer (503), or not for this tenant now (429, its share in use):
        // the answer fail-safe kept beats an error.
        Some(entry)
            if matches!(
                loaded.status,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
            ) && cache.fail_safe_enabled() =>
        {
            cache
                .metrics
                .cache_request(module, operation, Outcome::Stale, Tier::None);
            log::warn!(
                "[Cache] Stale: {} {} for tenant {} (database unavailable or busy)",
                module,
                operation,
                lookup.tenant
            );
            Ok(reply(loaded.req, &entry, "STALE", None))
        }
        _ => Ok(loaded.passthrough()),
    }
}
