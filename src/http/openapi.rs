//! `GET /api/v2/openapi.json`: the OpenAPI 3 document, built from the same entity rules that
//! validate requests, so the two cannot drift apart.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::only;
use crate::domain::entities::{EntitySpec, FilterKind, ALL, STAGES};
use crate::domain::fields::{DefaultValue, FieldKind, FieldSpec, Presence};
use crate::domain::query::{DEFAULT_LIMIT, MAX_LIMIT, Q_MAX};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v2/openapi.json")
            .route(web::get().to(serve))
            .default_service(only("GET")),
    );
}

async fn serve() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| document().to_string());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.as_str())
}

/// Text fields may hold anything PostgreSQL can store: no NUL.
const NO_NUL: &str = "^[^\\u0000]*$";
const NOT_BLANK: &str = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$";
const EMAIL: &str = "^[^\\u0000]*@[^\\u0000]*$";

fn error_codes() -> Value {
    json!([
        "invalid_json",
        "validation_failed",
        "invalid_query",
        "unauthorized",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "invalid_reference",
        "too_many_requests",
        "database_unavailable",
        "internal"
    ])
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn field_schema(field: &FieldSpec) -> Value {
    let mut schema = match field.kind {
        FieldKind::Text { min: 0, max } => {
            json!({"type": "string", "maxLength": max, "pattern": NO_NUL})
        }
        // A required name needs one character that is not white space.
        FieldKind::Text { min, max } => {
            json!({"type": "string", "minLength": min, "maxLength": max, "pattern": NOT_BLANK})
        }
        FieldKind::Email { max } => {
            json!({"type": "string", "maxLength": max, "pattern": EMAIL})
        }
        FieldKind::Enum(values) => json!({"type": "string", "enum": values}),
        FieldKind::Integer { min, max } => {
            json!({"type": "integer", "minimum": min, "maximum": max})
        }
        FieldKind::Money { max } => {
            json!({"type": "number", "minimum": 0, "maximum": max, "multipleOf": 0.01})
        }
        FieldKind::Uuid => json!({"type": "string", "format": "uuid"}),
        FieldKind::Date => json!({"type": "string", "format": "date"}),
        FieldKind::Timestamp => json!({"type": "string", "format": "date-time"}),
    };
    match field.presence {
        Presence::Nullable => {
            schema["nullable"] = json!(true);
        }
        Presence::Defaulted(DefaultValue::Text(text)) => schema["default"] = json!(text),
        Presence::Defaulted(DefaultValue::Number(number)) => schema["default"] = json!(number),
        Presence::Required => {}
    }
    schema
}

fn record_schema(spec: &EntitySpec) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "id".into(),
        json!({"type": "string", "format": "uuid", "readOnly": true}),
    );
    properties.insert(
        "tenant_id".into(),
        json!({"type": "string", "format": "uuid", "readOnly": true}),
    );
    let mut required: Vec<&str> = vec!["id", "tenant_id"];
    for field in spec.fields {
        let mut schema = field_schema(field);
        if let Some(object) = schema.as_object_mut() {
            object.remove("default");
        }
        properties.insert(field.name.into(), schema);
        required.push(field.name);
    }
    for stamp in ["created_at", "updated_at"] {
        properties.insert(
            stamp.into(),
            json!({"type": "string", "format": "date-time", "readOnly": true}),
        );
        required.push(stamp);
    }
    json!({"type": "object", "properties": properties, "required": required})
}

fn write_schema(spec: &EntitySpec, create: bool) -> Value {
    let properties: Map<String, Value> = spec
        .fields
        .iter()
        .map(|field| (field.name.to_owned(), field_schema(field)))
        .collect();
    let mut schema =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if create {
        let required: Vec<&str> = spec
            .fields
            .iter()
            .filter(|field| matches!(field.presence, Presence::Required))
            .map(|field| field.name)
            .collect();
        schema["required"] = json!(required);
    }
    schema
}

fn query_parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn filter_parameters(spec: &EntitySpec) -> Vec<Value> {
    let mut parameters = vec![query_parameter(
        "q",
        &format!("case-insensitive substring of {}", spec.search.join(", ")),
        json!({"type": "string", "maxLength": Q_MAX}),
    )];
    for filter in spec.filters {
        let schema = match filter.kind {
            FilterKind::Text { max } => json!({"type": "string", "minLength": 1, "maxLength": max}),
            FilterKind::Enum(values) => json!({"type": "string", "enum": values}),
            FilterKind::Uuid => json!({"type": "string", "format": "uuid"}),
        };
        parameters.push(query_parameter(filter.name, "equality filter", schema));
    }
    parameters
}

/// What every cached route adds to its 200 answer, and its 304.
fn cached(responses: &mut Value) {
    responses["200"]["headers"] = json!({
        "X-Cache": {"description": "HIT, MISS, BYPASS or STALE", "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS", "STALE"]}},
        "X-Cache-Tier": {"description": "L1 or L2, on hits", "schema": {"type": "string", "enum": ["L1", "L2"]}},
        "ETag": {"description": "strong ETag of the body", "schema": {"type": "string"}}
    });
    responses["304"] = json!({"description": "If-None-Match matched the current ETag"});
}

fn common_errors(responses: &mut Value) {
    responses["400"] = error_response("invalid input");
    responses["401"] = error_response("missing or invalid bearer token");
    responses["429"] = error_response(
        "this tenant already holds its share of the database pool or of background work; see Retry-After",
    );
    responses["503"] = error_response("database unavailable");
}

fn entity_paths(spec: &EntitySpec, paths: &mut Map<String, Value>) {
    let module = spec.module.name();
    let schema = spec.schema;
    let mut list_parameters = vec![
        query_parameter(
            "limit",
            "page size",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
        ),
        query_parameter(
            "cursor",
            "next_cursor of the page before",
            json!({"type": "string"}),
        ),
    ];
    list_parameters.extend(filter_parameters(spec));

    let mut list_responses = json!({"200": json_response(
        "one page, newest first",
        json!({"type": "object", "required": ["data", "next_cursor"], "properties": {
            "data": {"type": "array", "items": schema_ref(schema)},
            "next_cursor": {"type": "string", "nullable": true}
        }}),
    )});
    common_errors(&mut list_responses);
    cached(&mut list_responses);
    let mut create_responses = json!({
        "201": json_response("created", schema_ref(schema)),
        "413": error_response("body too large"),
        "415": error_response("body is not application/json"),
        "422": error_response("a reference names no record of this tenant"),
    });
    common_errors(&mut create_responses);
    let request_body = |create: bool| {
        json!({"required": true, "content": {"application/json": {"schema": schema_ref(
            &format!("{schema}{}", if create { "Create" } else { "Update" })
        )}}})
    };
    paths.insert(
        format!("/api/v2/{module}"),
        json!({
            "get": {"operationId": format!("list_{module}"), "tags": [module], "parameters": list_parameters, "responses": list_responses},
            "post": {"operationId": format!("create_{module}"), "tags": [module], "requestBody": request_body(true), "responses": create_responses},
        }),
    );

    let mut count_responses = json!({"200": json_response(
        "number of matching records",
        json!({"type": "object", "required": ["count"], "properties": {"count": {"type": "integer", "minimum": 0}}}),
    )});
    common_errors(&mut count_responses);
    cached(&mut count_responses);
    paths.insert(
        format!("/api/v2/{module}/count"),
        json!({"get": {"operationId": format!("count_{module}"), "tags": [module], "parameters": filter_parameters(spec), "responses": count_responses}}),
    );

    let id_parameter = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]);
    let mut read_responses = json!({
        "200": json_response("the record", schema_ref(schema)),
        "404": error_response("no such record for this tenant"),
    });
    common_errors(&mut read_responses);
    let mut update_responses = read_responses.clone();
    update_responses["413"] = error_response("body too large");
    update_responses["415"] = error_response("body is not application/json");
    update_responses["422"] = error_response("a reference names no record of this tenant");
    let mut delete_responses = json!({
        "204": {"description": "deleted"},
        "404": error_response("no such record for this tenant"),
    });
    common_errors(&mut delete_responses);
    let update = |verb: &str| json!({"operationId": format!("{verb}_{module}"), "tags": [module], "requestBody": request_body(false), "responses": update_responses});
    paths.insert(
        format!("/api/v2/{module}/{{id}}"),
        json!({
            "parameters": id_parameter,
            "get": {"operationId": format!("get_{module}"), "tags": [module], "responses": read_responses},
            "put": update("replace"),
            "patch": update("update"),
            "delete": {"operationId": format!("delete_{module}"), "tags": [module], "responses": delete_responses},
        }),
    );
}

fn stage_stat_schema() -> Value {
    json!({"type": "object", "required": ["stage", "count", "amount"], "properties": {
        "stage": {"type": "string", "enum": STAGES},
        "count": {"type": "integer", "minimum": 0},
        "amount": {"type": "number", "minimum": 0}
    }})
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "enum": error_codes()}, "message": {"type": "string"}}
        }}}),
    );
    schemas.insert("StageStat".into(), stage_stat_schema());
    for spec in ALL {
        schemas.insert(spec.schema.into(), record_schema(spec));
        schemas.insert(format!("{}Create", spec.schema), write_schema(spec, true));
        schemas.insert(format!("{}Update", spec.schema), write_schema(spec, false));
        entity_paths(spec, &mut paths);
    }

    let mut stats_responses = json!({"200": json_response("count and amount per stage", json!({
        "type": "object", "required": ["stages", "total"], "properties": {
            "stages": {"type": "array", "items": schema_ref("StageStat"), "minItems": 6, "maxItems": 6},
            "total": {"type": "object", "required": ["count", "amount"], "properties": {
                "count": {"type": "integer", "minimum": 0}, "amount": {"type": "number", "minimum": 0}
            }}
        }
    }))});
    common_errors(&mut stats_responses);
    cached(&mut stats_responses);
    paths.insert(
        "/api/v2/opportunities/stats".into(),
        json!({"get": {"operationId": "opportunity_stats", "tags": ["opportunities"],
            "parameters": [query_parameter("account_id", "only this account's opportunities", json!({"type": "string", "format": "uuid"}))],
            "responses": stats_responses}}),
    );

    let per_entity = |item: Value| {
        let properties: Map<String, Value> = ALL
            .iter()
            .map(|spec| (spec.module.name().to_owned(), item.clone()))
            .collect();
        let required: Vec<&str> = ALL.iter().map(|spec| spec.module.name()).collect();
        json!({"type": "object", "required": required, "properties": properties})
    };
    let recent_properties: Map<String, Value> = ALL
        .iter()
        .map(|spec| {
            (
                spec.module.name().to_owned(),
                json!({"type": "array", "maxItems": 5, "items": schema_ref(spec.schema)}),
            )
        })
        .collect();
    let mut bundle_responses = json!({"200": json_response("the dashboard bundle", json!({
        "type": "object", "required": ["counts", "opportunity_stages", "recent", "generated_at"],
        "properties": {
            "counts": per_entity(json!({"type": "integer", "minimum": 0})),
            "opportunity_stages": {"type": "array", "items": schema_ref("StageStat")},
            "recent": {"type": "object", "properties": recent_properties},
            "generated_at": {"type": "string", "format": "date-time"}
        }
    }))});
    common_errors(&mut bundle_responses);
    cached(&mut bundle_responses);
    paths.insert(
        "/api/v2/dashboard/bundle".into(),
        json!({"get": {"operationId": "dashboard_bundle", "tags": ["dashboard"], "responses": bundle_responses}}),
    );

    let mut warm_responses = json!({"202": json_response("warming started", json!({
        "type": "object", "required": ["warming"],
        "properties": {"warming": {"type": "array", "items": {"type": "string"}}}
    }))});
    common_errors(&mut warm_responses);
    paths.insert(
        "/api/v2/cache/warm".into(),
        json!({"post": {"operationId": "cache_warm", "tags": ["cache"], "responses": warm_responses}}),
    );
    let mut invalidate_responses = json!({
        "200": json_response("the modules whose cached answers were dropped", json!({
            "type": "object", "required": ["invalidated"],
            "properties": {"invalidated": {"type": "array", "items": {"type": "string"}}}
        })),
        "403": error_response("admin only"),
        "413": error_response("body too large"),
        "415": error_response("body is not application/json"),
    });
    common_errors(&mut invalidate_responses);
    let mut modules: Vec<&str> = ALL.iter().map(|spec| spec.module.name()).collect();
    modules.extend(["dashboard", "all"]);
    paths.insert(
        "/api/v2/cache/invalidate".into(),
        json!({"post": {"operationId": "cache_invalidate", "tags": ["cache"],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["module"], "additionalProperties": false,
                "properties": {"module": {"type": "string", "enum": modules}}
            }}}},
            "responses": invalidate_responses}}),
    );
    let mut cache_stats_responses = json!({
        "200": json_response("this instance's cache counters", json!({"type": "object", "required": [
            "enabled", "hits", "misses", "stale", "bypass", "hit_rate", "invalidations", "l1", "redis"
        ]})),
        "403": error_response("admin only"),
    });
    common_errors(&mut cache_stats_responses);
    paths.insert(
        "/api/v2/cache/stats".into(),
        json!({"get": {"operationId": "cache_stats", "tags": ["cache"], "responses": cache_stats_responses}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"operationId": "metrics", "tags": ["meta"], "security": [], "responses": {
            "200": {"description": "Prometheus text exposition (OpenMetrics when Accept asks for it)", "content": {
                "text/plain; version=0.0.4": {"schema": {"type": "string"}},
                "application/openmetrics-text; version=1.0.0": {"schema": {"type": "string"}}
            }}
        }}}),
    );
    paths.insert(
        "/api/v2/openapi.json".into(),
        json!({"get": {"operationId": "openapi", "tags": ["meta"], "security": [],
            "responses": {"200": {"description": "this document", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    paths.insert(
        "/health/live".into(),
        json!({"get": {"operationId": "live", "tags": ["health"], "security": [], "responses": {
            "200": json_response("the process answers", json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}))
        }}}),
    );
    let ready = json!({"type": "object", "required": ["status", "database", "redis"], "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
        "database": {"type": "string", "enum": ["up", "down"]},
        "redis": {"type": "string", "enum": ["up", "down", "disabled"]}
    }});
    paths.insert(
        "/health/ready".into(),
        json!({"get": {"operationId": "ready", "tags": ["health"], "security": [], "responses": {
            "200": json_response("ready (possibly degraded)", ready.clone()),
            "503": json_response("the database is down", ready)
        }}}),
    );

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "AishaCRM API",
            "version": "2",
            "description": "Multi-tenant CRM API. The tenant comes from the bearer token only."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas
        }
    })
}
