//! `GET /metrics`: Prometheus text by default, OpenMetrics when asked, both valid for the
//! Prometheus tools.

use std::io::Write;
use std::process::{Command, Stdio};

use uuid::Uuid;

use crate::helpers::{header, minimal, spawn_replicas, TestApp};

async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String) {
    let mut request = app.client.get(format!("{}/metrics", app.address));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let response = request.send().await.expect("scraping /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = header(&response, "content-type");
    (content_type, response.text().await.expect("metrics text"))
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (Debian's prometheus package; .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("feeding promtool");
    let output = child.wait_with_output().expect("promtool's output");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[tokio::test]
async fn a_plain_scrape_is_prometheus_text_that_promtool_accepts() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    // Every kind of series: hits and misses of several routes, an invalidation, durations.
    for path in [
        "/api/v2/leads",
        "/api/v2/leads/count",
        "/api/v2/opportunities/stats",
    ] {
        app.get(path, &token).await;
        app.get(path, &token).await;
    }
    app.create("leads", &token, minimal("leads")).await;

    let (content_type, text) = scrape(app, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE aishacrm_cache_requests_total counter"),
        "{text}"
    );
    let (valid, printed) = promtool_check(&text);
    assert!(
        valid,
        "promtool check metrics refused the scrape:\n{printed}\n{text}"
    );

    let (content_type, _) = scrape(app, Some("text/plain;version=0.0.4;q=0.9,*/*;q=0.1")).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
}

#[tokio::test]
async fn a_scraper_that_asks_for_openmetrics_gets_it() {
    let apps = spawn_replicas(1, |_| {}).await;
    let app = &apps[0];
    let token = app.token(Uuid::new_v4());
    app.get("/api/v2/accounts/count", &token).await;
    // What Prometheus sends when it prefers OpenMetrics.
    let accept = "application/openmetrics-text;version=1.0.0;q=0.5,\
                  application/openmetrics-text;version=0.0.1;q=0.4,\
                  text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (content_type, text) = scrape(app, Some(accept)).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert!(text.contains("# TYPE aishacrm_cache_requests counter"));
    // Refused with q=0: the plain text.
    let (content_type, _) = scrape(app, Some("application/openmetrics-text;q=0, text/plain")).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
}

/// The value of the sample `name` (with its labels as written) in a Prometheus text scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn invalidation_lag_and_hit_age_are_measured() {
    let apps = spawn_replicas(2, |_| {}).await;
    let (writer, other) = (&apps[0], &apps[1]);
    let token = writer.token(Uuid::new_v4());
    other.get("/api/v2/leads/count", &token).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let hit = other.get("/api/v2/leads/count", &token).await;
    assert_eq!(header(&hit, "x-cache"), "HIT");
    writer.create("leads", &token, minimal("leads")).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let (_, text) = scrape(other, None).await;
    let ages = sample(
        &text,
        r#"aishacrm_cache_hit_age_seconds_count{module="leads",operation="count"}"#,
    );
    assert_eq!(ages, Some(1.0), "{text}");
    let age = sample(
        &text,
        r#"aishacrm_cache_hit_age_seconds_sum{module="leads",operation="count"}"#,
    )
    .unwrap_or_default();
    assert!(
        (0.15..5.0).contains(&age),
        "the hit served an entry {age} s old"
    );
    assert_eq!(
        sample(&text, "aishacrm_cache_invalidation_lag_seconds_count"),
        Some(1.0),
        "{text}"
    );
    let lag = sample(&text, "aishacrm_cache_invalidation_lag_seconds_sum").unwrap_or(-1.0);
    assert!(
        (0.0..0.1).contains(&lag),
        "the bus delivered the invalidation after {lag} s"
    );
    // The writer applied its own write: no lag of its own to report.
    let (_, text) = scrape(writer, None).await;
    assert_eq!(
        sample(&text, "aishacrm_cache_invalidation_lag_seconds_count"),
        Some(0.0)
    );
}

/// Runs `promtool` with `args`; its output, failing the test when it fails.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running promtool (Debian's prometheus package; .ci/run installs it)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{printed}");
    printed
}

/// The alert and recording rules of docker/prometheus/ are valid, pass their unit tests, and
/// name only metrics the service really exposes.
#[tokio::test]
async fn the_alert_rules_check_pass_their_tests_and_use_the_services_metric_names() {
    promtool(&["check", "rules", "docker/prometheus/rules.yml"]);
    promtool(&["check", "config", "docker/prometheus/prometheus.yml"]);
    let tested = promtool(&["test", "rules", "docker/prometheus/rules_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Traffic that gives every family a series: a miss, a hit, an invalidation.
    let apps = spawn_replicas(1, |_| {}).await;
    let token = apps[0].token(Uuid::new_v4());
    apps[0].get("/api/v2/leads/count", &token).await;
    apps[0].get("/api/v2/leads/count", &token).await;
    apps[0].create("leads", &token, minimal("leads")).await;
    let (_, scrape) = scrape(&apps[0], None).await;
    let families: std::collections::HashSet<&str> = scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "docker/prometheus/rules.yml",
        "docker/prometheus/rules_test.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect("reading the rules");
        let mut names: Vec<&str> = text
            .match_indices("aishacrm_")
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                families.contains(name) || families.contains(family),
                "{file} uses {name}, which /metrics does not expose: {families:?}"
            );
        }
    }
}
