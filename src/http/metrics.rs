//! `GET /metrics` (Prometheus text, no auth) and the request-duration histogram.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};

use super::only;
use crate::domain::entities;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .route(web::get().to(render))
            .default_service(only("GET")),
    );
}

async fn render(state: web::Data<AppState>) -> HttpResponse {
    state.cache.update_gauges().await;
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

/// The route pattern of a path, for the duration label: the path itself for a static route,
/// `/api/v2/<entity>/{id}` for a record route, `unmatched` for anything else (never the raw path,
/// which would carry ids and make the label set unbounded). Computed from the route table instead
/// of by re-running the router's regexes on every request.
fn route_label(path: &str) -> String {
    static STATIC: OnceLock<HashSet<String>> = OnceLock::new();
    let known = STATIC.get_or_init(|| {
        super::openapi::document()["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .filter(|path| !path.contains('{'))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    });
    if known.contains(path) {
        return path.to_owned();
    }
    if let Some((base, id)) = path.rsplit_once('/') {
        let is_entity = entities::ALL
            .iter()
            .any(|spec| base.strip_prefix("/api/v2/") == Some(spec.module));
        if is_entity && !id.is_empty() {
            return format!("{base}/{{id}}");
        }
    }
    "unmatched".to_owned()
}

/// Observes every request's duration under its route pattern.
pub async fn track_duration(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = route_label(req.path());
    let method = req.method().to_string();
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
    use super::route_label;

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
