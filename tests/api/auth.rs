//! Bearer JWTs: HS256 with `JWT_SECRET`, claims `sub`, `tenant_id` (UUID), `role` (`admin` or
//! `member`) and a required `exp`. Anything else is `401 unauthorized` on every `/api/v2` route,
//! and a refused request changes nothing. Health probes and the OpenAPI document are public.

use std::time::{SystemTime, UNIX_EPOCH};

use aishacrm::auth::Role;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::errors::assert_error_body;
use crate::helpers::{into_json, minimal, spawn_app, TestApp, MODULES};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Valid claims for `tenant`, an admin, valid for an hour.
pub fn claims(tenant: Uuid) -> Value {
    json!({"sub": "tester", "tenant_id": tenant, "role": "admin", "exp": now() + 3600})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(secret: &str, algorithm: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing a token")
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A token with an empty signature, as `alg: none` tokens are.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", b64(header), b64(claims))
}

/// An app, a tenant with an admin token, and one record of each entity.
struct Fixture {
    app: TestApp,
    tenant: Uuid,
    token: String,
    /// (module, path, record).
    records: Vec<(&'static str, String, Value)>,
}

async fn fixture() -> Fixture {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    let mut records = Vec::new();
    for module in MODULES {
        let record = app.create(module, &token, minimal(module)).await;
        let path = format!("/api/v2/{module}/{}", record["id"].as_str().unwrap());
        records.push((module, path, record));
    }
    Fixture {
        app,
        tenant,
        token,
        records,
    }
}

/// A request whose `Authorization` header is exactly `authorization` (absent when `None`).
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("sending the request")
}

/// Every kind of `/api/v2` route answers `401 unauthorized` to `authorization`, and nothing
/// was written.
async fn assert_refused_everywhere(fx: &Fixture, authorization: Option<&str>, what: &str) {
    let app = &fx.app;
    for (module, path, _) in &fx.records {
        let list = format!("/api/v2/{module}");
        let body = minimal(module);
        let cases = [
            (Method::GET, list.clone(), None),
            (Method::GET, format!("{list}?limit=5"), None),
            (Method::GET, format!("{list}/count"), None),
            (Method::GET, path.clone(), None),
            (Method::POST, list.clone(), Some(&body)),
            (Method::PUT, path.clone(), Some(&body)),
            (Method::PATCH, path.clone(), Some(&body)),
            (Method::DELETE, path.clone(), None),
        ];
        for (method, path, body) in cases {
            eprintln!("{what}: {method} {path}");
            let response = send(app, method, &path, authorization, body).await;
            assert_error_body(response, 401, "unauthorized").await;
        }
    }
    for path in ["/api/v2/opportunities/stats", "/api/v2/dashboard/bundle"] {
        eprintln!("{what}: GET {path}");
        let response = send(app, Method::GET, path, authorization, None).await;
        assert_error_body(response, 401, "unauthorized").await;
    }
    // Nothing was created, changed or deleted.
    for (module, path, record) in &fx.records {
        let (status, fetched) = app.get_json(path, &fx.token).await;
        assert_eq!(status, 200, "{what}: {path} is gone: {fetched}");
        assert_eq!(&fetched, record, "{what}: {path} changed");
        let (_, count) = app
            .get_json(&format!("/api/v2/{module}/count"), &fx.token)
            .await;
        assert_eq!(count, json!({"count": 1}), "{what}: {module} count");
    }
}

async fn assert_refused_tokens(fx: &Fixture, tokens: &[(&str, String)]) {
    for (what, token) in tokens {
        let header = format!("Bearer {token}");
        assert_refused_everywhere(fx, Some(&header), what).await;
    }
}

#[tokio::test]
async fn crafted_tokens_with_every_claim_are_accepted() {
    // The control for the refusals below: tokens built here by hand are the kind the service takes.
    let fx = fixture().await;
    let secret = fx.app.secret.clone();
    let tokens = [
        sign(&secret, Algorithm::HS256, &claims(fx.tenant)),
        sign(
            &secret,
            Algorithm::HS256,
            &with(claims(fx.tenant), "role", json!("member")),
        ),
        sign(
            &secret,
            Algorithm::HS256,
            &with(claims(fx.tenant), "iat", json!(now())),
        ),
    ];
    for token in tokens {
        for path in [
            "/api/v2/accounts".to_owned(),
            "/api/v2/accounts/count".to_owned(),
            fx.records[0].1.clone(),
        ] {
            let (status, body) = fx.app.get_json(&path, &token).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        let (status, listed) = fx.app.get_json("/api/v2/accounts", &token).await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"], json!([fx.records[0].2]));
    }
}

#[tokio::test]
async fn requests_without_an_authorization_header_are_unauthorized() {
    let fx = fixture().await;
    assert_refused_everywhere(&fx, None, "no Authorization header").await;
}

#[tokio::test]
async fn schemes_other_than_bearer_are_unauthorized() {
    let fx = fixture().await;
    let token = fx.token.clone();
    let headers = [
        "Basic dXNlcjpwYXNzd29yZA==".to_owned(),
        format!("Basic {token}"),
        format!("Token {token}"),
        format!("JWT {token}"),
        format!("Digest {token}"),
        token.clone(),
        format!("Bearer{token}"),
        format!("Bearer: {token}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        String::new(),
    ];
    for header in &headers {
        assert_refused_everywhere(&fx, Some(header), &format!("Authorization: {header:?}")).await;
    }
}

#[tokio::test]
async fn garbage_and_tampered_tokens_are_unauthorized() {
    let fx = fixture().await;
    let token = fx.token.clone();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // The signature with one character in its middle changed.
    let mut signature: Vec<char> = parts[2].chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    let signature: String = signature.into_iter().collect();
    let bad_signature = format!("{}.{}.{signature}", parts[0], parts[1]);
    // Another tenant's claims under this token's (valid) signature.
    let swapped = format!("{}.{}.{}", parts[0], b64(&claims(Uuid::new_v4())), parts[2]);
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let tokens = [
        ("garbage", "garbage".to_owned()),
        ("three dots", "a.b.c".to_owned()),
        ("empty parts", "..".to_owned()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{token}.{}", parts[2])),
        ("unsigned HS256", unsigned(&header, &claims(fx.tenant))),
        ("bad signature", bad_signature),
        ("swapped claims", swapped),
        ("trailing junk", format!("{token}x")),
        (
            "not JSON inside",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("not json"),
                URL_SAFE_NO_PAD.encode("not json"),
                parts[2]
            ),
        ),
    ];
    assert_refused_tokens(&fx, &tokens).await;
}

#[tokio::test]
async fn expired_tokens_are_unauthorized() {
    let fx = fixture().await;
    let secret = fx.app.secret.clone();
    let tokens = [
        (
            "expired an hour ago",
            sign(
                &secret,
                Algorithm::HS256,
                &with(claims(fx.tenant), "exp", json!(now() - 3600)),
            ),
        ),
        (
            "expired a minute ago",
            sign(
                &secret,
                Algorithm::HS256,
                &with(claims(fx.tenant), "exp", json!(now() - 60)),
            ),
        ),
        (
            "exp 0",
            sign(
                &secret,
                Algorithm::HS256,
                &with(claims(fx.tenant), "exp", json!(0)),
            ),
        ),
    ];
    assert_refused_tokens(&fx, &tokens).await;
}

#[tokio::test]
async fn tokens_signed_with_another_secret_are_unauthorized() {
    let fx = fixture().await;
    let secret = fx.app.secret.clone();
    let tokens = [
        (
            "another secret",
            sign("another-secret", Algorithm::HS256, &claims(fx.tenant)),
        ),
        (
            "the secret plus one character",
            sign(&format!("{secret}x"), Algorithm::HS256, &claims(fx.tenant)),
        ),
        (
            "a prefix of the secret",
            sign(
                &secret[..secret.len() - 1],
                Algorithm::HS256,
                &claims(fx.tenant),
            ),
        ),
        (
            "an empty secret",
            sign("", Algorithm::HS256, &claims(fx.tenant)),
        ),
    ];
    assert_refused_tokens(&fx, &tokens).await;
}

#[tokio::test]
async fn unsigned_and_non_hs256_tokens_are_unauthorized() {
    let fx = fixture().await;
    let secret = fx.app.secret.clone();
    let valid_signature = fx.token.split('.').nth(2).unwrap().to_owned();
    let mut tokens = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        tokens.push(("alg none", unsigned(&header, &claims(fx.tenant))));
        // With a signature that is not one for this header and claims.
        tokens.push((
            "alg none with a signature",
            format!("{}{valid_signature}", unsigned(&header, &claims(fx.tenant))),
        ));
    }
    tokens.push((
        "no alg",
        unsigned(&json!({"typ": "JWT"}), &claims(fx.tenant)),
    ));
    // The right secret, but not HS256.
    tokens.push(("HS384", sign(&secret, Algorithm::HS384, &claims(fx.tenant))));
    tokens.push(("HS512", sign(&secret, Algorithm::HS512, &claims(fx.tenant))));
    assert_refused_tokens(&fx, &tokens).await;
}

#[tokio::test]
async fn tokens_with_missing_or_malformed_claims_are_unauthorized() {
    let fx = fixture().await;
    let secret = fx.app.secret.clone();
    let base = claims(fx.tenant);
    let bad_claims = [
        ("no exp", without(base.clone(), "exp")),
        ("exp null", with(base.clone(), "exp", Value::Null)),
        (
            "exp a string",
            with(base.clone(), "exp", json!("9999999999")),
        ),
        ("no tenant_id", without(base.clone(), "tenant_id")),
        (
            "tenant_id null",
            with(base.clone(), "tenant_id", Value::Null),
        ),
        (
            "tenant_id not a UUID",
            with(base.clone(), "tenant_id", json!("not-a-uuid")),
        ),
        (
            "tenant_id almost a UUID",
            with(base.clone(), "tenant_id", json!(format!("{}0", fx.tenant))),
        ),
        (
            "tenant_id empty",
            with(base.clone(), "tenant_id", json!("")),
        ),
        (
            "tenant_id a number",
            with(base.clone(), "tenant_id", json!(42)),
        ),
        ("no role", without(base.clone(), "role")),
        (
            "role superuser",
            with(base.clone(), "role", json!("superuser")),
        ),
        ("role owner", with(base.clone(), "role", json!("owner"))),
        ("role empty", with(base.clone(), "role", json!(""))),
        ("role a number", with(base.clone(), "role", json!(1))),
        ("role a list", with(base.clone(), "role", json!(["admin"]))),
        ("empty claims", json!({})),
    ];
    let tokens: Vec<(&str, String)> = bad_claims
        .iter()
        .map(|(what, claims)| (*what, sign(&secret, Algorithm::HS256, claims)))
        .collect();
    assert_refused_tokens(&fx, &tokens).await;
}

#[tokio::test]
async fn member_tokens_may_use_every_entity_route() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let member = app.token_as(tenant, Role::Member);
    let admin = app.token(tenant);
    for module in MODULES {
        let list = format!("/api/v2/{module}");
        // A record the admin made is the member's too: the tenant is the token's.
        let by_admin = app.create(module, &admin, minimal(module)).await;

        let response = app.post(&list, &member, &minimal(module)).await;
        assert_eq!(response.status().as_u16(), 201, "member POST {module}");
        let created: Value = response.json().await.unwrap();
        let path = format!("{list}/{}", created["id"].as_str().unwrap());

        let (status, listed) = app.get_json(&list, &member).await;
        assert_eq!(status, 200, "member GET {list}: {listed}");
        assert_eq!(listed["data"], json!([created, by_admin]));
        let (status, count) = app.get_json(&format!("{list}/count"), &member).await;
        assert_eq!((status, count), (200, json!({"count": 2})), "{module}");
        let (status, fetched) = app.get_json(&path, &member).await;
        assert_eq!((status, &fetched), (200, &created), "member GET {path}");

        let (status, put) = into_json(app.put(&path, &member, &minimal(module)).await).await;
        assert_eq!(status, 200, "member PUT {path}: {put}");
        let (status, patched) = into_json(app.patch(&path, &member, &json!({})).await).await;
        assert_eq!(status, 200, "member PATCH {path}: {patched}");

        let response = app.delete(&path, &member).await;
        assert_eq!(response.status().as_u16(), 204, "member DELETE {path}");
        let (status, _) = app.get_json(&path, &member).await;
        assert_eq!(status, 404, "{path} deleted");
        let (_, count) = app.get_json(&format!("{list}/count"), &admin).await;
        assert_eq!(count, json!({"count": 1}), "{module}");
    }
    for path in ["/api/v2/opportunities/stats", "/api/v2/dashboard/bundle"] {
        let (status, body) = app.get_json(path, &member).await;
        assert_eq!(status, 200, "member GET {path}: {body}");
    }
    let (_, bundle) = app.get_json("/api/v2/dashboard/bundle", &member).await;
    assert_eq!(bundle["counts"]["accounts"], json!(1));
}

#[tokio::test]
async fn health_probes_and_the_openapi_document_need_no_token() {
    let app = spawn_app().await;
    let (status, live) = into_json(send(&app, Method::GET, "/health/live", None, None).await).await;
    assert_eq!(status, 200);
    assert_eq!(live, json!({"status": "ok"}));

    let (status, ready) =
        into_json(send(&app, Method::GET, "/health/ready", None, None).await).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["database"], "up");

    let (status, document) =
        into_json(send(&app, Method::GET, "/api/v2/openapi.json", None, None).await).await;
    assert_eq!(status, 200);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        document["openapi"]
    );
    assert!(document["paths"].is_object());
}
