//! The five entities as the contract's tables declare them: writable fields, list filters and
//! the columns `q` searches. Validation, query parsing and the OpenAPI document all read these.

use super::choices::{ActivityStatus, ActivityType, ContactStatus, LeadStatus, RelatedType, Stage};
use super::fields::{DefaultValue, FieldKind, FieldSpec, Presence};
use super::Module;

/// What values a list/count equality filter takes.
#[derive(Debug, Clone, Copy)]
pub enum FilterKind {
    Text { max: usize },
    Enum(&'static [&'static str]),
    Uuid,
}

#[derive(Debug, Clone, Copy)]
pub struct FilterSpec {
    pub name: &'static str,
    pub kind: FilterKind,
}

#[derive(Debug)]
pub struct EntitySpec {
    /// Its module; the name is the path segment, e.g. `opportunities`.
    pub module: Module,
    /// The schema name in the OpenAPI document, e.g. `Opportunity`.
    pub schema: &'static str,
    pub fields: &'static [FieldSpec],
    pub filters: &'static [FilterSpec],
    /// Columns `q` matches as a case-insensitive substring.
    pub search: &'static [&'static str],
    /// Fields the entity's stats add up or group by: a change of one changes the stats.
    pub totals: &'static [&'static str],
    /// The filter the stats may be narrowed by (`account_id`): a change of a total changes the
    /// stats of its record's value of it, and no other value's.
    pub totals_scope: Option<&'static str>,
    /// The references to this entity that the database sets to null when a record is deleted.
    pub cascades: &'static [Cascade],
    /// Modules whose cached answers a delete changes: this one, and those of its cascades.
    pub delete_invalidates: &'static [Module],
}

/// A reference `column` of another entity's records that a delete here sets to null.
#[derive(Debug)]
pub struct Cascade {
    pub referrer: &'static EntitySpec,
    pub column: &'static str,
}

impl EntitySpec {
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|field| field.name == name)
    }

    pub fn filter(&self, name: &str) -> Option<&'static FilterSpec> {
        self.filters.iter().find(|filter| filter.name == name)
    }
}

pub const CONTACT_STATUSES: &[&str] = ContactStatus::NAMES;
pub const LEAD_STATUSES: &[&str] = LeadStatus::NAMES;
/// In the order the stats answer lists them.
pub const STAGES: &[&str] = Stage::NAMES;
pub const ACTIVITY_TYPES: &[&str] = ActivityType::NAMES;
pub const ACTIVITY_STATUSES: &[&str] = ActivityStatus::NAMES;
pub const RELATED_TYPES: &[&str] = RelatedType::NAMES;

/// Largest money value the `numeric(14,2)` columns hold.
pub const MONEY_MAX: f64 = 999_999_999_999.99;

const fn field(name: &'static str, kind: FieldKind, presence: Presence) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        presence,
    }
}

const fn text(max: usize) -> FieldKind {
    FieldKind::Text { min: 0, max }
}

const fn name(max: usize) -> FieldKind {
    FieldKind::Text { min: 1, max }
}

const fn filter(name: &'static str, kind: FilterKind) -> FilterSpec {
    FilterSpec { name, kind }
}

use FieldKind::{Date, Email, Enum, Integer, Money, Timestamp, Uuid};
use Presence::{Defaulted, Nullable, Required};

pub const ACCOUNTS: EntitySpec = EntitySpec {
    module: Module::Accounts,
    schema: "Account",
    fields: &[
        field("name", name(200), Required),
        field("industry", text(100), Nullable),
        field("website", text(300), Nullable),
        field("phone", text(50), Nullable),
        field("annual_revenue", Money { max: MONEY_MAX }, Nullable),
        field(
            "employee_count",
            Integer {
                min: 0,
                max: i32::MAX,
            },
            Nullable,
        ),
    ],
    filters: &[filter("industry", FilterKind::Text { max: 100 })],
    search: &["name"],
    totals: &[],
    totals_scope: None,
    cascades: &[
        Cascade {
            referrer: &CONTACTS,
            column: "account_id",
        },
        Cascade {
            referrer: &OPPORTUNITIES,
            column: "account_id",
        },
    ],
    delete_invalidates: &[Module::Accounts, Module::Contacts, Module::Opportunities],
};

pub const CONTACTS: EntitySpec = EntitySpec {
    module: Module::Contacts,
    schema: "Contact",
    fields: &[
        field("first_name", text(100), Nullable),
        field("last_name", name(100), Required),
        field("email", Email { max: 254 }, Nullable),
        field("phone", text(50), Nullable),
        field("title", text(100), Nullable),
        field("account_id", Uuid, Nullable),
        field(
            "status",
            Enum(CONTACT_STATUSES),
            Defaulted(DefaultValue::Text("active")),
        ),
    ],
    filters: &[
        filter("account_id", FilterKind::Uuid),
        filter("status", FilterKind::Enum(CONTACT_STATUSES)),
    ],
    search: &["first_name", "last_name", "email"],
    totals: &[],
    totals_scope: None,
    cascades: &[Cascade {
        referrer: &OPPORTUNITIES,
        column: "contact_id",
    }],
    delete_invalidates: &[Module::Contacts, Module::Opportunities],
};

pub const LEADS: EntitySpec = EntitySpec {
    module: Module::Leads,
    schema: "Lead",
    fields: &[
        field("first_name", text(100), Nullable),
        field("last_name", name(100), Required),
        field("email", Email { max: 254 }, Nullable),
        field("company", text(200), Nullable),
        field("source", text(100), Nullable),
        field(
            "status",
            Enum(LEAD_STATUSES),
            Defaulted(DefaultValue::Text("new")),
        ),
        field(
            "score",
            Integer { min: 0, max: 100 },
            Defaulted(DefaultValue::Number(0)),
        ),
    ],
    filters: &[
        filter("status", FilterKind::Enum(LEAD_STATUSES)),
        filter("source", FilterKind::Text { max: 100 }),
    ],
    search: &["first_name", "last_name", "email", "company"],
    totals: &[],
    totals_scope: None,
    cascades: &[],
    delete_invalidates: &[Module::Leads],
};

pub const OPPORTUNITIES: EntitySpec = EntitySpec {
    module: Module::Opportunities,
    schema: "Opportunity",
    fields: &[
        field("name", name(200), Required),
        field("account_id", Uuid, Nullable),
        field("contact_id", Uuid, Nullable),
        field(
            "stage",
            Enum(STAGES),
            Defaulted(DefaultValue::Text("prospecting")),
        ),
        field(
            "amount",
            Money { max: MONEY_MAX },
            Defaulted(DefaultValue::Number(0)),
        ),
        field(
            "probability",
            Integer { min: 0, max: 100 },
            Defaulted(DefaultValue::Number(10)),
        ),
        field("close_date", Date, Nullable),
    ],
    filters: &[
        filter("stage", FilterKind::Enum(STAGES)),
        filter("account_id", FilterKind::Uuid),
    ],
    search: &["name"],
    totals: &["stage", "amount"],
    totals_scope: Some("account_id"),
    cascades: &[],
    delete_invalidates: &[Module::Opportunities],
};

pub const ACTIVITIES: EntitySpec = EntitySpec {
    module: Module::Activities,
    schema: "Activity",
    fields: &[
        field("type", Enum(ACTIVITY_TYPES), Required),
        field("subject", name(200), Required),
        field("body", text(10_000), Nullable),
        field(
            "status",
            Enum(ACTIVITY_STATUSES),
            Defaulted(DefaultValue::Text("planned")),
        ),
        field("due_at", Timestamp, Nullable),
        field("related_type", Enum(RELATED_TYPES), Nullable),
        field("related_id", Uuid, Nullable),
    ],
    filters: &[
        filter("type", FilterKind::Enum(ACTIVITY_TYPES)),
        filter("status", FilterKind::Enum(ACTIVITY_STATUSES)),
        filter("related_type", FilterKind::Enum(RELATED_TYPES)),
        filter("related_id", FilterKind::Uuid),
    ],
    search: &["subject"],
    totals: &[],
    totals_scope: None,
    cascades: &[],
    delete_invalidates: &[Module::Activities],
};

/// Every entity, in the contract's order.
pub const ALL: [&EntitySpec; 5] = [&ACCOUNTS, &CONTACTS, &LEADS, &OPPORTUNITIES, &ACTIVITIES];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_invalidates_its_module_and_those_of_its_cascades() {
        for spec in ALL {
            let mut expected = vec![spec.module];
            expected.extend(spec.cascades.iter().map(|cascade| cascade.referrer.module));
            assert_eq!(spec.delete_invalidates, expected, "{}", spec.module);
            for cascade in spec.cascades {
                assert!(
                    cascade.referrer.field(cascade.column).is_some(),
                    "{} has no field {}",
                    cascade.referrer.module,
                    cascade.column
                );
            }
            for field in spec.totals {
                assert!(spec.field(field).is_some(), "{field}");
            }
            if let Some(scope) = spec.totals_scope {
                assert!(spec.filter(scope).is_some(), "{scope}");
            }
        }
    }
}
