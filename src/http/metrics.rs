//! `GET /metrics` (Prometheus text, no auth) and the request-duration histogram.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpRequest, HttpResponse};

use super::only;
use crate::domain::entities;
use crate::metrics::Exposition;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .route(web::get().to(render))
            .default_service(only("GET")),
    );
}

/// Prometheus text by default; OpenMetrics only when `Accept` names it (as Prometheus itself
/// does when it prefers OpenMetrics).
async fn render(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let wants_openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|kind| {
            let (media, params) = kind.split_once(';').unwrap_or((kind, ""));
            media
                .trim()
                .eq_ignore_ascii_case("application/openmetrics-text")
                && !params
                    .split(';')
                    .any(|param| param.trim().replace(' ', "") == "q=0")
        });
    let format = if wants_openmetrics {
        Exposition::OpenMetrics
    } else {
        Exposition::Prometheus
    };
    state.cache.update_gauges().await;
    HttpResponse::Ok()
        .content_type(format.content_type())
        .body(state.metrics.render(format))
}

/// The route pattern of a path, for the duration label: the path itself for a static route,
/// `/api/v2/<entity>/{id}` for a record route, `unmatched` for anything else (never the raw path,
/// which would carry ids and make the label set unbounded). Computed from the route table instead
/// of by re-running the router's regexes on every request, and never allocating: every label is
/// made once.
fn route_label(path: &str) -> &'static str {
    struct Labels {
        fixed: HashSet<&'static str>,
        records: Vec<(&'static str, &'static str)>,
    }
    static LABELS: OnceLock<Labels> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        let fixed = super::openapi::document()["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .filter(|path| !path.contains('{'))
                    .map(|path| &*Box::leak(path.clone().into_boxed_str()))
                    .collect()
            })
            .unwrap_or_default();
        let records = entities::ALL
            .iter()
            .map(|spec| {
                let label = format!("/api/v2/{}/{{id}}", spec.module);
                (spec.module.name(), &*Box::leak(label.into_boxed_str()))
            })
            .collect();
        Labels { fixed, records }
    });
    if let Some(fixed) = labels.fixed.get(path) {
        return fixed;
    }
    if let Some((base, id)) = path.rsplit_once('/') {
        let module = base.strip_prefix("/api/v2/");
        let record = labels
            .records
            .iter()
            .find(|(entity, _)| module == Some(entity));
        if let (Some((_, label)), false) = (record, id.is_empty()) {
            return label;
        }
    }
    "unmatched"
}

/// The method as a label: the standard ones by name, anything else as `other` (a client may
/// send any token as a method; the label set stays bounded).
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    const NAMES: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN
        .iter()
        .position(|known| known == method)
        .map_or("other", |at| NAMES[at])
}

/// Observes every request's duration under its route pattern, and serves `HEAD` through the
/// `GET` route of its path ([`crate::http::serve_head_as_get`]). One middleware for both: each
/// layer costs an allocation on every request, cache hits included.
pub async fn track_duration(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = route_label(req.path());
    let method = method_label(req.method());
    super::serve_head_as_get(&mut req);
    let response = next.call(req).await?;
    if let Some(state) = state {
        state.metrics.http_request(
            route,
            method,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{method_label, route_label};
    use actix_web::http::Method;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }

    #[test]
    fn labels_are_route_patterns_never_raw_ids() {
        assert_eq!(route_label("/api/v2/accounts"), "/api/v2/accounts");
        assert_eq!(
            route_label("/api/v2/accounts/count"),
            "/api/v2/accounts/count"
        );
        assert_eq!(
            route_label("/api/v2/accounts/5f1c0000-0000-4000-8000-000000000000"),
            "/api/v2/accounts/{id}"
        );
        assert_eq!(
            route_label("/api/v2/opportunities/stats"),
            "/api/v2/opportunities/stats"
        );
        assert_eq!(route_label("/metrics"), "/metrics");
        assert_eq!(route_label("/api/v2/widgets/1"), "unmatched");
        assert_eq!(route_label("/nope"), "unmatched");
        assert_eq!(route_label("/api/v2/accounts/x/y"), "unmatched");
    }
}
