//! Security: refused tokens never reach cached answers, one tenant never receives (or has
//! confirmed by a 304) another tenant's cached bytes, cursors do not cross tenants, hostile
//! bodies and query strings are refused cleanly, client text never reaches a response header
//! or a log line, and error bodies never carry SQL or internal text.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::errors::assert_error_body;
use crate::helpers::{
    header, into_json, minimal, spawn_app, spawn_replicas, RedisPrefix, TestApp, TestDatabase,
    LEAKS, MODULES,
};
use crate::support::binary::Server;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn claims(tenant: Uuid) -> Value {
    json!({"sub": "tester", "tenant_id": tenant, "role": "admin", "exp": now() + 3600})
}

fn sign(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing a token")
}

fn unsigned(claims: &Value) -> String {
    let b64 = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// Status and JSON body of an answer that must be clean: never a 5xx; an error is exactly
/// `{"error": {"code", "message"}}` and leaks nothing internal.
async fn clean(response: Response, context: &str) -> (u16, Value) {
    assert_no_client_text_in_headers(&response, context);
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("reading the body");
    assert!(
        status < 500,
        "{context}: answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{context}: body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    if status >= 400 {
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{context}: {status} without the error shape: {body}"));
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(1),
            "{context}: {body}"
        );
        assert_eq!(error.len(), 2, "{context}: {body}");
        assert!(error["code"].is_string(), "{context}: {body}");
        let message = error["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(!message.is_empty(), "{context}: {body}");
        for leak in LEAKS {
            assert!(
                !message.contains(leak),
                "{context}: message leaks internals ({leak:?}): {body}"
            );
        }
    }
    (status, body)
}

/// Text a test injects into requests; no response header may carry it.
const INJECTED: [&str; 3] = ["injected", "set-cookie: evil", "x-evil"];

fn assert_header_clean(name: &str, value: &[u8], context: &str) {
    let lower_name = name.to_ascii_lowercase();
    let lower_value = String::from_utf8_lossy(value).to_lowercase();
    for text in INJECTED {
        assert!(
            !lower_name.contains(text) && !lower_value.contains(text),
            "{context}: response header {name}: {lower_value:?} carries client text {text:?}"
        );
    }
    assert!(
        !value.iter().any(|b| *b == b'\r' || *b == b'\n' || *b == 0),
        "{context}: header {name} has a control character: {lower_value:?}"
    );
}

fn assert_no_client_text_in_headers(response: &Response, context: &str) {
    for (name, value) in response.headers() {
        assert_header_clean(name.as_str(), value.as_bytes(), context);
    }
    // Cookies are never set by this API.
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{context}: Set-Cookie in {:?}",
        response.headers()
    );
}

/// `text` percent-encoded byte by byte (every byte outside the unreserved set).
fn pct(text: &[u8]) -> String {
    text.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.header(CONTENT_TYPE, "application/json").body(body);
    }
    request.send().await.expect("sending the request")
}

/// The server still answers and still writes.
async fn assert_still_serving(app: &TestApp, token: &str) {
    let (status, _) = into_json(app.request(Method::GET, "/health/live", None, None).await).await;
    assert_eq!(status, 200, "the server stopped answering");
    app.create("accounts", token, minimal("accounts")).await;
}

/// A response read off a raw socket.
struct RawResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
}

/// Sends `head` and then `body` (written concurrently with reading, as a client that streams
/// does) over a fresh connection, and reads the answer until the server closes it.
async fn raw_request(app: &TestApp, head: Vec<u8>, body: Vec<u8>) -> RawResponse {
    let address = app.address.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connecting");
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        // The server may answer (and close) before it read everything: ignore write errors.
        if writer.write_all(&head).await.is_ok() {
            for chunk in body.chunks(16 * 1024) {
                if writer.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
        writer
    });
    let mut data = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                data.extend_from_slice(&buffer[..n]);
                // One answer is all we want: stop once it is complete.
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse::<usize>().ok());
                    if length.is_some_and(|length| data.len() >= end + 4 + length)
                        || (head.contains("transfer-encoding: chunked")
                            && data.ends_with(b"0\r\n\r\n"))
                    {
                        break;
                    }
                }
            }
            Err(_) => panic!("no complete answer within 30 s: {data:?}"),
        }
    }
    drop(writing);
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head in {:?}", String::from_utf8_lossy(&data)));
    let head = &data[..end];
    let mut lines = head.split(|b| *b == b'\n');
    let status_line = String::from_utf8_lossy(lines.next().unwrap()).into_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).into_owned();
            let value = line[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    let mut body = data[end + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(value).contains("chunked")
    });
    if chunked {
        body = decode_chunked(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// A request head for `target` (raw bytes, sent as they are).
fn raw_head(method: &str, target: &[u8], token: &str, extra: &[&str]) -> Vec<u8> {
    let mut head = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    head.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    for line in extra {
        head.extend_from_slice(line.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A raw answer must be clean: no 5xx, no client text in headers, the error shape on errors.
fn raw_clean(response: &RawResponse, context: &str) {
    assert!(
        response.status < 500,
        "{context}: answered {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    for (name, value) in &response.headers {
        assert_header_clean(name, value, context);
    }
    if response.status >= 400 && !response.body.is_empty() {
        let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
            panic!(
                "{context}: error body is not JSON: {}",
                String::from_utf8_lossy(&response.body)
            )
        });
        assert!(body["error"]["code"].is_string(), "{context}: {body}");
    }
}

/// The cached routes of the tests below, with queries that give every tenant its own answer.
const CACHED_URLS: [&str; 12] = [
    "/api/v2/accounts",
    "/api/v2/accounts?limit=2",
    "/api/v2/accounts?industry=software",
    "/api/v2/accounts?q=Acct",
    "/api/v2/accounts/count",
    "/api/v2/accounts/count?industry=software",
    "/api/v2/contacts",
    "/api/v2/leads?status=new",
    "/api/v2/opportunities",
    "/api/v2/opportunities/count",
    "/api/v2/opportunities/stats",
    "/api/v2/dashboard/bundle",
];

/// Records of one tenant, each named after `label` and numbered, `n` of each kind, with
/// amounts that make the tenant's stats its own.
async fn populate(app: &TestApp, token: &str, label: &str, n: usize, amount: f64) {
    for i in 0..n {
        app.create(
            "accounts",
            token,
            json!({"name": format!("Acct {label} {i}"), "industry": "software"}),
        )
        .await;
        app.create(
            "contacts",
            token,
            json!({"last_name": format!("Contact {label} {i}")}),
        )
        .await;
        app.create(
            "leads",
            token,
            json!({"last_name": format!("Lead {label} {i}")}),
        )
        .await;
        app.create(
            "opportunities",
            token,
            json!({"name": format!("Deal {label} {i}"), "amount": amount, "stage": "proposal"}),
        )
        .await;
        app.create(
            "activities",
            token,
            json!({"type": "call", "subject": format!("Call {label} {i}")}),
        )
        .await;
    }
}

/// One read: status, X-Cache, X-Cache-Tier, ETag and the exact bytes.
struct Read {
    status: u16,
    cache: String,
    tier: String,
    etag: String,
    bytes: Vec<u8>,
}

async fn read(app: &TestApp, path: &str, token: &str, headers: &[(&str, &str)]) -> Read {
    let response = app.get_with(path, token, headers).await;
    assert_no_client_text_in_headers(&response, path);
    Read {
        status: response.status().as_u16(),
        cache: header(&response, "x-cache"),
        tier: header(&response, "x-cache-tier"),
        etag: header(&response, "etag"),
        bytes: response.bytes().await.expect("body").to_vec(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refused_tokens_never_receive_cached_answers_or_304s_on_any_replica() {
    let apps = spawn_replicas(2, |_| {}).await;
    let tenant = Uuid::new_v4();
    let token = apps[0].token(tenant);
    populate(&apps[0], &token, "Alpha", 2, 100.0).await;
    // Every URL is hot on both replicas (L1) and in L2.
    let mut etags = Vec::new();
    for url in CACHED_URLS {
        let first = read(&apps[0], url, &token, &[]).await;
        assert_eq!(first.status, 200, "{url}");
        let again = read(&apps[1], url, &token, &[]).await;
        assert_eq!(again.cache, "HIT", "{url} warmed");
        etags.push(first.etag);
    }

    let secret = apps[0].secret.clone();
    let mut expired = claims(tenant);
    expired["exp"] = json!(now() - 10);
    let mut no_exp = claims(tenant);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_tenant = claims(tenant);
    no_tenant.as_object_mut().unwrap().remove("tenant_id");
    let bad_tokens = [
        ("alg none", unsigned(&claims(tenant))),
        ("another secret", sign("not-the-secret", &claims(tenant))),
        ("expired", sign(&secret, &expired)),
        ("no exp", sign(&secret, &no_exp)),
        ("no tenant_id", sign(&secret, &no_tenant)),
        (
            "the valid token's signature on alg none",
            format!(
                "{}{}",
                unsigned(&claims(tenant)),
                token.split('.').nth(2).unwrap()
            ),
        ),
    ];
    for (what, bad) in &bad_tokens {
        for (url, etag) in CACHED_URLS.iter().zip(&etags) {
            for app in &apps {
                for headers in [
                    vec![],
                    vec![("If-None-Match", etag.as_str())],
                    vec![("If-None-Match", "*")],
                    vec![("Cache-Control", "no-cache")],
                ] {
                    let context = format!("{what}: GET {url} {headers:?}");
                    let response = app.get_with(url, bad, &headers).await;
                    assert_eq!(header(&response, "x-cache"), "", "{context}");
                    assert_eq!(header(&response, "etag"), "", "{context}");
                    assert_eq!(header(&response, "www-authenticate"), "Bearer", "{context}");
                    let message = assert_error_body(response, 401, "unauthorized").await;
                    assert!(!message.contains("Alpha"), "{context}: {message}");
                }
            }
        }
    }
    // The owner's entries are untouched and still hot.
    for url in CACHED_URLS {
        let again = read(&apps[0], url, &token, &[]).await;
        assert_eq!(
            (again.cache.as_str(), again.tier.as_str()),
            ("HIT", "L1"),
            "{url}"
        );
    }
}

/// Waits until the wall clock's second is `second` (or later).
async fn wait_for_second(second: u64) {
    while now() < second {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An app, a tenant with one account, and the path of that account.
async fn one_account() -> (TestApp, Uuid, String) {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let owner = app.token(tenant);
    let record = app.create("accounts", &owner, minimal("accounts")).await;
    let by_id = format!("/api/v2/accounts/{}", record["id"].as_str().unwrap());
    (app, tenant, by_id)
}

/// A token of `tenant` expiring at `exp`, and proof that it works before then (which also has
/// the service remember it as verified).
async fn used_token(app: &TestApp, tenant: Uuid, exp: u64, by_id: &str) -> String {
    let mut short = claims(tenant);
    short["exp"] = json!(exp);
    let short = sign(&app.secret, &short);
    for path in ["/api/v2/accounts", "/api/v2/accounts/count", by_id] {
        let (status, body) = app.get_json(path, &short).await;
        assert_eq!(status, 200, "{path} before exp: {body}");
    }
    short
}

#[tokio::test]
async fn a_token_remembered_as_verified_is_refused_once_it_has_expired() {
    let (app, tenant, by_id) = one_account().await;
    let exp = now() + 2;
    let short = used_token(&app, tenant, exp, &by_id).await;
    wait_for_second(exp + 1).await;
    for path in ["/api/v2/accounts", "/api/v2/accounts/count", by_id.as_str()] {
        let response = app.get(path, &short).await;
        assert_eq!(header(&response, "x-cache"), "", "{path}");
        assert_error_body(response, 401, "unauthorized").await;
    }
    let response = app
        .post("/api/v2/accounts", &short, &minimal("accounts"))
        .await;
    assert_error_body(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_token_is_refused_during_the_second_of_its_exp() {
    // RFC 7519 4.1.4: the current time MUST be before `exp`; the contract allows no leeway.
    let (app, tenant, by_id) = one_account().await;
    // A token used while valid, then during the second its exp names.
    let exp = now() + 2;
    let short = used_token(&app, tenant, exp, &by_id).await;
    wait_for_second(exp).await;
    for path in ["/api/v2/accounts", "/api/v2/accounts/count", by_id.as_str()] {
        let response = app.get(path, &short).await;
        assert_error_body(response, 401, "unauthorized").await;
    }
    // A token never seen before whose exp is the current second.
    for _ in 0..3 {
        let mut at_exp = claims(tenant);
        at_exp["exp"] = json!(now());
        let at_exp = sign(&app.secret, &at_exp);
        let response = app.get(&by_id, &at_exp).await;
        assert_error_body(response, 401, "unauthorized").await;
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-tenant replay of cached URLs, ETags and cursors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tenant_b_replaying_tenant_a_cached_urls_on_two_replicas_only_ever_gets_its_own_bytes() {
    let apps = spawn_replicas(2, |_| {}).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (token_a, token_b) = (apps[0].token(a), apps[1].token(b));
    populate(&apps[0], &token_a, "Alpha", 3, 111.0).await;
    populate(&apps[1], &token_b, "Bravo", 2, 222.0).await;

    // Tenant A fills L1 on both replicas and L2.
    let mut answers_a = Vec::new();
    for url in CACHED_URLS {
        let miss = read(&apps[0], url, &token_a, &[]).await;
        assert_eq!((miss.status, miss.cache.as_str()), (200, "MISS"), "A {url}");
        let l2 = read(&apps[1], url, &token_a, &[]).await;
        assert_eq!(
            (l2.cache.as_str(), l2.tier.as_str()),
            ("HIT", "L2"),
            "A {url}"
        );
        assert_eq!(l2.bytes, miss.bytes, "A {url}");
        answers_a.push(miss);
    }

    // Tenant B replays every URL, first on one replica, then on the other, then again.
    for (index, (url, a_read)) in CACHED_URLS.iter().zip(&answers_a).enumerate() {
        let first_app = &apps[index % 2];
        let other_app = &apps[(index + 1) % 2];
        let first = read(first_app, url, &token_b, &[]).await;
        assert_eq!(first.status, 200, "B {url}: {}", text(&first.bytes));
        assert_eq!(
            first.cache, "MISS",
            "B's first read of {url} is not a hit on A's entry"
        );
        assert_ne!(first.bytes, a_read.bytes, "B got A's bytes for {url}");
        assert_ne!(first.etag, a_read.etag, "B got A's ETag for {url}");
        let body_b = text(&first.bytes);
        assert!(
            !body_b.contains("Alpha"),
            "B's {url} shows A's records: {body_b}"
        );
        for read_b in [
            read(other_app, url, &token_b, &[]).await,
            read(other_app, url, &token_b, &[]).await,
            read(first_app, url, &token_b, &[]).await,
        ] {
            assert_eq!(read_b.cache, "HIT", "B {url}");
            assert_eq!(read_b.bytes, first.bytes, "B {url}: B's own bytes");
            assert_eq!(read_b.etag, first.etag, "B {url}");
        }
        // What B was served is what PostgreSQL says for B (the bundle's generated_at aside).
        let fresh = read(first_app, url, &token_b, &[("Cache-Control", "no-cache")]).await;
        assert_eq!(fresh.cache, "BYPASS");
        if !url.contains("bundle") {
            assert_eq!(fresh.bytes, first.bytes, "B {url} cached = fresh");
        } else {
            let cached: Value = serde_json::from_slice(&first.bytes).unwrap();
            let fresh: Value = serde_json::from_slice(&fresh.bytes).unwrap();
            assert_eq!(cached["counts"], fresh["counts"]);
            assert_eq!(cached["counts"]["accounts"], 2);
        }
        // And A still gets A's bytes.
        let again_a = read(other_app, url, &token_a, &[]).await;
        assert_eq!(again_a.bytes, a_read.bytes, "A {url} after B's reads");
    }
}

#[tokio::test]
async fn if_none_match_with_another_tenants_etag_answers_200_with_the_callers_own_body() {
    let apps = spawn_replicas(2, |_| {}).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (token_a, token_b) = (apps[0].token(a), apps[0].token(b));
    populate(&apps[0], &token_a, "Alpha", 2, 10.0).await;
    populate(&apps[0], &token_b, "Bravo", 1, 20.0).await;

    for (index, url) in CACHED_URLS.iter().enumerate() {
        let a_read = read(&apps[index % 2], url, &token_a, &[]).await;
        assert_eq!(a_read.status, 200);
        let a_etag = a_read.etag.clone();
        assert!(a_etag.starts_with('"'), "{url}: {a_etag}");
        let lists = [
            a_etag.clone(),
            format!("\"nope\", {a_etag}"),
            format!("W/{a_etag}"),
        ];
        // On B's miss, then on B's L2 and L1 hits, on both replicas.
        let mut own: Option<(Vec<u8>, String)> = None;
        for app in [
            &apps[index % 2],
            &apps[(index + 1) % 2],
            &apps[(index + 1) % 2],
        ] {
            for value in &lists {
                let b_read = read(app, url, &token_b, &[("If-None-Match", value)]).await;
                assert_eq!(
                    b_read.status, 200,
                    "B sent A's ETag ({value}) for {url} and got {} ({})",
                    b_read.status, b_read.cache
                );
                assert!(!b_read.bytes.is_empty(), "{url}");
                assert_ne!(b_read.bytes, a_read.bytes, "{url}: A's bytes");
                assert_ne!(b_read.etag, a_etag, "{url}: A's ETag");
                assert!(!text(&b_read.bytes).contains("Alpha"), "{url}");
                match &own {
                    None => own = Some((b_read.bytes, b_read.etag)),
                    Some((bytes, etag)) => {
                        assert_eq!(&b_read.bytes, bytes, "{url}");
                        assert_eq!(&b_read.etag, etag, "{url}");
                    }
                }
            }
        }
        // The controls: each tenant's own ETag does answer 304.
        let (_, b_etag) = own.unwrap();
        for (app, token, etag) in [(&apps[0], &token_b, &b_etag), (&apps[1], &token_a, &a_etag)] {
            let response = app.get_with(url, token, &[("If-None-Match", etag)]).await;
            assert_eq!(response.status().as_u16(), 304, "{url} own ETag");
        }
    }
    // Without any cache entry of B's (cache bypassed on purpose), A's ETag is still not a match.
    let url = "/api/v2/accounts/count";
    let a_etag = read(&apps[0], url, &token_a, &[]).await.etag;
    let b_read = read(
        &apps[1],
        url,
        &token_b,
        &[("If-None-Match", &a_etag), ("Cache-Control", "no-cache")],
    )
    .await;
    assert_eq!(b_read.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&b_read.bytes).unwrap(),
        json!({"count": 1})
    );
}

#[tokio::test]
async fn a_cursor_of_tenant_a_is_refused_for_tenant_b_even_while_cached_for_a() {
    let apps = spawn_replicas(2, |_| {}).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (token_a, token_b) = (apps[0].token(a), apps[0].token(b));
    populate(&apps[0], &token_a, "Alpha", 3, 1.0).await;
    populate(&apps[0], &token_b, "Bravo", 3, 1.0).await;
    for module in MODULES {
        let (status, first) = apps[0]
            .get_json(&format!("/api/v2/{module}?limit=1"), &token_a)
            .await;
        assert_eq!(status, 200);
        let cursor = first["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let url = format!(
            "/api/v2/{module}?limit=1&{}",
            serde_urlencoded::to_string([("cursor", &cursor)]).unwrap()
        );
        // A's second page is cached on both replicas.
        let page_a = read(&apps[0], &url, &token_a, &[]).await;
        assert_eq!(page_a.status, 200, "{url}");
        assert_eq!(read(&apps[1], &url, &token_a, &[]).await.cache, "HIT");
        for app in &apps {
            for headers in [
                vec![],
                vec![("If-None-Match", page_a.etag.as_str())],
                vec![("Cache-Control", "no-cache")],
            ] {
                let response = app.get_with(&url, &token_b, &headers).await;
                assert_eq!(header(&response, "x-cache"), "", "B {url} {headers:?}");
                assert_error_body(response, 400, "invalid_query").await;
            }
            // Nor on another entity of B's.
            let other = if module == "accounts" {
                "leads"
            } else {
                "accounts"
            };
            let response = app
                .get(
                    &url.replace(&format!("/{module}?"), &format!("/{other}?")),
                    &token_b,
                )
                .await;
            assert_error_body(response, 400, "invalid_query").await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies
// ---------------------------------------------------------------------------------------------

const LIMIT: usize = 256 * 1024;

/// Every route that reads a JSON body, for one tenant's records.
async fn body_routes(app: &TestApp, token: &str) -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    for module in MODULES {
        let record = app.create(module, token, minimal(module)).await;
        let path = format!("/api/v2/{module}/{}", record["id"].as_str().unwrap());
        routes.push((Method::POST, format!("/api/v2/{module}")));
        routes.push((Method::PUT, path.clone()));
        routes.push((Method::PATCH, path));
    }
    routes.push((Method::POST, "/api/v2/cache/invalidate".to_owned()));
    routes
}

async fn counts(app: &TestApp, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for module in MODULES {
        all.push(
            app.get_json(&format!("/api/v2/{module}/count"), token)
                .await
                .1,
        );
    }
    all
}

#[tokio::test]
async fn nesting_100k_deep_and_bodies_around_256_kib_are_400_or_413_and_the_server_survives() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let routes = body_routes(&app, &token).await;
    let before = counts(&app, &token).await;
    let deep = 100_000;
    // Objects nested as deep as fits: `{"":` ×n, `1`, `}` ×n is 5n + 1 bytes.
    let fits = (LIMIT - 1) / 5;
    let nested_objects = |n: usize| format!("{}1{}", "{\"\":".repeat(n), "}".repeat(n));
    let many_keys = {
        let mut body = String::from("{");
        let mut i = 0;
        while body.len() < LIMIT - 64 {
            body.push_str(&format!("\"k{i}\":0,"));
            i += 1;
        }
        body.push_str("\"end\":0}");
        body
    };
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "arrays 100k deep",
            format!("{}{}", "[".repeat(deep), "]".repeat(deep)),
            400,
        ),
        ("arrays 100k deep, unclosed", "[".repeat(deep), 400),
        (
            "a field holding arrays 100k deep",
            format!("{{\"name\":{}\"x\"{}}}", "[".repeat(deep), "]".repeat(deep)),
            400,
        ),
        (
            "objects 100k deep (over 256 KiB)",
            nested_objects(deep),
            413,
        ),
        (
            "objects nested just under 256 KiB",
            nested_objects(fits),
            400,
        ),
        (
            "objects nested just over 256 KiB",
            nested_objects(fits + 1),
            413,
        ),
        ("thousands of keys just under 256 KiB", many_keys, 400),
        (
            "a number of 200k digits",
            format!(
                "{{\"name\":\"x\",\"employee_count\":{}}}",
                "9".repeat(200_000)
            ),
            400,
        ),
        (
            "escapes just under 256 KiB",
            format!("{{\"name\":\"{}\"}}", "\\u00e9".repeat((LIMIT - 16) / 6)),
            400,
        ),
    ];
    for (what, body, expected) in &cases {
        assert_eq!(
            body.len() > LIMIT,
            *expected == 413,
            "{what}: {} bytes",
            body.len()
        );
        for (method, path) in &routes {
            let context = format!("{what}: {method} {path}");
            let response = send(
                &app,
                method.clone(),
                path,
                Some(&token),
                &[],
                Some(body.clone().into_bytes()),
            )
            .await;
            let (status, error) = clean(response, &context).await;
            assert_eq!(status, *expected, "{context}: {error}");
            let code = error["error"]["code"].as_str().unwrap_or_default();
            match status {
                413 => assert_eq!(code, "payload_too_large", "{context}"),
                _ => assert!(
                    ["invalid_json", "validation_failed"].contains(&code),
                    "{context}: {error}"
                ),
            }
        }
    }
    // The same, streamed with chunked transfer encoding (no Content-Length to refuse early).
    for (what, body, expected) in &cases {
        let (method, path) = &routes[0];
        let head = raw_head(
            method.as_str(),
            path.as_bytes(),
            &token,
            &[
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            ],
        );
        let mut chunked = Vec::new();
        for chunk in body.as_bytes().chunks(8 * 1024) {
            chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            chunked.extend_from_slice(chunk);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let response = raw_request(&app, head, chunked).await;
        let context = format!("chunked {what}");
        raw_clean(&response, &context);
        assert_eq!(
            response.status,
            *expected,
            "{context}: {}",
            text(&response.body)
        );
    }
    assert_eq!(counts(&app, &token).await, before, "nothing was written");
    assert_still_serving(&app, &token).await;
}

#[tokio::test]
async fn invalid_utf8_in_json_bodies_is_invalid_json_on_every_body_route() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let routes = body_routes(&app, &token).await;
    let before = counts(&app, &token).await;
    let bodies: [(&str, &[u8]); 10] = [
        ("a lone continuation byte", b"{\"name\": \"a\x80b\"}"),
        ("0xff in a key", b"{\"na\xffme\": \"Acme\"}"),
        ("an overlong slash", b"{\"name\": \"\xc0\xaf\"}"),
        ("an overlong NUL", b"{\"name\": \"a\xc0\x80b\"}"),
        (
            "an encoded surrogate (CESU-8)",
            b"{\"name\": \"\xed\xa0\x80\"}",
        ),
        ("a truncated sequence", b"{\"name\": \"\xe2\x82\"}"),
        (
            "a code point past U+10FFFF",
            b"{\"name\": \"\xf4\x90\x80\x80\"}",
        ),
        ("Latin-1", b"{\"name\": \"caf\xe9\"}"),
        ("a lone surrogate escape", b"{\"name\": \"\\ud800\"}"),
        (
            "reversed surrogate escapes",
            b"{\"name\": \"\\udc00\\ud800\"}",
        ),
    ];
    for (what, body) in bodies {
        for (method, path) in &routes {
            let context = format!("{what}: {method} {path}");
            let response = send(
                &app,
                method.clone(),
                path,
                Some(&token),
                &[],
                Some(body.to_vec()),
            )
            .await;
            let (status, error) = clean(response, &context).await;
            assert_eq!(
                (status, error["error"]["code"].as_str()),
                (400, Some("invalid_json")),
                "{context}: {error}"
            );
        }
    }
    // UTF-16 is not UTF-8 JSON either.
    let utf16: Vec<u8> = "{\"name\": \"Acme\"}"
        .encode_utf16()
        .flat_map(|unit| unit.to_le_bytes())
        .collect();
    let response = send(
        &app,
        Method::POST,
        "/api/v2/accounts",
        Some(&token),
        &[],
        Some(utf16),
    )
    .await;
    assert_error_body(response, 400, "invalid_json").await;
    assert_eq!(counts(&app, &token).await, before, "nothing was written");
    assert_still_serving(&app, &token).await;
}

// ---------------------------------------------------------------------------------------------
// Control characters, CRLF and invalid UTF-8 in queries, paths and fields
// ---------------------------------------------------------------------------------------------

/// Hostile texts, as raw bytes (percent-encoded when sent).
const HOSTILE: [&[u8]; 12] = [
    b"a\r\nX-Injected: 1",
    b"\r\nSet-Cookie: evil=1\r\n\r\n<html>",
    b"\nX-Evil: yes",
    b"\r",
    b"\x01\x02\x1b[31m\x7f",
    b"\t\x0b\x0c",
    b"\xff\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"caf\xe9",
    b"\xe2\x80\xa8\xe2\x80\xa9",
    b"%00%0D%0A",
];

#[tokio::test]
async fn hostile_query_strings_and_paths_are_answered_cleanly_without_reaching_headers() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let record = app
        .create(
            "accounts",
            &token,
            json!({"name": "Acme", "industry": "software"}),
        )
        .await;
    let id = record["id"].as_str().unwrap().to_owned();
    let mut paths = Vec::new();
    for hostile in HOSTILE {
        let value = pct(hostile);
        for module in MODULES {
            let spec = aishacrm::domain::entities::ALL
                .iter()
                .find(|spec| spec.module.name() == module)
                .unwrap();
            for route in [
                format!("/api/v2/{module}"),
                format!("/api/v2/{module}/count"),
            ] {
                paths.push(format!("{route}?q={value}"));
                paths.push(format!("{route}?q=x&{value}=1"));
                for filter in spec.filters {
                    paths.push(format!("{route}?{}={value}", filter.name));
                }
            }
            paths.push(format!("/api/v2/{module}?limit={value}"));
            paths.push(format!("/api/v2/{module}?cursor={value}"));
            paths.push(format!("/api/v2/{module}/{value}"));
            paths.push(format!("/api/v2/{module}/{id}{value}"));
            paths.push(format!("/api/v2/{module}/{id}?{value}={value}"));
        }
        paths.push(format!("/api/v2/opportunities/stats?account_id={value}"));
        paths.push(format!("/api/v2/dashboard/bundle?{value}"));
        paths.push(format!("/api/v2/{value}"));
        paths.push(format!("/{value}"));
        paths.push(format!("/health/live?{value}"));
    }
    for path in &paths {
        let response = app.get(path, &token).await;
        let (status, body) = clean(response, path).await;
        assert!(
            [200, 400, 404].contains(&status),
            "GET {path}: {status} {body}"
        );
    }
    // A `q` with control characters is a search like any other.
    let (status, body) = app
        .get_json(
            &format!("/api/v2/accounts?q={}", pct(b"\r\nX-Injected: 1")),
            &token,
        )
        .await;
    assert_eq!((status, &body["data"]), (200, &json!([])));

    // The same bytes sent raw (not percent-encoded) in the request target.
    let raw_targets: Vec<Vec<u8>> = HOSTILE
        .iter()
        .filter(|hostile| !hostile.iter().any(|b| matches!(b, b'\r' | b'\n' | b' ')))
        .flat_map(|hostile| {
            [
                [b"/api/v2/accounts?q=".as_slice(), hostile].concat(),
                [b"/api/v2/accounts/count?industry=".as_slice(), hostile].concat(),
                [b"/api/v2/accounts/".as_slice(), hostile].concat(),
                [format!("/api/v2/accounts/{id}?").as_bytes(), hostile].concat(),
            ]
        })
        .collect();
    for target in &raw_targets {
        let response = raw_request(&app, raw_head("GET", target, &token, &[]), Vec::new()).await;
        let context = format!("raw GET {:?}", String::from_utf8_lossy(target));
        raw_clean(&response, &context);
        assert!(
            [200, 400, 404].contains(&response.status),
            "{context}: {}",
            response.status
        );
    }
    assert_still_serving(&app, &token).await;
}

#[tokio::test]
async fn control_characters_and_crlf_in_string_fields_are_stored_as_data_and_never_reach_headers() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let texts = [
        "Acme\r\nX-Injected: 1",
        "\r\nSet-Cookie: evil=1\r\n\r\n<html>",
        "tab\there\u{b}\u{c}",
        "esc \u{1b}[31m red \u{7f}",
        "\u{1}\u{2}\u{3}",
        "line\u{2028}para\u{2029}",
        "bidi \u{202e}txt.exe",
        "\u{feff}bom",
    ];
    for text in texts {
        let bodies = [
            (
                "accounts",
                json!({"name": text, "industry": text, "website": text}),
            ),
            (
                "contacts",
                json!({"last_name": text, "title": text, "email": format!("{text}@x")}),
            ),
            (
                "leads",
                json!({"last_name": text, "company": text, "source": text}),
            ),
            ("opportunities", json!({"name": text})),
            (
                "activities",
                json!({"type": "note", "subject": text, "body": text}),
            ),
        ];
        for (module, body) in bodies {
            let context = format!("POST {module} {text:?}");
            let response = app.post(&format!("/api/v2/{module}"), &token, &body).await;
            let location = header(&response, "location");
            let (status, created) = clean(response, &context).await;
            assert_eq!(status, 201, "{context}: {created}");
            let id = created["id"].as_str().unwrap();
            assert_eq!(location, format!("/api/v2/{module}/{id}"), "{context}");
            for (field, value) in body.as_object().unwrap() {
                assert_eq!(&created[field], value, "{context}: {field} kept as sent");
            }
            let path = format!("/api/v2/{module}/{id}");
            let (status, fetched) = clean(app.get(&path, &token).await, &context).await;
            assert_eq!((status, &fetched), (200, &created), "{context}");
            let (status, patched) = clean(app.patch(&path, &token, &body).await, &context).await;
            assert_eq!(status, 200, "{context}: {patched}");
        }
        // Found by `q` and by a text filter, with the bytes as stored.
        let query = serde_urlencoded::to_string([("q", text), ("industry", text)]).unwrap();
        let (status, listed) = clean(
            app.get(&format!("/api/v2/accounts?{query}"), &token).await,
            text,
        )
        .await;
        assert_eq!(status, 200, "{text:?}: {listed}");
        assert_eq!(listed["data"][0]["name"], text, "{text:?}");
    }
    assert_still_serving(&app, &token).await;
}

// ---------------------------------------------------------------------------------------------
// Error bodies at the edges
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn edge_inputs_never_answer_5xx_nor_error_bodies_with_internal_text() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let account = app.create("accounts", &token, minimal("accounts")).await;
    let account_id = account["id"].as_str().unwrap().to_owned();

    // Query strings.
    let emoji = "😀".repeat(254);
    let long_q = "x".repeat(20_000);
    let queries = [
        pct("%".repeat(254).as_bytes()),
        pct("\\".repeat(254).as_bytes()),
        pct("_".repeat(254).as_bytes()),
        pct(emoji.as_bytes()),
        pct("'; DROP TABLE accounts; --".as_bytes()),
        pct(b"\\%_\\"),
        pct("a".repeat(255).as_bytes()),
        pct(long_q.as_bytes()),
        pct(b"\x00"),
        pct(b"a\x00b"),
    ];
    for q in &queries {
        for module in MODULES {
            for route in [
                format!("/api/v2/{module}"),
                format!("/api/v2/{module}/count"),
            ] {
                let path = format!("{route}?q={q}");
                let (status, _) = clean(app.get(&path, &token).await, &route).await;
                assert!(
                    [200, 400].contains(&status),
                    "{route} q={:.40}: {status}",
                    q
                );
            }
        }
    }
    let industry_quotes = pct("'".repeat(100).as_bytes());
    let others = [
        format!("/api/v2/accounts?industry={industry_quotes}"),
        format!(
            "/api/v2/accounts?industry={}",
            pct("'".repeat(101).as_bytes())
        ),
        "/api/v2/accounts?limit=9223372036854775807".to_owned(),
        "/api/v2/accounts?limit=-9223372036854775808".to_owned(),
        "/api/v2/accounts?limit=99999999999999999999999".to_owned(),
        "/api/v2/accounts?limit=1e2".to_owned(),
        "/api/v2/accounts?limit=0x10".to_owned(),
        "/api/v2/accounts?limit=%205".to_owned(),
        "/api/v2/contacts?account_id=00000000-0000-0000-0000-000000000000".to_owned(),
        "/api/v2/contacts?account_id=ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        "/api/v2/activities?related_id=ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        format!("/api/v2/opportunities/stats?account_id={account_id}"),
        "/api/v2/opportunities/stats?account_id=ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        "/api/v2/accounts/ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        "/api/v2/accounts/00000000-0000-0000-0000-000000000000".to_owned(),
        format!("/api/v2/accounts/%7B{account_id}%7D"),
        format!("/api/v2/accounts/urn:uuid:{account_id}"),
        format!("/api/v2/accounts/{}", "9".repeat(4000)),
    ];
    for path in &others {
        let (status, body) = clean(app.get(path, &token).await, path).await;
        assert!([200, 400, 404].contains(&status), "{path}: {status} {body}");
    }

    // Bodies with values at the edges of every rule: accepted or refused, never a 5xx.
    let creates = [
        (
            "accounts",
            json!({"name": "Max", "employee_count": 2147483647, "annual_revenue": 999999999999.99}),
        ),
        (
            "accounts",
            json!({"name": "Over", "employee_count": 2147483648u64}),
        ),
        ("accounts", json!({"name": "Neg", "employee_count": -1})),
        ("accounts", json!({"name": "Huge", "annual_revenue": 1e300})),
        (
            "accounts",
            json!({"name": "Tiny", "annual_revenue": 5e-324}),
        ),
        (
            "accounts",
            json!({"name": "NegZero", "annual_revenue": -0.0}),
        ),
        ("accounts", json!({"name": "😀".repeat(200)})),
        ("accounts", json!({"name": "😀".repeat(201)})),
        ("leads", json!({"last_name": "Max", "score": 100})),
        ("leads", json!({"last_name": "Over", "score": 101})),
        (
            "leads",
            json!({"last_name": "Big", "score": 9223372036854775807i64}),
        ),
        (
            "leads",
            json!({"last_name": "Edge", "email": format!("{}@x", "a".repeat(252))}),
        ),
        (
            "opportunities",
            json!({"name": "Max", "amount": 999999999999.99, "probability": 100}),
        ),
        (
            "opportunities",
            json!({"name": "Over", "amount": 1000000000000.0}),
        ),
        (
            "opportunities",
            json!({"name": "Cent", "amount": 0.01, "probability": 0}),
        ),
        (
            "opportunities",
            json!({"name": "Last day", "close_date": "9999-12-31"}),
        ),
        (
            "opportunities",
            json!({"name": "First day", "close_date": "0001-01-01"}),
        ),
        (
            "opportunities",
            json!({"name": "Year 10000", "close_date": "10000-01-01"}),
        ),
        (
            "opportunities",
            json!({"name": "Year 0", "close_date": "0000-12-31"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "First", "due_at": "0001-01-01T00:00:00Z"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Last", "due_at": "9999-12-31T23:59:59.999999Z"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Nanos", "due_at": "9999-12-31T23:59:59.999999999Z"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Leap", "due_at": "2016-12-31T23:59:60Z"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Leap end", "due_at": "9999-12-31T23:59:60.999999Z"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Sub-micro", "due_at": "1969-12-31T23:59:59.9999999Z"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Offset", "due_at": "0001-01-01T00:00:00+00:01"}),
        ),
        (
            "activities",
            json!({"type": "task", "subject": "Offset end", "due_at": "9999-12-31T23:59:59-00:01"}),
        ),
        (
            "activities",
            json!({"type": "note", "subject": "Long", "body": "😀".repeat(10_000)}),
        ),
        (
            "activities",
            json!({"type": "note", "subject": "Too long", "body": "😀".repeat(10_001)}),
        ),
    ];
    let mut created = Vec::new();
    for (module, body) in &creates {
        let context = format!("POST {module} {:.120}", body.to_string());
        let (status, answer) = clean(
            app.post(&format!("/api/v2/{module}"), &token, body).await,
            &context,
        )
        .await;
        assert!([201, 400].contains(&status), "{context}: {status} {answer}");
        if status == 201 {
            // An accepted time is answered within the years 1–9999, as RFC 3339 in UTC.
            if let Some(due_at) = answer["due_at"].as_str() {
                let parsed = chrono::DateTime::parse_from_rfc3339(due_at);
                assert!(
                    parsed.is_ok_and(|at| (1..=9999).contains(&chrono::Datelike::year(&at))),
                    "{context}: answered due_at {due_at:?}"
                );
            }
            let path = format!("/api/v2/{module}/{}", answer["id"].as_str().unwrap());
            let (status, fetched) = clean(app.get(&path, &token).await, &context).await;
            assert_eq!((status, &fetched), (200, &answer), "{context}");
            created.push(path);
        }
    }
    assert!(created.len() > 10, "the valid edge values were stored");
    // Every read over the stored edge values still answers.
    for module in MODULES {
        for path in [
            format!("/api/v2/{module}?limit=200"),
            format!("/api/v2/{module}/count"),
        ] {
            let (status, body) = clean(app.get(&path, &token).await, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    for path in ["/api/v2/opportunities/stats", "/api/v2/dashboard/bundle"] {
        let (status, body) = clean(app.get(path, &token).await, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Log injection, against the real binary's stderr
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn log_lines_never_carry_client_supplied_text() {
    let database = TestDatabase::create().await;
    let redis_keys = RedisPrefix::fresh();
    let prefix = redis_keys.prefix.clone();
    let secret = format!("secret-{}", Uuid::new_v4());
    let mut server = Server::start(&database.url, &prefix, &secret);
    let tenant = Uuid::new_v4();
    let keys = aishacrm::auth::JwtKeys::new(secret.as_bytes());
    let token = keys
        .mint(tenant, aishacrm::auth::Role::Admin, "test", 600)
        .unwrap();
    // A tenant that exists only in client text; a marker that every client string carries.
    let fake = Uuid::new_v4();
    let marker = format!("MARK{}", Uuid::new_v4().simple());
    let lookalikes = [
        format!("x\n[Cache] Hit: opportunities list for tenant {fake} (L1) {marker}"),
        format!("x\r\n[Cache] Invalidated: accounts for tenant {fake} {marker}\r\n"),
        format!("{marker}\n[Cache] Miss: leads count for tenant {fake}"),
        format!("\u{1b}[2K\r[Cache] Stats: hits=999999 {marker} tenant {fake}"),
        format!("[log] 1 lines dropped {marker} {fake}"),
    ];
    let client = reqwest::Client::new();
    let base = server.address.clone();
    let send = |method: Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token)
            .header("User-Agent", format!("agent {marker}"))
            .header("X-Request-Id", marker.clone());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    for text in &lookalikes {
        let value = pct(text.as_bytes());
        let mut requests: Vec<(Method, String, Option<Value>)> = vec![
            (
                Method::POST,
                "/api/v2/accounts".into(),
                Some(json!({"name": text, "industry": text})),
            ),
            (
                Method::POST,
                "/api/v2/opportunities".into(),
                Some(json!({"name": text})),
            ),
            (
                Method::POST,
                "/api/v2/leads".into(),
                Some(json!({"last_name": text, "source": text})),
            ),
            (
                Method::POST,
                "/api/v2/accounts".into(),
                Some(Value::Object(serde_json::Map::from_iter([(
                    text.clone(),
                    json!(1),
                )]))),
            ),
            (
                Method::POST,
                "/api/v2/accounts".into(),
                Some(json!({"name": 1, "x": text})),
            ),
            (
                Method::POST,
                "/api/v2/activities".into(),
                Some(json!({"type": text, "subject": "s"})),
            ),
            (
                Method::POST,
                "/api/v2/cache/invalidate".into(),
                Some(json!({"module": text})),
            ),
            (Method::GET, format!("/api/v2/{value}"), None),
            (Method::GET, format!("/api/v2/accounts/{value}"), None),
            (Method::DELETE, format!("/api/v2/accounts/{value}"), None),
            (
                Method::GET,
                format!("/api/v2/dashboard/bundle?{value}=1"),
                None,
            ),
            (
                Method::GET,
                format!("/api/v2/opportunities/stats?account_id={value}"),
                None,
            ),
        ];
        for route in [
            "/api/v2/accounts",
            "/api/v2/accounts/count",
            "/api/v2/leads",
        ] {
            for query in [
                format!("q={value}"),
                format!("industry={value}"),
                format!("source={value}"),
                format!("{value}=1"),
                format!("cursor={value}"),
                format!("limit={value}"),
            ] {
                // Twice: the second read of a valid query is a cache hit, logged.
                requests.push((Method::GET, format!("{route}?{query}"), None));
                requests.push((Method::GET, format!("{route}?{query}"), None));
            }
        }
        for (method, path, body) in requests {
            let response = send(method.clone(), path.clone(), body).await.unwrap();
            let status = response.status().as_u16();
            assert!(status < 500, "{method} {path}: {status}");
        }
    }
    // An invalid JSON body that carries the text, and a write that logs an invalidation.
    let response = client
        .post(format!("{base}/api/v2/accounts"))
        .bearer_auth(&token)
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{{\"name\": \"{marker}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let seen_before = server.seen.len();
    server.wait_for(
        &format!("[Cache] Hit: accounts list for tenant {tenant}"),
        0,
    );
    server.wait_for(
        &format!("[Cache] Invalidated: accounts for tenant {tenant}"),
        0,
    );
    // Two stats periods after the last request, every line of it has been written.
    server.wait_for("[Cache] Stats:", seen_before);
    let after_one = server.seen.len();
    server.wait_for("[Cache] Stats:", after_one);

    let mut cache_lines = 0;
    for line in &server.seen {
        assert!(
            !line.contains(&marker),
            "a log line carries client text: {line:?}"
        );
        assert!(
            !line.contains(&fake.to_string()),
            "a log line carries a tenant id from client text: {line:?}"
        );
        if let Some(rest) = line.split("[Cache] ").nth(1) {
            cache_lines += 1;
            for kind in ["Hit:", "Miss:", "Invalidated:"] {
                if rest.starts_with(kind) {
                    assert!(
                        rest.contains(&format!("for tenant {tenant}")),
                        "a cache line for another tenant: {line:?}"
                    );
                }
            }
        }
    }
    assert!(cache_lines > 10, "the cache logged: {:?}", server.seen);
}
