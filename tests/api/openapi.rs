//! The OpenAPI document describes every route the service has.

use serde_json::Value;

use crate::helpers::{into_json, spawn_app, MODULES};

#[tokio::test]
async fn openapi_document_lists_every_route_and_needs_no_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/api/v2/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    let (status, document) = into_json(response).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    let mut expected: Vec<(String, &[&str])> = vec![
        ("/api/v2/opportunities/stats".into(), &["get"]),
        ("/api/v2/dashboard/bundle".into(), &["get"]),
        ("/api/v2/openapi.json".into(), &["get"]),
        ("/health/live".into(), &["get"]),
        ("/health/ready".into(), &["get"]),
        ("/api/v2/cache/warm".into(), &["post"]),
        ("/api/v2/cache/invalidate".into(), &["post"]),
        ("/api/v2/cache/stats".into(), &["get"]),
        ("/metrics".into(), &["get"]),
    ];
    for module in MODULES {
        expected.push((format!("/api/v2/{module}"), &["get", "post"]));
        expected.push((format!("/api/v2/{module}/count"), &["get"]));
        expected.push((
            format!("/api/v2/{module}/{{id}}"),
            &["get", "put", "patch", "delete"],
        ));
    }
    for (path, methods) in &expected {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
        for method in *methods {
            assert!(item.get(*method).is_some(), "{method} {path} missing");
        }
    }
    assert_eq!(paths.len(), expected.len(), "no undocumented extras");

    // Every $ref resolves.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let text = document.to_string();
    for piece in text.split("#/components/schemas/").skip(1) {
        let name: String = piece.chars().take_while(|c| *c != '"').collect();
        assert!(schemas.contains_key(&name), "dangling $ref {name}");
    }
    // The create schema of opportunities says what the validator enforces.
    let create: &Value = &schemas["OpportunityCreate"];
    assert_eq!(create["required"], serde_json::json!(["name"]));
    assert_eq!(create["additionalProperties"], false);
    assert_eq!(create["properties"]["probability"]["maximum"], 100);
}
