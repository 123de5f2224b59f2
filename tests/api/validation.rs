//! Every validation rule of every entity: a refused write answers `400 validation_failed` naming
//! the field (or `422 invalid_reference` for a reference to no record of the tenant), and changes
//! nothing: a refused create adds no record, a refused update leaves the record as it was.

use std::collections::HashMap;

use reqwest::{Method, Response};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::helpers::{into_json, minimal, spawn_app, TestApp, MODULES};

const READ_ONLY: [&str; 4] = ["id", "tenant_id", "created_at", "updated_at"];

/// A body cut short for assertion messages (some test bodies are 10 000 characters long).
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

/// `{field: value}`.
fn obj(field: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(field.to_owned(), value);
    Value::Object(map)
}

/// The minimal valid create body of `module` with `fragment`'s fields added or replaced.
fn merged(module: &str, fragment: &Value) -> Value {
    let mut body = minimal(module);
    let target = body.as_object_mut().expect("minimal body is an object");
    for (key, value) in fragment.as_object().expect("fragment is an object") {
        target.insert(key.clone(), value.clone());
    }
    body
}

/// Asserts status and code, and that the message names `field`.
async fn assert_refused(response: Response, status: u16, code: &str, field: &str, context: &str) {
    let (actual, body) = into_json(response).await;
    assert_eq!(
        actual, status,
        "{context}: expected {status} {code}, got {actual} {body}"
    );
    assert_eq!(body["error"]["code"], code, "{context}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(field),
        "{context}: message {message:?} does not name `{field}`"
    );
}

/// An app, a tenant, and one minimal record of each entity to update.
struct Ctx {
    app: TestApp,
    tenant: Uuid,
    token: String,
    /// module → path of its record.
    records: HashMap<&'static str, String>,
    /// module → id of its record.
    ids: HashMap<&'static str, String>,
}

impl Ctx {
    async fn new() -> Self {
        let app = spawn_app().await;
        let tenant = Uuid::new_v4();
        let token = app.token(tenant);
        let mut records = HashMap::new();
        let mut ids = HashMap::new();
        for module in MODULES {
            let created = app.create(module, &token, minimal(module)).await;
            let id = created["id"].as_str().expect("id").to_owned();
            records.insert(module, format!("/api/v2/{module}/{id}"));
            ids.insert(module, id);
        }
        Ctx {
            app,
            tenant,
            token,
            records,
            ids,
        }
    }

    fn path(&self, module: &str) -> &str {
        &self.records[module]
    }

    fn id(&self, module: &str) -> &str {
        &self.ids[module]
    }

    async fn count(&self, module: &str) -> i64 {
        let (status, body) = self
            .app
            .get_json(&format!("/api/v2/{module}/count"), &self.token)
            .await;
        assert_eq!(status, 200, "count of {module}: {body}");
        body["count"].as_i64().expect("count is an integer")
    }

    async fn record(&self, module: &str) -> Value {
        let (status, body) = self.app.get_json(self.path(module), &self.token).await;
        assert_eq!(status, 200, "GET {}: {body}", self.path(module));
        body
    }

    async fn refuses_create(
        &self,
        module: &str,
        body: &Value,
        status: u16,
        code: &str,
        field: &str,
    ) {
        let before = self.count(module).await;
        let response = self
            .app
            .post(&format!("/api/v2/{module}"), &self.token, body)
            .await;
        let context = format!("POST /api/v2/{module} {}", short(body));
        assert_refused(response, status, code, field, &context).await;
        assert_eq!(
            self.count(module).await,
            before,
            "{context} was refused but wrote a record"
        );
    }

    async fn refuses_update(
        &self,
        module: &str,
        body: &Value,
        status: u16,
        code: &str,
        field: &str,
    ) {
        let path = self.path(module);
        let before = self.record(module).await;
        for method in [Method::PUT, Method::PATCH] {
            let response = self
                .app
                .request(method.clone(), path, Some(&self.token), Some(body))
                .await;
            let context = format!("{method} {path} {}", short(body));
            assert_refused(response, status, code, field, &context).await;
            assert_eq!(
                self.record(module).await,
                before,
                "{context} was refused but changed the record"
            );
        }
    }

    async fn rejects_create(&self, module: &str, body: &Value, field: &str) {
        self.refuses_create(module, body, 400, "validation_failed", field)
            .await;
    }

    async fn rejects_update(&self, module: &str, body: &Value, field: &str) {
        self.refuses_update(module, body, 400, "validation_failed", field)
            .await;
    }

    /// `fragment` is refused on top of a minimal create body, and as an update by itself.
    async fn rejects(&self, module: &str, fragment: &Value, field: &str) {
        self.rejects_create(module, &merged(module, fragment), field)
            .await;
        self.rejects_update(module, fragment, field).await;
    }

    /// Creates `minimal + fragment` and returns the record.
    async fn accepts(&self, module: &str, fragment: &Value) -> Value {
        self.app
            .create(module, &self.token, merged(module, fragment))
            .await
    }

    /// PATCHes the module's record with `body`, which must succeed; returns the record.
    async fn accepts_update(&self, module: &str, body: &Value) -> Value {
        let (status, record) =
            into_json(self.app.patch(self.path(module), &self.token, body).await).await;
        assert_eq!(
            status,
            200,
            "PATCH {} {}: {record}",
            self.path(module),
            short(body)
        );
        record
    }
}

#[tokio::test]
async fn missing_required_fields_are_refused_on_create() {
    let ctx = Ctx::new().await;
    let cases = [
        ("accounts", json!({}), "name"),
        (
            "accounts",
            json!({"industry": "energy", "employee_count": 3}),
            "name",
        ),
        ("accounts", json!({"name": null}), "name"),
        ("contacts", json!({}), "last_name"),
        (
            "contacts",
            json!({"first_name": "Ana", "email": "ana@example.com"}),
            "last_name",
        ),
        ("contacts", json!({"last_name": null}), "last_name"),
        (
            "leads",
            json!({"company": "Initech", "score": 5}),
            "last_name",
        ),
        ("leads", json!({"last_name": null}), "last_name"),
        (
            "opportunities",
            json!({"stage": "proposal", "amount": 10}),
            "name",
        ),
        ("opportunities", json!({"name": null}), "name"),
        ("activities", json!({"subject": "Intro"}), "type"),
        ("activities", json!({"type": "call"}), "subject"),
        (
            "activities",
            json!({"type": null, "subject": "Intro"}),
            "type",
        ),
        (
            "activities",
            json!({"type": "call", "subject": null}),
            "subject",
        ),
    ];
    for (module, body, field) in cases {
        ctx.rejects_create(module, &body, field).await;
    }
}

#[tokio::test]
async fn unknown_fields_are_refused_on_create_and_update() {
    let ctx = Ctx::new().await;
    for module in MODULES {
        ctx.rejects(module, &json!({"colour": "red"}), "colour")
            .await;
        // JSON names are snake_case and exact.
        ctx.rejects(module, &json!({"Status": "x"}), "Status").await;
        ctx.rejects(module, &json!({"extra": null}), "extra").await;
    }
    // A field of another entity is unknown here.
    ctx.rejects("accounts", &json!({"last_name": "Khan"}), "last_name")
        .await;
    ctx.rejects("contacts", &json!({"company": "Initech"}), "company")
        .await;
    ctx.rejects(
        "leads",
        &json!({"account_id": Uuid::new_v4()}),
        "account_id",
    )
    .await;
    ctx.rejects("opportunities", &json!({"score": 5}), "score")
        .await;
    ctx.rejects("activities", &json!({"type_": "call"}), "type_")
        .await;
}

#[tokio::test]
async fn read_only_fields_are_refused_on_create_and_update() {
    let ctx = Ctx::new().await;
    for module in MODULES {
        let cases = [
            ("id", json!(Uuid::new_v4())),
            ("tenant_id", json!(ctx.tenant)),
            ("tenant_id", json!(Uuid::new_v4())),
            ("created_at", json!("2020-01-01T00:00:00Z")),
            ("updated_at", json!("2020-01-01T00:00:00Z")),
            ("id", json!(null)),
        ];
        for (field, value) in cases {
            ctx.rejects(module, &obj(field, value), field).await;
        }
        // Even the record's own, unchanged values are refused.
        let record = ctx.record(module).await;
        for field in READ_ONLY {
            ctx.rejects_update(module, &obj(field, record[field].clone()), field)
                .await;
        }
    }
}

#[tokio::test]
async fn values_of_the_wrong_json_type_are_refused() {
    let ctx = Ctx::new().await;
    let any_id = Uuid::new_v4().to_string();
    let cases = [
        ("accounts", json!({"name": 123}), "name"),
        ("accounts", json!({"name": true}), "name"),
        ("accounts", json!({"name": ["Acme"]}), "name"),
        ("accounts", json!({"name": {"text": "Acme"}}), "name"),
        ("accounts", json!({"industry": 5}), "industry"),
        ("accounts", json!({"website": false}), "website"),
        ("accounts", json!({"phone": 5551234}), "phone"),
        (
            "accounts",
            json!({"annual_revenue": "1000"}),
            "annual_revenue",
        ),
        (
            "accounts",
            json!({"annual_revenue": true}),
            "annual_revenue",
        ),
        ("accounts", json!({"annual_revenue": [1]}), "annual_revenue"),
        ("accounts", json!({"employee_count": "5"}), "employee_count"),
        ("accounts", json!({"employee_count": [5]}), "employee_count"),
        ("contacts", json!({"first_name": 1}), "first_name"),
        ("contacts", json!({"last_name": 1}), "last_name"),
        ("contacts", json!({"email": 5}), "email"),
        ("contacts", json!({"phone": 5}), "phone"),
        ("contacts", json!({"title": {}}), "title"),
        ("contacts", json!({"account_id": 5}), "account_id"),
        ("contacts", json!({"status": 1}), "status"),
        ("contacts", json!({"status": ["active"]}), "status"),
        ("leads", json!({"first_name": 1}), "first_name"),
        ("leads", json!({"last_name": false}), "last_name"),
        ("leads", json!({"email": []}), "email"),
        ("leads", json!({"company": 1}), "company"),
        ("leads", json!({"source": 1}), "source"),
        ("leads", json!({"status": true}), "status"),
        ("leads", json!({"score": "50"}), "score"),
        ("leads", json!({"score": true}), "score"),
        ("opportunities", json!({"name": 1}), "name"),
        ("opportunities", json!({"account_id": 1}), "account_id"),
        ("opportunities", json!({"contact_id": {}}), "contact_id"),
        ("opportunities", json!({"stage": 1}), "stage"),
        ("opportunities", json!({"amount": "100"}), "amount"),
        ("opportunities", json!({"amount": false}), "amount"),
        ("opportunities", json!({"probability": "10"}), "probability"),
        (
            "opportunities",
            json!({"close_date": 20270131}),
            "close_date",
        ),
        ("activities", json!({"type": 1}), "type"),
        ("activities", json!({"subject": 1}), "subject"),
        ("activities", json!({"body": 1}), "body"),
        ("activities", json!({"status": 1}), "status"),
        ("activities", json!({"due_at": 1_700_000_000}), "due_at"),
        (
            "activities",
            json!({"related_type": 1, "related_id": any_id}),
            "related_type",
        ),
        (
            "activities",
            json!({"related_type": "account", "related_id": 1}),
            "related_id",
        ),
    ];
    for (module, fragment, field) in cases {
        ctx.rejects(module, &fragment, field).await;
    }
}

/// (module, field, max characters, required).
const TEXT_FIELDS: [(&str, &str, usize, bool); 17] = [
    ("accounts", "name", 200, true),
    ("accounts", "industry", 100, false),
    ("accounts", "website", 300, false),
    ("accounts", "phone", 50, false),
    ("contacts", "first_name", 100, false),
    ("contacts", "last_name", 100, true),
    ("contacts", "phone", 50, false),
    ("contacts", "title", 100, false),
    ("leads", "first_name", 100, false),
    ("leads", "last_name", 100, true),
    ("leads", "company", 200, false),
    ("leads", "source", 100, false),
    ("opportunities", "name", 200, true),
    ("activities", "subject", 200, true),
    ("activities", "body", 10_000, false),
    // Emails: their own rule, but the same length bounds.
    ("contacts", "email", 254, false),
    ("leads", "email", 254, false),
];

/// A text of exactly `len` characters that is valid for `field`.
fn text_of(field: &str, len: usize, fill: char) -> String {
    if field == "email" {
        let domain = "@example.com";
        let local: String = std::iter::repeat_n(fill, len - domain.len()).collect();
        format!("{local}{domain}")
    } else {
        std::iter::repeat_n(fill, len).collect()
    }
}

#[tokio::test]
async fn text_over_its_max_length_and_blank_names_are_refused() {
    let ctx = Ctx::new().await;
    for (module, field, max, required) in TEXT_FIELDS {
        // The longest allowed text is kept as given.
        let longest = text_of(field, max, 'a');
        let created = ctx.accepts(module, &obj(field, json!(longest))).await;
        assert_eq!(created[field], json!(longest), "{module}.{field} at {max}");
        // One character more is refused.
        ctx.rejects(
            module,
            &obj(field, json!(text_of(field, max + 1, 'a'))),
            field,
        )
        .await;
        ctx.rejects(
            module,
            &obj(field, json!(text_of(field, max * 3, 'b'))),
            field,
        )
        .await;
        if required {
            for blank in ["", " ", "   \t\n"] {
                ctx.rejects(module, &obj(field, json!(blank)), field).await;
            }
        }
    }
    // Lengths count characters, not bytes.
    let accented = "é".repeat(200);
    let created = ctx.accepts("accounts", &json!({"name": accented})).await;
    assert_eq!(created["name"], json!(accented));
    ctx.rejects("accounts", &json!({"name": "é".repeat(201)}), "name")
        .await;
}

#[tokio::test]
async fn integers_out_of_range_or_not_integers_are_refused() {
    let ctx = Ctx::new().await;
    let cases = [
        ("accounts", "employee_count", json!(-1)),
        ("accounts", "employee_count", json!(1.5)),
        ("accounts", "employee_count", json!(2_147_483_648_i64)),
        ("accounts", "employee_count", json!(-9_000_000_000_i64)),
        ("leads", "score", json!(-1)),
        ("leads", "score", json!(101)),
        ("leads", "score", json!(50.5)),
        ("leads", "score", json!(1_000_000_000_000_i64)),
        ("opportunities", "probability", json!(-1)),
        ("opportunities", "probability", json!(101)),
        ("opportunities", "probability", json!(10.5)),
        ("opportunities", "probability", json!(u64::MAX)),
    ];
    for (module, field, value) in cases {
        ctx.rejects(module, &obj(field, value), field).await;
    }
    // The bounds themselves are accepted.
    let accepted = [
        ("accounts", "employee_count", json!(0)),
        ("accounts", "employee_count", json!(250_000)),
        ("leads", "score", json!(0)),
        ("leads", "score", json!(100)),
        ("opportunities", "probability", json!(0)),
        ("opportunities", "probability", json!(100)),
    ];
    for (module, field, value) in accepted {
        let created = ctx.accepts(module, &obj(field, value.clone())).await;
        assert_eq!(created[field], value, "{module}.{field}");
        let updated = ctx.accepts_update(module, &obj(field, value.clone())).await;
        assert_eq!(updated[field], value, "{module}.{field} on update");
    }
}

#[tokio::test]
async fn money_that_is_negative_too_precise_or_not_a_number_is_refused() {
    let ctx = Ctx::new().await;
    for (module, field) in [("accounts", "annual_revenue"), ("opportunities", "amount")] {
        for value in [
            json!(-1),
            json!(-0.01),
            json!(0.125),
            json!(10.001),
            json!(1.005),
            json!("100"),
            json!("12.50"),
            json!(true),
            json!({"amount": 1}),
        ] {
            ctx.rejects(module, &obj(field, value), field).await;
        }
        for value in [json!(0), json!(0.5), json!(12.34), json!(1_500_000.25)] {
            let created = ctx.accepts(module, &obj(field, value.clone())).await;
            assert_eq!(
                created[field].as_f64(),
                value.as_f64(),
                "{module}.{field} = {value}: {created}"
            );
        }
    }
    // `amount` is numeric(14,2): what it cannot hold is out of range, not a server error.
    ctx.rejects("opportunities", &json!({"amount": 1e15}), "amount")
        .await;
}

#[tokio::test]
async fn enum_fields_refuse_values_outside_their_lists() {
    let ctx = Ctx::new().await;
    let any_id = Uuid::new_v4().to_string();
    let cases = [
        ("contacts", json!({"status": "archived"}), "status"),
        ("contacts", json!({"status": "Active"}), "status"),
        ("contacts", json!({"status": ""}), "status"),
        ("leads", json!({"status": "won"}), "status"),
        ("leads", json!({"status": "NEW"}), "status"),
        ("leads", json!({"status": "new "}), "status"),
        ("opportunities", json!({"stage": "won"}), "stage"),
        ("opportunities", json!({"stage": "closed"}), "stage"),
        ("opportunities", json!({"stage": "Proposal"}), "stage"),
        ("activities", json!({"type": "sms"}), "type"),
        ("activities", json!({"type": "Call"}), "type"),
        ("activities", json!({"status": "done"}), "status"),
        ("activities", json!({"status": "canceled"}), "status"),
        (
            "activities",
            json!({"related_type": "invoice", "related_id": any_id}),
            "related_type",
        ),
        (
            "activities",
            json!({"related_type": "accounts", "related_id": any_id}),
            "related_type",
        ),
    ];
    for (module, fragment, field) in cases {
        ctx.rejects(module, &fragment, field).await;
    }

    // Every listed value is accepted.
    let listed: [(&str, &str, &[&str]); 5] = [
        ("contacts", "status", &["active", "inactive"]),
        (
            "leads",
            "status",
            &["new", "contacted", "qualified", "unqualified", "converted"],
        ),
        (
            "opportunities",
            "stage",
            &[
                "prospecting",
                "qualification",
                "proposal",
                "negotiation",
                "closed_won",
                "closed_lost",
            ],
        ),
        (
            "activities",
            "type",
            &["call", "email", "meeting", "task", "note"],
        ),
        (
            "activities",
            "status",
            &["planned", "completed", "cancelled"],
        ),
    ];
    for (module, field, values) in listed {
        for value in values {
            let created = ctx.accepts(module, &obj(field, json!(value))).await;
            assert_eq!(created[field], json!(value), "{module}.{field}");
        }
    }
    for (kind, module) in [
        ("account", "accounts"),
        ("contact", "contacts"),
        ("lead", "leads"),
        ("opportunity", "opportunities"),
    ] {
        let created = ctx
            .accepts(
                "activities",
                &json!({"related_type": kind, "related_id": ctx.id(module)}),
            )
            .await;
        assert_eq!(created["related_type"], kind);
        assert_eq!(created["related_id"], ctx.id(module));
    }
}

#[tokio::test]
async fn emails_must_contain_an_at_sign() {
    let ctx = Ctx::new().await;
    for module in ["contacts", "leads"] {
        for bad in ["ana.example.com", "ana", "", "ana(at)example.com"] {
            ctx.rejects(module, &json!({"email": bad}), "email").await;
        }
        let created = ctx
            .accepts(module, &json!({"email": "ana@example.com"}))
            .await;
        assert_eq!(created["email"], "ana@example.com");
    }
}

#[tokio::test]
async fn uuid_fields_refuse_non_uuids() {
    let ctx = Ctx::new().await;
    let almost = format!("{}0", Uuid::new_v4());
    let bad_ids = ["123", "not-a-uuid", "", almost.as_str()];
    for bad in bad_ids {
        ctx.rejects("contacts", &json!({"account_id": bad}), "account_id")
            .await;
        ctx.rejects("opportunities", &json!({"account_id": bad}), "account_id")
            .await;
        ctx.rejects("opportunities", &json!({"contact_id": bad}), "contact_id")
            .await;
        ctx.rejects(
            "activities",
            &json!({"related_type": "account", "related_id": bad}),
            "related_id",
        )
        .await;
    }
}

#[tokio::test]
async fn close_date_must_be_yyyy_mm_dd() {
    let ctx = Ctx::new().await;
    for bad in [
        "2027/01/31",
        "31-01-2027",
        "2027-13-01",
        "2027-02-30",
        "2027-1-5",
        "2027-01-31T00:00:00Z",
        "20270131",
        "tomorrow",
        "",
    ] {
        ctx.rejects("opportunities", &json!({"close_date": bad}), "close_date")
            .await;
    }
    for good in ["2027-01-31", "2028-02-29"] {
        let created = ctx
            .accepts("opportunities", &json!({"close_date": good}))
            .await;
        assert_eq!(created["close_date"], good);
    }
}

#[tokio::test]
async fn due_at_must_be_rfc_3339() {
    let ctx = Ctx::new().await;
    for bad in [
        "2026-12-01",
        "2026-12-01T10:00:00",
        "2026-12-01T25:00:00Z",
        "12/01/2026 10:00",
        "next tuesday",
        "1700000000",
        "",
    ] {
        ctx.rejects("activities", &json!({"due_at": bad}), "due_at")
            .await;
    }
    let created = ctx
        .accepts("activities", &json!({"due_at": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(created["due_at"], "2026-12-01T10:00:00Z");
    let created = ctx
        .accepts(
            "activities",
            &json!({"due_at": "2026-12-01T10:00:00.5+05:30"}),
        )
        .await;
    // The same instant, in UTC.
    let due_at = created["due_at"].as_str().unwrap_or_default();
    assert!(
        due_at.starts_with("2026-12-01T04:30:00.5") && due_at.ends_with('Z'),
        "due_at {due_at:?}"
    );
}

#[tokio::test]
async fn null_is_refused_on_non_nullable_fields_and_accepted_on_nullable_ones() {
    let ctx = Ctx::new().await;
    let non_nullable = [
        ("accounts", "name"),
        ("contacts", "last_name"),
        ("contacts", "status"),
        ("leads", "last_name"),
        ("leads", "status"),
        ("leads", "score"),
        ("opportunities", "name"),
        ("opportunities", "stage"),
        ("opportunities", "amount"),
        ("opportunities", "probability"),
        ("activities", "type"),
        ("activities", "subject"),
        ("activities", "status"),
    ];
    for (module, field) in non_nullable {
        ctx.rejects_update(module, &obj(field, Value::Null), field)
            .await;
        ctx.rejects_create(module, &merged(module, &obj(field, Value::Null)), field)
            .await;
    }

    // Nullable fields: set them, then null them one by one.
    let account = ctx.id("accounts").to_owned();
    let contact = ctx.id("contacts").to_owned();
    let nullable: [(&str, Value); 5] = [
        (
            "accounts",
            json!({"industry": "energy", "website": "https://a.example", "phone": "1",
                   "annual_revenue": 10.5, "employee_count": 3}),
        ),
        (
            "contacts",
            json!({"first_name": "Ana", "email": "ana@example.com", "phone": "1",
                   "title": "CTO", "account_id": account}),
        ),
        (
            "leads",
            json!({"first_name": "Ana", "email": "ana@example.com", "company": "Initech",
                   "source": "web"}),
        ),
        (
            "opportunities",
            json!({"account_id": account, "contact_id": contact, "close_date": "2027-01-31"}),
        ),
        (
            "activities",
            json!({"body": "notes", "due_at": "2026-12-01T10:00:00Z"}),
        ),
    ];
    for (module, values) in nullable {
        let set = ctx.accepts_update(module, &values).await;
        for (field, value) in values.as_object().unwrap() {
            assert_eq!(&set[field], value, "{module}.{field} set");
        }
        for field in values.as_object().unwrap().keys() {
            let cleared = ctx.accepts_update(module, &obj(field, Value::Null)).await;
            assert_eq!(cleared[field], Value::Null, "{module}.{field} set to null");
        }
        let fetched = ctx.record(module).await;
        for field in values.as_object().unwrap().keys() {
            assert_eq!(
                fetched[field],
                Value::Null,
                "{module}.{field} stored as null"
            );
        }
    }
}

#[tokio::test]
async fn activity_related_type_and_related_id_go_together() {
    let ctx = Ctx::new().await;
    let account = ctx.id("accounts").to_owned();
    let alone = [
        json!({"related_type": "account"}),
        json!({"related_id": account}),
        json!({"related_type": null, "related_id": account}),
        json!({"related_type": "account", "related_id": null}),
    ];
    for fragment in &alone {
        ctx.rejects("activities", fragment, "related_").await;
    }
    // Both: accepted on create and on update.
    let created = ctx
        .accepts(
            "activities",
            &json!({"related_type": "account", "related_id": account}),
        )
        .await;
    assert_eq!(created["related_type"], "account");
    assert_eq!(created["related_id"], json!(account));
    let updated = ctx
        .accepts_update(
            "activities",
            &json!({"related_type": "account", "related_id": account}),
        )
        .await;
    assert_eq!(updated["related_type"], "account");
    assert_eq!(updated["related_id"], json!(account));
    // Once related, one half alone (or one half null) is still refused.
    for fragment in [
        json!({"related_type": null}),
        json!({"related_id": null}),
        json!({"related_type": "lead"}),
        json!({"related_id": ctx.id("leads")}),
    ] {
        ctx.rejects_update("activities", &fragment, "related_")
            .await;
    }
    // Both null clears the relation.
    let cleared = ctx
        .accepts_update(
            "activities",
            &json!({"related_type": null, "related_id": null}),
        )
        .await;
    assert_eq!(cleared["related_type"], Value::Null);
    assert_eq!(cleared["related_id"], Value::Null);
}

#[tokio::test]
async fn strings_with_nul_characters_are_refused() {
    let ctx = Ctx::new().await;
    let cases = [
        ("accounts", "name", "Ac\0me"),
        ("accounts", "industry", "\0"),
        ("contacts", "last_name", "Kh\0an"),
        ("contacts", "email", "ana\0@example.com"),
        ("leads", "company", "Init\0ech"),
        ("leads", "source", "web\0"),
        ("opportunities", "name", "De\0al"),
        ("activities", "subject", "Hi\0"),
        ("activities", "body", "line\0line"),
    ];
    for (module, field, value) in cases {
        ctx.rejects(module, &obj(field, json!(value)), field).await;
    }
    ctx.rejects(
        "activities",
        &json!({"related_type": "account\0", "related_id": ctx.id("accounts")}),
        "related_type",
    )
    .await;
}

/// One record of each referenceable entity in another tenant: module → id.
async fn foreign_records(ctx: &Ctx) -> HashMap<&'static str, String> {
    let token = ctx.app.token(Uuid::new_v4());
    let mut ids = HashMap::new();
    for module in ["accounts", "contacts", "leads", "opportunities"] {
        let created = ctx.app.create(module, &token, minimal(module)).await;
        ids.insert(module, created["id"].as_str().unwrap().to_owned());
    }
    ids
}

const KINDS: [(&str, &str); 4] = [
    ("account", "accounts"),
    ("contact", "contacts"),
    ("lead", "leads"),
    ("opportunity", "opportunities"),
];

#[tokio::test]
async fn references_to_missing_or_foreign_records_are_refused_on_create() {
    let ctx = Ctx::new().await;
    let foreign = foreign_records(&ctx).await;
    let missing = Uuid::new_v4().to_string();
    let refused = |module: &'static str, body: Value, field: &'static str| {
        let ctx = &ctx;
        async move {
            ctx.refuses_create(module, &body, 422, "invalid_reference", field)
                .await
        }
    };
    for account in [&missing, &foreign["accounts"]] {
        refused(
            "contacts",
            json!({"last_name": "Khan", "account_id": account}),
            "account_id",
        )
        .await;
        refused(
            "opportunities",
            json!({"name": "Deal", "account_id": account}),
            "account_id",
        )
        .await;
        refused(
            "opportunities",
            json!({"name": "Deal", "account_id": account, "contact_id": ctx.id("contacts")}),
            "account_id",
        )
        .await;
    }
    for contact in [&missing, &foreign["contacts"]] {
        refused(
            "opportunities",
            json!({"name": "Deal", "contact_id": contact}),
            "contact_id",
        )
        .await;
        refused(
            "opportunities",
            json!({"name": "Deal", "account_id": ctx.id("accounts"), "contact_id": contact}),
            "contact_id",
        )
        .await;
    }
    for (kind, module) in KINDS {
        // A missing record, another tenant's record of that kind, and one of ours of another kind.
        let other_kind = if module == "accounts" {
            "leads"
        } else {
            "accounts"
        };
        for target in [&missing, &foreign[module], &ctx.id(other_kind).to_owned()] {
            refused(
                "activities",
                json!({"type": "call", "subject": "Intro", "related_type": kind,
                       "related_id": target}),
                "related_id",
            )
            .await;
        }
    }

    // Our own records are accepted.
    let contact = ctx
        .app
        .create(
            "contacts",
            &ctx.token,
            json!({"last_name": "Khan", "account_id": ctx.id("accounts")}),
        )
        .await;
    assert_eq!(contact["account_id"], ctx.id("accounts"));
    let opportunity = ctx
        .app
        .create(
            "opportunities",
            &ctx.token,
            json!({"name": "Deal", "account_id": ctx.id("accounts"),
                   "contact_id": ctx.id("contacts")}),
        )
        .await;
    assert_eq!(opportunity["contact_id"], ctx.id("contacts"));
}

#[tokio::test]
async fn references_to_missing_or_foreign_records_are_refused_on_update() {
    let ctx = Ctx::new().await;
    let foreign = foreign_records(&ctx).await;
    let missing = Uuid::new_v4().to_string();
    for account in [&missing, &foreign["accounts"]] {
        ctx.refuses_update(
            "contacts",
            &json!({"account_id": account}),
            422,
            "invalid_reference",
            "account_id",
        )
        .await;
        ctx.refuses_update(
            "contacts",
            &json!({"account_id": account, "title": "CTO"}),
            422,
            "invalid_reference",
            "account_id",
        )
        .await;
        ctx.refuses_update(
            "opportunities",
            &json!({"account_id": account, "stage": "proposal"}),
            422,
            "invalid_reference",
            "account_id",
        )
        .await;
    }
    for contact in [&missing, &foreign["contacts"]] {
        ctx.refuses_update(
            "opportunities",
            &json!({"contact_id": contact, "name": "Renamed"}),
            422,
            "invalid_reference",
            "contact_id",
        )
        .await;
    }
    for (kind, module) in KINDS {
        let other_kind = if module == "accounts" {
            "leads"
        } else {
            "accounts"
        };
        for target in [&missing, &foreign[module], &ctx.id(other_kind).to_owned()] {
            ctx.refuses_update(
                "activities",
                &json!({"related_type": kind, "related_id": target, "subject": "Changed"}),
                422,
                "invalid_reference",
                "related_id",
            )
            .await;
        }
    }

    // A valid reference set first is not lost by a refused update.
    let linked = ctx
        .accepts_update("contacts", &json!({"account_id": ctx.id("accounts")}))
        .await;
    assert_eq!(linked["account_id"], ctx.id("accounts"));
    ctx.refuses_update(
        "contacts",
        &json!({"account_id": missing}),
        422,
        "invalid_reference",
        "account_id",
    )
    .await;
    assert_eq!(
        ctx.record("contacts").await["account_id"],
        ctx.id("accounts")
    );
    for (kind, module) in KINDS {
        let related = ctx
            .accepts_update(
                "activities",
                &json!({"related_type": kind, "related_id": ctx.id(module)}),
            )
            .await;
        assert_eq!(related["related_id"], ctx.id(module));
    }
}
