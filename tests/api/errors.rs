//! The contract's error table: each row that can be produced now, with the exact error body
//! `{"error": {"code", "message"}}` and no internal text in the message.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    into_json, minimal, spawn_app, start, test_config, TestApp, TestDatabase, LEAKS, MODULES,
};

/// Asserts the status, that the body is exactly `{"error": {"code": code, "message": "..."}}`
/// served as JSON, and that the message leaks nothing internal. Returns the message.
pub async fn assert_error_body(response: Response, status: u16, code: &str) -> String {
    let url = response.url().path().to_owned();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (actual, body) = into_json(response).await;
    assert_eq!(
        actual, status,
        "{url}: expected {status} {code}, got {actual} {body}"
    );
    assert!(
        content_type.starts_with("application/json"),
        "{url}: error served as {content_type:?}: {body}"
    );
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{url}: error body is not an object: {body}"));
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["error"],
        "{url}: error body has other keys: {body}"
    );
    let error = object["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{url}: `error` is not an object: {body}"));
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{url}: {body}");
    assert_eq!(error["code"], code, "{url}: wrong code in {body}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{url}: message is not a string: {body}"));
    assert!(!message.trim().is_empty(), "{url}: empty message: {body}");
    let lower = message.to_lowercase();
    for leak in LEAKS {
        assert!(
            !lower.contains(leak),
            "{url}: message leaks internals ({leak:?}): {message:?}"
        );
    }
    message.to_owned()
}

/// A request with full control over Content-Type and the raw body bytes.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    request.send().await.expect("sending the request")
}

/// A request with a JSON content type and `body` as its raw bytes.
async fn send_json_bytes(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: impl Into<Vec<u8>>,
) -> Response {
    send(
        app,
        method,
        path,
        Some(token),
        Some("application/json"),
        Some(body.into()),
    )
    .await
}

async fn count(app: &TestApp, token: &str, module: &str) -> i64 {
    let (status, body) = app
        .get_json(&format!("/api/v2/{module}/count"), token)
        .await;
    assert_eq!(status, 200, "count of {module}: {body}");
    body["count"].as_i64().expect("count")
}

/// One minimal record of each entity: (module, path, record).
async fn one_of_each(app: &TestApp, token: &str) -> Vec<(&'static str, String, Value)> {
    let mut records = Vec::new();
    for module in MODULES {
        let record = app.create(module, token, minimal(module)).await;
        let path = format!("/api/v2/{module}/{}", record["id"].as_str().unwrap());
        records.push((module, path, record));
    }
    records
}

async fn assert_unchanged(app: &TestApp, token: &str, path: &str, before: &Value) {
    let (status, after) = app.get_json(path, token).await;
    assert_eq!(status, 200, "GET {path}: {after}");
    assert_eq!(&after, before, "{path} changed after a refused request");
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_invalid_json() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let records = one_of_each(&app, &token).await;
    let bodies: [&[u8]; 14] = [
        b"not json",
        b"{",
        b"{\"name\": }",
        b"{\"name\": \"Acme\",}",
        b"{'name': 'Acme'}",
        b"[]",
        b"[{\"name\": \"Acme\"}]",
        b"\"Acme\"",
        b"42",
        b"null",
        b"true",
        b"",
        b"{\"name\": \"Acme\"} {\"name\": \"Acme\"}",
        b"{\"name\": \"\xff\xfe\"}",
    ];
    for (module, path, before) in &records {
        let start = count(&app, &token, module).await;
        for body in bodies {
            let response = send_json_bytes(
                &app,
                Method::POST,
                &format!("/api/v2/{module}"),
                &token,
                body,
            )
            .await;
            assert_error_body(response, 400, "invalid_json").await;
        }
        assert_eq!(count(&app, &token, module).await, start, "{module}");
        for method in [Method::PUT, Method::PATCH] {
            for body in [&b"[]"[..], b"not json", b"\"x\"", b"", b"{\"name\""] {
                let response = send_json_bytes(&app, method.clone(), path, &token, body).await;
                assert_error_body(response, 400, "invalid_json").await;
            }
        }
        assert_unchanged(&app, &token, path, before).await;
    }
}

#[tokio::test]
async fn deeply_nested_json_is_invalid_json_and_the_server_survives() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let depth = 10_000;
    let bodies = [
        "[".repeat(depth),
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        format!(
            "{{\"name\": {}\"x\"{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
    ];
    for module in MODULES {
        for body in &bodies {
            let response = send_json_bytes(
                &app,
                Method::POST,
                &format!("/api/v2/{module}"),
                &token,
                body.as_str(),
            )
            .await;
            assert_error_body(response, 400, "invalid_json").await;
        }
        assert_eq!(count(&app, &token, module).await, 0, "{module}");
    }
    // Still serving.
    let (status, _) = into_json(app.request(Method::GET, "/health/live", None, None).await).await;
    assert_eq!(status, 200);
    app.create("accounts", &token, minimal("accounts")).await;
}

#[tokio::test]
async fn unknown_duplicated_and_malformed_query_parameters_are_invalid_query() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4();
    let token = app.token(tenant);
    for module in MODULES {
        let list = format!("/api/v2/{module}");
        let count_path = format!("/api/v2/{module}/count");
        for query in [
            "colour=red".to_owned(),
            format!("tenant_id={tenant}"),
            "limit=0".into(),
            "limit=201".into(),
            "limit=-1".into(),
            "limit=abc".into(),
            "limit=1.5".into(),
            "limit=".into(),
            "limit=99999999999999999999".into(),
            "limit=10&limit=10".into(),
            "limit=10&limit=20".into(),
            "q=a&q=b".into(),
            "cursor=abc".into(),
            "cursor=".into(),
            "offset=10".into(),
            "page=2".into(),
            "sort=name".into(),
        ] {
            assert_error_body(
                app.get(&format!("{list}?{query}"), &token).await,
                400,
                "invalid_query",
            )
            .await;
        }
        // `limit` and `cursor` are unknown on count.
        for query in ["limit=5", "limit=50", "cursor=abc", "colour=red", "q=a&q=a"] {
            assert_error_body(
                app.get(&format!("{count_path}?{query}"), &token).await,
                400,
                "invalid_query",
            )
            .await;
        }
        // Controls: valid parameters are accepted.
        for path in [
            format!("{list}?limit=1"),
            format!("{list}?limit=200"),
            format!("{list}?q=x&limit=5"),
            format!("{count_path}?q=x"),
        ] {
            let (status, body) = app.get_json(&path, &token).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
}

#[tokio::test]
async fn bad_filter_values_are_invalid_query() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let cases = [
        ("contacts", "account_id=1"),
        ("contacts", "account_id=not-a-uuid"),
        ("contacts", "status=archived"),
        ("leads", "status=won"),
        ("opportunities", "stage=won"),
        ("opportunities", "account_id=xyz"),
        ("activities", "type=sms"),
        ("activities", "status=done"),
        ("activities", "related_type=invoice"),
        ("activities", "related_id=12"),
        // A filter of another entity is an unknown parameter here.
        ("accounts", "stage=proposal"),
        ("leads", "industry=energy"),
        ("opportunities", "status=new"),
    ];
    for (module, query) in cases {
        for path in [
            format!("/api/v2/{module}?{query}"),
            format!("/api/v2/{module}/count?{query}"),
        ] {
            assert_error_body(app.get(&path, &token).await, 400, "invalid_query").await;
        }
    }
    for query in ["account_id=nope", "stage=won", "limit=5"] {
        let path = format!("/api/v2/opportunities/stats?{query}");
        assert_error_body(app.get(&path, &token).await, 400, "invalid_query").await;
    }
    assert_error_body(
        app.get("/api/v2/dashboard/bundle?limit=5", &token).await,
        400,
        "invalid_query",
    )
    .await;
    // Controls.
    for path in [
        format!(
            "/api/v2/contacts?status=inactive&account_id={}",
            Uuid::new_v4()
        ),
        "/api/v2/opportunities?stage=closed_won".to_owned(),
        format!(
            "/api/v2/activities/count?related_type=lead&related_id={}",
            Uuid::new_v4()
        ),
        format!("/api/v2/opportunities/stats?account_id={}", Uuid::new_v4()),
        "/api/v2/dashboard/bundle".to_owned(),
    ] {
        let (status, body) = app.get_json(&path, &token).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn cursors_that_were_not_issued_for_this_list_are_invalid_query() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    for _ in 0..3 {
        app.create("accounts", &token, minimal("accounts")).await;
        app.create("contacts", &token, minimal("contacts")).await;
    }
    let (status, page) = app.get_json("/api/v2/accounts?limit=1", &token).await;
    assert_eq!(status, 200);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    // Control: the cursor works where it was issued.
    let (status, next) = app
        .get_json(&format!("/api/v2/accounts?limit=1&cursor={cursor}"), &token)
        .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["data"].as_array().map(Vec::len), Some(1));

    let mut tampered: Vec<char> = cursor.chars().collect();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let other_tenant = app.token(Uuid::new_v4());
    let cases = [
        (format!("/api/v2/contacts?cursor={cursor}"), &token),
        (format!("/api/v2/accounts?cursor={cursor}"), &other_tenant),
        (format!("/api/v2/accounts?cursor={tampered}"), &token),
        (
            format!("/api/v2/accounts?cursor={}", &cursor[..cursor.len() - 2]),
            &token,
        ),
        (format!("/api/v2/accounts/count?cursor={cursor}"), &token),
        (format!("/api/v2/accounts?cursor=%00{cursor}"), &token),
    ];
    for (path, token) in cases {
        assert_error_body(app.get(&path, token).await, 400, "invalid_query").await;
    }
}

#[tokio::test]
async fn unknown_paths_and_non_uuid_ids_are_not_found() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let records = one_of_each(&app, &token).await;
    let id = Uuid::new_v4();
    for path in [
        "/".to_owned(),
        "/nope".to_owned(),
        "/api/v2/widgets".to_owned(),
        format!("/api/v2/widgets/{id}"),
        "/api/v3/accounts".to_owned(),
        "/api/v2".to_owned(),
        format!("/api/v2/accounts/{id}/notes"),
        "/api/v2/accounts/count/extra".to_owned(),
        "/api/v2/dashboard".to_owned(),
    ] {
        assert_error_body(app.get(&path, &token).await, 404, "not_found").await;
    }
    assert_error_body(
        app.post("/api/v2/widgets", &token, &json!({"name": "x"}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error_body(
        app.delete(&format!("/api/v2/widgets/{id}"), &token).await,
        404,
        "not_found",
    )
    .await;

    for (module, path, before) in &records {
        let own_id = before["id"].as_str().unwrap();
        for bad in [
            "123".to_owned(),
            "not-a-uuid".to_owned(),
            format!("{own_id}x"),
            own_id[..35].to_owned(),
        ] {
            let bad_path = format!("/api/v2/{module}/{bad}");
            assert_error_body(app.get(&bad_path, &token).await, 404, "not_found").await;
            assert_error_body(
                app.put(&bad_path, &token, &minimal(module)).await,
                404,
                "not_found",
            )
            .await;
            assert_error_body(
                app.patch(&bad_path, &token, &json!({})).await,
                404,
                "not_found",
            )
            .await;
            assert_error_body(app.delete(&bad_path, &token).await, 404, "not_found").await;
        }
        assert_unchanged(&app, &token, path, before).await;
        assert_eq!(count(&app, &token, module).await, 1);
    }
}

#[tokio::test]
async fn wrong_methods_on_known_api_paths_are_method_not_allowed() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let records = one_of_each(&app, &token).await;
    let body = json!({"name": "x"});
    for (module, path, before) in &records {
        let list = format!("/api/v2/{module}");
        let count_path = format!("/api/v2/{module}/count");
        let cases = [
            (Method::DELETE, list.clone(), None, "GET, POST"),
            (Method::PUT, list.clone(), Some(&body), "GET, POST"),
            (Method::PATCH, list.clone(), Some(&body), "GET, POST"),
            (Method::POST, count_path.clone(), Some(&body), "GET"),
            (Method::PUT, count_path.clone(), Some(&body), "GET"),
            (Method::DELETE, count_path.clone(), None, "GET"),
            (
                Method::POST,
                path.clone(),
                Some(&body),
                "GET, PUT, PATCH, DELETE",
            ),
        ];
        for (method, path, body, allow) in cases {
            let response = app.request(method.clone(), &path, Some(&token), body).await;
            let allowed = response
                .headers()
                .get("allow")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            assert_eq!(allowed.as_deref(), Some(allow), "Allow of {method} {path}");
            assert_error_body(response, 405, "method_not_allowed").await;
        }
        assert_unchanged(&app, &token, path, before).await;
        assert_eq!(count(&app, &token, module).await, 1, "{module}");
    }
    for (method, path) in [
        (Method::POST, "/api/v2/opportunities/stats"),
        (Method::DELETE, "/api/v2/opportunities/stats"),
        (Method::POST, "/api/v2/dashboard/bundle"),
        (Method::PUT, "/api/v2/dashboard/bundle"),
    ] {
        let response = app.request(method, path, Some(&token), Some(&body)).await;
        assert_error_body(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn wrong_methods_on_public_paths_are_method_not_allowed() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    // Each path is tried before any assertion, so that a failure lists every wrong answer.
    let mut answers = Vec::new();
    for (method, path) in [
        (Method::POST, "/health/live"),
        (Method::DELETE, "/health/ready"),
        (Method::POST, "/api/v2/openapi.json"),
        (Method::PUT, "/api/v2/openapi.json"),
    ] {
        let response = app
            .request(method.clone(), path, Some(&token), Some(&json!({})))
            .await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        answers.push((format!("{method} {path}"), status, body));
    }
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, status, body)| {
            let json: Value = serde_json::from_str(body).unwrap_or_default();
            *status != 405 || json["error"]["code"] != "method_not_allowed"
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "expected 405 method_not_allowed, got: {wrong:?}"
    );
    // The body shape, as for every other error.
    let response = app
        .request(Method::POST, "/health/live", Some(&token), Some(&json!({})))
        .await;
    assert_error_body(response, 405, "method_not_allowed").await;
}

/// A JSON object of exactly `len` bytes: `{"name":"aaa…"}`.
fn object_of_len(len: usize) -> Vec<u8> {
    let frame = "{\"name\":\"\"}".len();
    format!("{{\"name\":\"{}\"}}", "a".repeat(len - frame)).into_bytes()
}

#[tokio::test]
async fn bodies_over_256_kib_are_payload_too_large() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let records = one_of_each(&app, &token).await;
    let limit = 256 * 1024;
    assert_eq!(object_of_len(limit).len(), limit);
    for (module, path, before) in &records {
        let list = format!("/api/v2/{module}");
        for len in [limit + 1, limit + 4096, 4 * limit] {
            let response =
                send_json_bytes(&app, Method::POST, &list, &token, object_of_len(len)).await;
            assert_error_body(response, 413, "payload_too_large").await;
            for method in [Method::PUT, Method::PATCH] {
                let response =
                    send_json_bytes(&app, method, path, &token, object_of_len(len)).await;
                assert_error_body(response, 413, "payload_too_large").await;
            }
        }
        // A body of exactly 256 KiB is read; this one then fails validation instead
        // (`name` is too long on accounts and opportunities, unknown elsewhere).
        let response =
            send_json_bytes(&app, Method::POST, &list, &token, object_of_len(limit)).await;
        assert_error_body(response, 400, "validation_failed").await;
        assert_eq!(count(&app, &token, module).await, 1, "{module}");
        assert_unchanged(&app, &token, path, before).await;
    }
    // A large body under the limit that is valid is accepted.
    let body = json!({"type": "note", "subject": "Long", "body": "b".repeat(10_000)});
    app.create("activities", &token, body).await;
}

#[tokio::test]
async fn bodies_without_a_json_content_type_are_unsupported_media_type() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    let records = one_of_each(&app, &token).await;
    let refused = [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        Some("application/javascript"),
        Some("multipart/form-data; boundary=x"),
    ];
    for (module, path, before) in &records {
        let list = format!("/api/v2/{module}");
        let body = serde_json::to_vec(&minimal(module)).unwrap();
        for content_type in refused {
            let response = send(
                &app,
                Method::POST,
                &list,
                Some(&token),
                content_type,
                Some(body.clone()),
            )
            .await;
            assert_error_body(response, 415, "unsupported_media_type").await;
            for method in [Method::PUT, Method::PATCH] {
                let response = send(
                    &app,
                    method,
                    path,
                    Some(&token),
                    content_type,
                    Some(body.clone()),
                )
                .await;
                assert_error_body(response, 415, "unsupported_media_type").await;
            }
        }
        // Not JSON and not declared as JSON: the media type is what is wrong.
        let response = send(
            &app,
            Method::POST,
            &list,
            Some(&token),
            Some("text/plain"),
            Some(b"hello".to_vec()),
        )
        .await;
        assert_error_body(response, 415, "unsupported_media_type").await;
        assert_eq!(count(&app, &token, module).await, 1, "{module}");
        assert_unchanged(&app, &token, path, before).await;

        // Parameters on application/json are fine.
        for content_type in [
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "APPLICATION/JSON",
        ] {
            let response = send(
                &app,
                Method::POST,
                &list,
                Some(&token),
                Some(content_type),
                Some(body.clone()),
            )
            .await;
            let (status, created) = into_json(response).await;
            assert_eq!(status, 201, "{module} with {content_type}: {created}");
        }
        let response = send(
            &app,
            Method::PATCH,
            path,
            Some(&token),
            Some("application/json; charset=utf-8"),
            Some(b"{}".to_vec()),
        )
        .await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "{module} PATCH with charset"
        );
        assert_eq!(count(&app, &token, module).await, 4, "{module}");
    }
}

#[tokio::test]
async fn unauthorized_validation_and_invalid_reference_answers_have_the_error_shape() {
    let app = spawn_app().await;
    let token = app.token(Uuid::new_v4());
    assert_error_body(
        app.request(Method::GET, "/api/v2/accounts", None, None)
            .await,
        401,
        "unauthorized",
    )
    .await;
    assert_error_body(
        app.request(Method::GET, "/api/v2/accounts", Some("nonsense"), None)
            .await,
        401,
        "unauthorized",
    )
    .await;
    let message = assert_error_body(
        app.post("/api/v2/accounts", &token, &json!({"name": ""}))
            .await,
        400,
        "validation_failed",
    )
    .await;
    assert!(message.contains("name"), "{message}");
    // Foreign keys refused by the database must not leak constraint names or SQL.
    let missing = Uuid::new_v4();
    let message = assert_error_body(
        app.post(
            "/api/v2/contacts",
            &token,
            &json!({"last_name": "Khan", "account_id": missing}),
        )
        .await,
        422,
        "invalid_reference",
    )
    .await;
    assert!(message.contains("account_id"), "{message}");
    let message = assert_error_body(
        app.post(
            "/api/v2/opportunities",
            &token,
            &json!({"name": "Deal", "contact_id": missing}),
        )
        .await,
        422,
        "invalid_reference",
    )
    .await;
    assert!(message.contains("contact_id"), "{message}");
    let message = assert_error_body(
        app.post(
            "/api/v2/activities",
            &token,
            &json!({"type": "call", "subject": "x", "related_type": "lead", "related_id": missing}),
        )
        .await,
        422,
        "invalid_reference",
    )
    .await;
    assert!(message.contains("related_id"), "{message}");
}

/// Sends a request and fails unless it is answered within `limit`.
async fn answered_within(
    limit: Duration,
    what: &str,
    request: impl std::future::Future<Output = Response>,
) -> Response {
    let started = Instant::now();
    let response = tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {limit:?}"));
    assert!(started.elapsed() <= limit, "{what}");
    response
}

#[tokio::test]
async fn an_unreachable_database_answers_503_quickly_for_reads_and_writes() {
    let database = TestDatabase::create().await;
    let mut config = test_config(&database.url);
    config.database_url = "postgres://postgres@127.0.0.1:1/x".into();
    config.db_acquire_timeout_ms = 500;
    let app = start(config, database).await;
    let token = app.token(Uuid::new_v4());
    let limit = Duration::from_secs(5);
    let id = Uuid::new_v4();

    for module in MODULES {
        let list = format!("/api/v2/{module}");
        let record = format!("/api/v2/{module}/{id}");
        let reads = [
            list.clone(),
            format!("{list}?limit=5"),
            format!("{list}/count"),
            record.clone(),
        ];
        for path in reads {
            let what = format!("GET {path}");
            let response = answered_within(limit, &what, app.get(&path, &token)).await;
            assert_error_body(response, 503, "database_unavailable").await;
        }
        let body = minimal(module);
        let writes = [
            (Method::POST, list.clone()),
            (Method::PUT, record.clone()),
            (Method::PATCH, record.clone()),
            (Method::DELETE, record.clone()),
        ];
        for (method, path) in writes {
            let what = format!("{method} {path}");
            let body = (method != Method::DELETE).then_some(&body);
            let response =
                answered_within(limit, &what, app.request(method, &path, Some(&token), body)).await;
            assert_error_body(response, 503, "database_unavailable").await;
        }
    }
    for path in ["/api/v2/opportunities/stats", "/api/v2/dashboard/bundle"] {
        let response = answered_within(limit, path, app.get(path, &token)).await;
        assert_error_body(response, 503, "database_unavailable").await;
    }

    // More concurrent requests than the pool has connections: every one still answers 503 soon.
    let started = Instant::now();
    let requests = (0..12).map(|i| {
        let path = format!("/api/v2/{}", MODULES[i % MODULES.len()]);
        let app = &app;
        let token = &token;
        async move { app.get(&path, token).await }
    });
    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(requests),
    )
    .await
    .expect("concurrent requests answered within 10 s");
    for response in responses {
        assert_error_body(response, 503, "database_unavailable").await;
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
