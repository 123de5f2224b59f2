//! The create and update body of each entity as a typed value: every field by its Rust name
//! and domain type, so that the data layer reads `new.industry`, never a field by its string
//! name, and only ever sees values that passed their rules.
//!
//! A body is checked field by field against the entity's rules ([`parse_body`]), which gives the
//! contract's error messages, and the valid values are then read into the type with serde.
//! Create types hold `Option<T>` for a field that may be omitted (`None`: the database default
//! or null); update types hold `Option<T>` for a field that cannot be null and [`Patch<T>`] for
//! one that can, where `None` leaves the field as it is.

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::choices::{ActivityStatus, ActivityType, ContactStatus, LeadStatus, RelatedType, Stage};
use super::entities::{EntitySpec, ACCOUNTS, ACTIVITIES, CONTACTS, LEADS, OPPORTUNITIES};
use super::fields::{parse_body, Mode};
use super::Invalid;

/// An update's change to a nullable field: absent (`None`), cleared (`Some(None)`) or set.
pub type Patch<T> = Option<Option<T>>;

/// A typed request body of one entity.
pub trait Body: DeserializeOwned {
    const SPEC: &'static EntitySpec;
    const MODE: Mode;

    /// Rules across fields, checked once every field passed its own.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }

    /// The record this body makes its record point at without a foreign key, which the write
    /// checks exists.
    fn references(&self) -> Option<(RelatedType, Uuid)> {
        None
    }

    /// Checks a JSON object against the entity's rules and reads it into this type.
    fn parse(object: Map<String, Value>) -> Result<Self, Invalid> {
        let valid = parse_body(Self::SPEC, object, Self::MODE)?;
        // Every value passed a rule that the field's type reads back; the tests of this module
        // parse every field of every entity, so a type and its rules cannot drift apart.
        let body = serde_json::to_value(valid)
            .and_then(Self::deserialize)
            .map_err(|error| Invalid::Body(format!("the body does not fit its type: {error}")))?;
        body.check()?;
        Ok(body)
    }
}

/// Reads a present field (even `null`) as `Some`, so that `#[serde(default)]` leaves only an
/// absent one `None`.
fn patch<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Patch<T>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub name: String,
    pub industry: Option<String>,
    pub website: Option<String>,
    pub phone: Option<String>,
    pub annual_revenue: Option<BigDecimal>,
    pub employee_count: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChanges {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub industry: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub website: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub phone: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub annual_revenue: Patch<BigDecimal>,
    #[serde(default, deserialize_with = "patch")]
    pub employee_count: Patch<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
    pub account_id: Option<Uuid>,
    pub status: Option<ContactStatus>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactChanges {
    #[serde(default, deserialize_with = "patch")]
    pub first_name: Patch<String>,
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub email: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub phone: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub title: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub account_id: Patch<Uuid>,
    pub status: Option<ContactStatus>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLead {
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub source: Option<String>,
    pub status: Option<LeadStatus>,
    pub score: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadChanges {
    #[serde(default, deserialize_with = "patch")]
    pub first_name: Patch<String>,
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub email: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub company: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub source: Patch<String>,
    pub status: Option<LeadStatus>,
    pub score: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOpportunity {
    pub name: String,
    pub account_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub stage: Option<Stage>,
    pub amount: Option<BigDecimal>,
    pub probability: Option<i32>,
    pub close_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpportunityChanges {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub account_id: Patch<Uuid>,
    #[serde(default, deserialize_with = "patch")]
    pub contact_id: Patch<Uuid>,
    pub stage: Option<Stage>,
    pub amount: Option<BigDecimal>,
    pub probability: Option<i32>,
    #[serde(default, deserialize_with = "patch")]
    pub close_date: Patch<NaiveDate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewActivity {
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub subject: String,
    pub body: Option<String>,
    pub status: Option<ActivityStatus>,
    pub due_at: Option<DateTime<Utc>>,
    /// Set together with `related_id` or not at all ([`Body::check`]).
    pub related_type: Option<RelatedType>,
    pub related_id: Option<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityChanges {
    #[serde(rename = "type")]
    pub kind: Option<ActivityType>,
    pub subject: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub body: Patch<String>,
    pub status: Option<ActivityStatus>,
    #[serde(default, deserialize_with = "patch")]
    pub due_at: Patch<DateTime<Utc>>,
    /// Changed together with `related_id`, both set or both cleared ([`Body::check`]).
    #[serde(default, deserialize_with = "patch")]
    pub related_type: Patch<RelatedType>,
    #[serde(default, deserialize_with = "patch")]
    pub related_id: Patch<Uuid>,
}

/// `related_type` and `related_id` are given together, both set or both null, or not at all.
fn related_pair<T, U>(kind: &Option<T>, id: &Option<U>) -> Result<(), Invalid> {
    if kind.is_some() == id.is_some() {
        return Ok(());
    }
    Err(Invalid::Body(
        "field `related_id` must be given together with `related_type` (both set or both null)"
            .into(),
    ))
}

macro_rules! body {
    ($type:ty, $spec:expr, $mode:expr) => {
        impl Body for $type {
            const SPEC: &'static EntitySpec = &$spec;
            const MODE: Mode = $mode;
        }
    };
}
body!(NewAccount, ACCOUNTS, Mode::Create);
body!(AccountChanges, ACCOUNTS, Mode::Update);
body!(NewContact, CONTACTS, Mode::Create);
body!(ContactChanges, CONTACTS, Mode::Update);
body!(NewLead, LEADS, Mode::Create);
body!(LeadChanges, LEADS, Mode::Update);
body!(NewOpportunity, OPPORTUNITIES, Mode::Create);
body!(OpportunityChanges, OPPORTUNITIES, Mode::Update);

impl Body for NewActivity {
    const SPEC: &'static EntitySpec = &ACTIVITIES;
    const MODE: Mode = Mode::Create;

    fn check(&self) -> Result<(), Invalid> {
        related_pair(&self.related_type, &self.related_id)
    }

    fn references(&self) -> Option<(RelatedType, Uuid)> {
        Some((self.related_type?, self.related_id?))
    }
}

impl Body for ActivityChanges {
    const SPEC: &'static EntitySpec = &ACTIVITIES;
    const MODE: Mode = Mode::Update;

    fn check(&self) -> Result<(), Invalid> {
        // Both absent, both null, or both set.
        related_pair(&self.related_type, &self.related_id)?;
        related_pair(&self.related_type.flatten(), &self.related_id.flatten())
    }

    fn references(&self) -> Option<(RelatedType, Uuid)> {
        Some((self.related_type.flatten()?, self.related_id.flatten()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fields::{FieldKind, Presence};
    use serde_json::json;

    /// A value every rule of `kind` accepts.
    fn sample(kind: FieldKind) -> Value {
        match kind {
            FieldKind::Text { .. } => json!("Text"),
            FieldKind::Email { .. } => json!("ada@example.com"),
            FieldKind::Enum(allowed) => json!(allowed[allowed.len() - 1]),
            FieldKind::Integer { min, .. } => json!(min + 1),
            FieldKind::Money { .. } => json!(12.5),
            FieldKind::Uuid => json!(Uuid::new_v4()),
            FieldKind::Date => json!("2026-12-01"),
            FieldKind::Timestamp => json!("2026-12-01T10:00:00.123456Z"),
        }
    }

    fn every_field(spec: &EntitySpec) -> Map<String, Value> {
        spec.fields
            .iter()
            .map(|field| (field.name.to_owned(), sample(field.kind)))
            .collect()
    }

    fn every_nullable_null(spec: &EntitySpec) -> Map<String, Value> {
        spec.fields
            .iter()
            .filter(|field| matches!(field.presence, Presence::Nullable))
            .map(|field| (field.name.to_owned(), Value::Null))
            .collect()
    }

    /// Each type takes every field of its entity's rules (`deny_unknown_fields` refuses one the
    /// type lacks), and nulls where the rules allow them.
    fn reads_every_field<New: Body, Changes: Body>() {
        let spec = New::SPEC;
        New::parse(every_field(spec)).unwrap_or_else(|e| panic!("{}: {e}", spec.module));
        Changes::parse(every_field(spec)).unwrap_or_else(|e| panic!("{}: {e}", spec.module));
        Changes::parse(Map::new()).unwrap_or_else(|e| panic!("{}: {e}", spec.module));
        Changes::parse(every_nullable_null(spec))
            .unwrap_or_else(|e| panic!("{}: {e}", spec.module));
    }

    #[test]
    fn every_entity_type_reads_every_field_of_its_rules() {
        reads_every_field::<NewAccount, AccountChanges>();
        reads_every_field::<NewContact, ContactChanges>();
        reads_every_field::<NewLead, LeadChanges>();
        reads_every_field::<NewOpportunity, OpportunityChanges>();
        reads_every_field::<NewActivity, ActivityChanges>();
    }

    #[test]
    fn values_arrive_typed_and_normalized() {
        let mut body = every_field(&OPPORTUNITIES);
        body.insert("stage".into(), json!("closed_won"));
        let new = NewOpportunity::parse(body).unwrap();
        assert_eq!(new.stage, Some(Stage::ClosedWon));
        assert_eq!(
            new.amount.map(|amount| amount.to_string()),
            Some("12.50".into())
        );
        assert_eq!(new.close_date, NaiveDate::from_ymd_opt(2026, 12, 1));

        let changes = OpportunityChanges::parse(Map::from_iter([
            ("close_date".to_owned(), Value::Null),
            ("probability".to_owned(), json!(40)),
        ]))
        .unwrap();
        assert_eq!(changes.close_date, Some(None));
        assert_eq!(changes.probability, Some(40));
        assert_eq!(changes.account_id, None);
    }

    #[test]
    fn an_activity_names_its_related_record_with_both_fields_or_neither() {
        let id = Uuid::new_v4();
        let base = || {
            Map::from_iter([
                ("type".to_owned(), json!("call")),
                ("subject".to_owned(), json!("Hello")),
            ])
        };
        let mut both = base();
        both.insert("related_type".into(), json!("lead"));
        both.insert("related_id".into(), json!(id));
        let new = NewActivity::parse(both).unwrap();
        assert_eq!(new.references(), Some((RelatedType::Lead, id)));
        assert_eq!(NewActivity::parse(base()).unwrap().references(), None);

        let mut half = base();
        half.insert("related_id".into(), json!(id));
        let error = NewActivity::parse(half).unwrap_err();
        assert!(error.to_string().contains("`related_id`"), "{error}");

        let cleared_one = Map::from_iter([
            ("related_type".to_owned(), Value::Null),
            ("related_id".to_owned(), json!(id)),
        ]);
        assert!(ActivityChanges::parse(cleared_one).is_err());
        let cleared_both = Map::from_iter([
            ("related_type".to_owned(), Value::Null),
            ("related_id".to_owned(), Value::Null),
        ]);
        let changes = ActivityChanges::parse(cleared_both).unwrap();
        assert_eq!(changes.related_type, Some(None));
        assert_eq!(changes.references(), None);
    }
}
