//! Field rules of the writable entity fields, and the parser that turns a JSON object into a
//! [`ValidBody`] of typed values according to them. The same rules feed the OpenAPI document.

use std::collections::HashMap;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::echo;
use super::entities::EntitySpec;
use super::Invalid;

/// Fields every record has that the server sets.
pub const READ_ONLY: &[&str] = &["id", "tenant_id", "created_at", "updated_at"];

/// What values a field takes.
#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    /// A string of `min..=max` characters.
    Text {
        min: usize,
        max: usize,
    },
    /// A string of at most `max` characters containing `@`.
    Email {
        max: usize,
    },
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// A JSON integer within `min..=max`.
    Integer {
        min: i32,
        max: i32,
    },
    /// A JSON number `0..=max` with at most two decimals (money).
    Money {
        max: f64,
    },
    Uuid,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339.
    Timestamp,
}

/// A default the database fills in when a create omits the field.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    Text(&'static str),
    Number(i64),
}

#[derive(Debug, Clone, Copy)]
pub enum Presence {
    /// Must be given on create; never null.
    Required,
    /// May be omitted on create (the default applies); never null.
    Defaulted(DefaultValue),
    /// May be omitted on create, and set to `null` on update.
    Nullable,
}

#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub presence: Presence,
}

/// A field value that passed its rule; it serializes as the JSON its typed body reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    Null,
    Text(String),
    Integer(i32),
    Money(BigDecimal),
    Uuid(Uuid),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
}

/// Create takes every required field; update changes only the fields given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

/// A request body whose every field passed its rule, by field name; the entity's typed body
/// ([`super::bodies::Body`]) reads it.
#[derive(Debug, Default, serde::Serialize)]
pub struct ValidBody(HashMap<&'static str, FieldValue>);

/// Checks a JSON object against the entity's field rules.
pub fn parse_body(
    spec: &EntitySpec,
    body: Map<String, Value>,
    mode: Mode,
) -> Result<ValidBody, Invalid> {
    let mut valid = ValidBody::default();
    for (key, value) in body {
        if let Some(name) = READ_ONLY.iter().find(|name| **name == key) {
            return Err(Invalid::Body(format!("field `{name}` is read-only")));
        }
        let field = spec
            .field(&key)
            .ok_or_else(|| Invalid::Body(format!("unknown field {}", echo(&key))))?;
        let parsed = field.parse(value)?;
        valid.0.insert(field.name, parsed);
    }
    if mode == Mode::Create {
        for field in spec.fields {
            if matches!(field.presence, Presence::Required) && !valid.0.contains_key(field.name) {
                return Err(Invalid::Body(format!("field `{}` is required", field.name)));
            }
        }
    }
    Ok(valid)
}

impl FieldSpec {
    fn invalid(&self, rule: impl std::fmt::Display) -> Invalid {
        Invalid::Body(format!("field `{}` {rule}", self.name))
    }

    /// Parses one JSON value according to this field's rule.
    pub fn parse(&self, value: Value) -> Result<FieldValue, Invalid> {
        if value.is_null() {
            return match self.presence {
                Presence::Nullable => Ok(FieldValue::Null),
                _ => Err(self.invalid("cannot be null")),
            };
        }
        match self.kind {
            FieldKind::Text { min, max } => {
                let text = self.string(value, max)?;
                if min > 0 && text.trim().is_empty() {
                    return Err(self.invalid("must not be blank"));
                }
                Ok(FieldValue::Text(text))
            }
            FieldKind::Email { max } => {
                let text = self.string(value, max)?;
                if !text.contains('@') {
                    return Err(self.invalid("must be an email address containing `@`"));
                }
                Ok(FieldValue::Text(text))
            }
            FieldKind::Enum(allowed) => {
                let text = self.string(value, 64)?;
                if allowed.contains(&text.as_str()) {
                    Ok(FieldValue::Text(text))
                } else {
                    Err(self.invalid(format_args!("must be one of {}", allowed.join(", "))))
                }
            }
            FieldKind::Integer { min, max } => {
                let number = value
                    .as_i64()
                    .ok_or_else(|| self.invalid("must be an integer"))?;
                if number < i64::from(min) || number > i64::from(max) {
                    return Err(self.invalid(format_args!("must be between {min} and {max}")));
                }
                i32::try_from(number)
                    .map(FieldValue::Integer)
                    .map_err(|_| self.invalid("is out of range"))
            }
            FieldKind::Money { max } => {
                // The number exactly as the client wrote it (serde_json keeps the text), so that
                // no decimal is lost to floating point before the check.
                let Value::Number(number) = value else {
                    return Err(self.invalid("must be a number"));
                };
                let decimal = BigDecimal::from_str(&number.to_string())
                    .map_err(|_| self.invalid("must be a number"))?;
                // A constant of the entity tables, always a number.
                let max = BigDecimal::from_str(&max.to_string())
                    .expect("the bound of a money rule is a number");
                if decimal.sign() == bigdecimal::num_bigint::Sign::Minus || decimal > max {
                    return Err(self.invalid(format_args!("must be between 0 and {max}")));
                }
                if decimal.normalized().fractional_digit_count() > 2 {
                    return Err(self.invalid("must have at most two decimals"));
                }
                Ok(FieldValue::Money(decimal.with_scale(2)))
            }
            FieldKind::Uuid => {
                let text = self.string(value, 64)?;
                Uuid::try_parse(&text)
                    .map(FieldValue::Uuid)
                    .map_err(|_| self.invalid("must be a UUID"))
            }
            FieldKind::Date => {
                let text = self.string(value, 10)?;
                // Exactly four, two and two digits: chrono alone also takes padding and signs.
                let shaped = text.len() == 10
                    && text.bytes().enumerate().all(|(at, byte)| match at {
                        4 | 7 => byte == b'-',
                        _ => byte.is_ascii_digit(),
                    });
                NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .ok()
                    .filter(|date| shaped && (1..=9999).contains(&date.year()))
                    .map(FieldValue::Date)
                    .ok_or_else(|| self.invalid("must be a date YYYY-MM-DD"))
            }
            FieldKind::Timestamp => {
                let text = self.string(value, 64)?;
                DateTime::parse_from_rfc3339(&text)
                    .ok()
                    .map(|at| at.with_timezone(&Utc))
                    .and_then(without_leap_second)
                    .filter(|at| (1..=9999).contains(&at.year()))
                    .map(FieldValue::Timestamp)
                    .ok_or_else(|| self.invalid("must be an RFC 3339 date-time"))
            }
        }
    }

    fn string(&self, value: Value, max: usize) -> Result<String, Invalid> {
        let Value::String(text) = value else {
            return Err(self.invalid("must be a string"));
        };
        // PostgreSQL text cannot hold NUL; refuse it here instead of failing in the database.
        if text.contains('\0') {
            return Err(self.invalid("must not contain NUL characters"));
        }
        if text.chars().count() > max {
            return Err(self.invalid(format_args!("must be at most {max} characters")));
        }
        Ok(text)
    }
}

/// A leap second (`:60`) as PostgreSQL stores it: the first instant of the next second.
fn without_leap_second(at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::Timelike;
    if at.nanosecond() < 1_000_000_000 {
        return Some(at);
    }
    at.with_nanosecond(at.nanosecond() - 1_000_000_000)?
        .checked_add_signed(chrono::Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entities::OPPORTUNITIES;
    use serde_json::json;

    fn parse(body: Value, mode: Mode) -> Result<ValidBody, Invalid> {
        let Value::Object(map) = body else {
            panic!("test body must be an object")
        };
        parse_body(&OPPORTUNITIES, map, mode)
    }

    #[test]
    fn money_keeps_two_decimals_and_refuses_more() {
        let body = parse(json!({"name": "x", "amount": 12.5}), Mode::Create).unwrap();
        let Some(FieldValue::Money(amount)) = body.0.get("amount") else {
            panic!("amount is money: {body:?}")
        };
        assert_eq!(amount.to_string(), "12.50");
        assert!(parse(json!({"name": "x", "amount": 0.125}), Mode::Create).is_err());
        assert!(parse(json!({"name": "x", "amount": -1}), Mode::Create).is_err());
    }

    #[test]
    fn update_accepts_partial_bodies_and_create_requires_name() {
        assert!(parse(json!({"stage": "proposal"}), Mode::Update).is_ok());
        let err = parse(json!({"stage": "proposal"}), Mode::Create).unwrap_err();
        assert!(err.to_string().contains("`name`"));
    }

    #[test]
    fn null_only_for_nullable_fields() {
        let body = parse(json!({"close_date": null}), Mode::Update).unwrap();
        assert_eq!(body.0.get("close_date"), Some(&FieldValue::Null));
        assert!(parse(json!({"stage": null}), Mode::Update).is_err());
    }
}
