//! HTTP and JWT as their RFCs say (RFC 9110, 7235, 7515, 7519), and canonical inputs: the
//! issue "One tenant cannot hurt another, and HTTP and JWT behave as their RFCs say".

use aishacrm::auth::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::AUTHORIZATION;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::{claims, now};
use crate::helpers::{assert_error, header, minimal, spawn_app, spawn_app_with, TestApp};

fn sign_with(app: &TestApp, header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(
        header,
        claims,
        &EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .expect("signing a token")
}

fn sign(app: &TestApp, claims: &Value) -> String {
    sign_with(app, &Header::new(Algorithm::HS256), claims)
}

/// The status of `GET /api/v2/accounts/count` with `Authorization: <value>` headers.
async fn status_with(app: &TestApp, authorizations: &[&str]) -> u16 {
    let mut request = app
        .client
        .get(format!("{}/api/v2/accounts/count", app.address));
    for value in authorizations {
        request = request.header(AUTHORIZATION, *value);
    }
    request.send().await.expect("sending").status().as_u16()
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} {token}");
        assert_eq!(status_with(&app, &[&value]).await, 200, "{scheme}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_unauthorized() {
    let app = spawn_app().await;
    let (mine, other) = (app.token(Uuid::new_v4()), app.token(Uuid::new_v4()));
    let (mine, other) = (format!("Bearer {mine}"), format!("Bearer {other}"));
    assert_eq!(status_with(&app, &[&mine]).await, 200, "the control");
    assert_eq!(status_with(&app, &[&mine, &mine]).await, 401);
    assert_eq!(status_with(&app, &[&mine, &other]).await, 401);
    assert_eq!(status_with(&app, &[&mine, "Basic eDp5"]).await, 401);
}

#[tokio::test]
async fn nbf_is_honoured_without_leeway_and_a_malformed_one_refused() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let with_nbf = |nbf: Value| {
        let mut claims = claims(tenant);
        claims["nbf"] = nbf;
        format!("Bearer {}", sign(&app, &claims))
    };
    assert_eq!(
        status_with(&app, &[&with_nbf(json!(now() - 10))]).await,
        200
    );
    assert_eq!(
        status_with(&app, &[&with_nbf(json!(now() + 60))]).await,
        401
    );
    for malformed in [json!("x"), json!("123"), json!(null), json!([1])] {
        assert_eq!(
            status_with(&app, &[&with_nbf(malformed.clone())]).await,
            401,
            "nbf {malformed}"
        );
    }
}

#[tokio::test]
async fn a_critical_header_parameter_is_refused() {
    let app = spawn_app().await;
    let claims = claims(Uuid::new_v4());
    let mut header = Header::new(Algorithm::HS256);
    assert_eq!(
        status_with(
            &app,
            &[&format!("Bearer {}", sign_with(&app, &header, &claims))]
        )
        .await,
        200,
        "the control"
    );
    for crit in [vec!["exp".to_owned()], vec!["b64".to_owned()], vec![]] {
        header.crit = Some(crit.clone());
        let token = sign_with(&app, &header, &claims);
        assert_eq!(
            status_with(&app, &[&format!("Bearer {token}")]).await,
            401,
            "crit {crit:?}"
        );
    }
}

#[tokio::test]
async fn aud_and_iss_are_checked_only_when_configured() {
    let tenant = Uuid::new_v4();
    let with = |extra: Value| {
        let mut claims = claims(tenant);
        for (name, value) in extra.as_object().expect("an object") {
            claims[name] = value.clone();
        }
        claims
    };
    // Unset: tokens of any identity provider, whatever their aud and iss.
    let open = spawn_app().await;
    for extra in [
        json!({}),
        json!({"aud": "someone-else"}),
        json!({"aud": ["a", "b"], "iss": "https://idp.example"}),
    ] {
        let token = sign(&open, &with(extra.clone()));
        assert_eq!(
            status_with(&open, &[&format!("Bearer {token}")]).await,
            200,
            "{extra}"
        );
    }
    // Set: exactly the configured ones.
    let strict = spawn_app_with(|config| {
        config.jwt_audience = Some("crm-api".into());
        config.jwt_issuer = Some("https://idp.example".into());
    })
    .await;
    let cases = [
        (json!({"aud": "crm-api", "iss": "https://idp.example"}), 200),
        (
            json!({"aud": ["other", "crm-api"], "iss": "https://idp.example"}),
            200,
        ),
        (json!({"iss": "https://idp.example"}), 401),
        (json!({"aud": "crm-api"}), 401),
        (json!({"aud": "other", "iss": "https://idp.example"}), 401),
        (
            json!({"aud": "crm-api", "iss": "https://evil.example"}),
            401,
        ),
    ];
    for (extra, expected) in cases {
        let token = sign(&strict, &with(extra.clone()));
        assert_eq!(
            status_with(&strict, &[&format!("Bearer {token}")]).await,
            expected,
            "{extra}"
        );
    }
    // `aishacrm token` mints tokens the configured service accepts.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args(["token", "--tenant", &tenant.to_string()])
        .env("JWT_SECRET", &strict.secret)
        .env("JWT_AUDIENCE", "crm-api")
        .env("JWT_ISSUER", "https://idp.example")
        .output()
        .expect("running aishacrm token");
    assert!(output.status.success(), "{output:?}");
    let minted = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(
        status_with(&strict, &[&format!("Bearer {minted}")]).await,
        200
    );
}

#[tokio::test]
async fn if_none_match_uses_the_weak_comparison() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let path = "/api/v2/accounts/count";
    let etag = header(&app.get(path, &token).await, "etag");
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    for candidate in [
        format!("W/{etag}"),
        format!("\"x\", W/{etag}"),
        etag.clone(),
    ] {
        let response = app
            .get_with(path, &token, &[("If-None-Match", &candidate)])
            .await;
        assert_eq!(
            response.status().as_u16(),
            304,
            "If-None-Match: {candidate}"
        );
    }
    let response = app
        .get_with(path, &token, &[("If-None-Match", "W/\"other\"")])
        .await;
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn head_works_on_every_get_route_with_the_gets_headers_and_no_body() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = app.create("accounts", &token, minimal("accounts")).await;
    let record = format!(
        "/api/v2/accounts/{}",
        account["id"].as_str().expect("an id")
    );
    // (path, whether it is a cached route)
    let routes = [
        ("/health/live", false),
        ("/health/ready", false),
        ("/metrics", false),
        ("/api/v2/openapi.json", false),
        ("/api/v2/cache/stats", false),
        (record.as_str(), false),
        ("/api/v2/accounts", true),
        ("/api/v2/accounts/count", true),
        ("/api/v2/opportunities/stats", true),
        ("/api/v2/dashboard/bundle", true),
    ];
    for (path, cached) in routes {
        let get = app.get(path, &token).await;
        let (get_status, get_type, get_etag) = (
            get.status().as_u16(),
            header(&get, "content-type"),
            header(&get, "etag"),
        );
        let get_length = get.bytes().await.expect("the GET body").len();
        let head = app.request(Method::HEAD, path, Some(&token), None).await;
        assert_eq!(head.status().as_u16(), get_status, "HEAD {path}");
        assert_eq!(header(&head, "content-type"), get_type, "HEAD {path}");
        if cached {
            // Served from the cache like the GET, with the GET's validator and length.
            assert_eq!(header(&head, "x-cache"), "HIT", "HEAD {path}");
            assert_eq!(header(&head, "etag"), get_etag, "HEAD {path}");
            assert_eq!(
                header(&head, "content-length"),
                get_length.to_string(),
                "HEAD {path}"
            );
        }
        assert!(
            head.bytes().await.expect("the HEAD body").is_empty(),
            "HEAD {path} sent a body"
        );
    }
    // Not where GET is not.
    let head = app
        .request(Method::HEAD, "/api/v2/cache/warm", Some(&token), None)
        .await;
    assert_eq!(head.status().as_u16(), 405);
}

#[tokio::test]
async fn a_member_is_refused_on_admin_routes_before_its_body_is_read() {
    let app = spawn_app().await;
    let member = app.token_as(Uuid::new_v4(), Role::Member);
    let url = format!("{}/api/v2/cache/invalidate", app.address);
    let attempts = [
        app.client.post(&url).bearer_auth(&member),
        app.client
            .post(&url)
            .bearer_auth(&member)
            .header("Content-Type", "text/plain")
            .body("module=all"),
        app.client
            .post(&url)
            .bearer_auth(&member)
            .header("Content-Type", "application/json")
            .body("{not json"),
        app.client
            .post(&url)
            .bearer_auth(&member)
            .json(&json!({"module": "all"})),
    ];
    for attempt in attempts {
        let response = attempt.send().await.expect("sending");
        assert_error(response, 403, "forbidden").await;
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_query_value_is_an_invalid_query() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for path in [
        "/api/v2/accounts?q=%FF",
        "/api/v2/accounts/count?q=caf%C3",
        "/api/v2/leads?source=%80abc",
        "/api/v2/contacts?%FF=1",
    ] {
        assert_error(app.get(path, &token).await, 400, "invalid_query").await;
    }
    // Valid escapes still decode.
    let (status, _) = app
        .get_json("/api/v2/accounts?q=caf%C3%A9+bar", &token)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn every_spelling_of_a_uuid_filter_shares_one_entry() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let account = app.create("accounts", &token, minimal("accounts")).await;
    let id = account["id"].as_str().expect("an id").to_owned();
    app.create(
        "opportunities",
        &token,
        json!({"name": "Deal", "account_id": id}),
    )
    .await;
    let spellings = [
        id.clone(),
        id.to_uppercase(),
        id.replace('-', ""),
        format!("{{{id}}}"),
    ];
    for (at, spelling) in spellings.iter().enumerate() {
        for path in [
            format!("/api/v2/opportunities?account_id={spelling}"),
            format!("/api/v2/opportunities/count?account_id={spelling}"),
            format!("/api/v2/opportunities/stats?account_id={spelling}"),
        ] {
            let (cache, _, body) = app.get_cached(&path, &token).await;
            let expected = if at == 0 { "MISS" } else { "HIT" };
            assert_eq!(cache, expected, "{path}: {body}");
        }
    }
}
