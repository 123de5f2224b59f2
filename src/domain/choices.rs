//! The closed sets of values some fields take (an opportunity's stage, an activity's type, …),
//! as enums: the database stores their text, the typed bodies hold the enum.

/// Declares an enum whose variants are stored as the given texts, with its list of texts (for
/// the field rules and the OpenAPI document) and the conversion each way. Deserializing takes
/// exactly those texts.
macro_rules! choices {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value's text, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choices!(
    /// Whether a contact is still someone to talk to.
    ContactStatus {
        Active = "active",
        Inactive = "inactive",
    }
);

choices!(
    /// Where a lead stands on its way to a customer.
    LeadStatus {
        New = "new",
        Contacted = "contacted",
        Qualified = "qualified",
        Unqualified = "unqualified",
        Converted = "converted",
    }
);

choices!(
    /// An opportunity's stage, in the order the stats answer lists them.
    Stage {
        Prospecting = "prospecting",
        Qualification = "qualification",
        Proposal = "proposal",
        Negotiation = "negotiation",
        ClosedWon = "closed_won",
        ClosedLost = "closed_lost",
    }
);

choices!(
    /// What kind of interaction an activity records.
    ActivityType {
        Call = "call",
        Email = "email",
        Meeting = "meeting",
        Task = "task",
        Note = "note",
    }
);

choices!(
    ActivityStatus {
        Planned = "planned",
        Completed = "completed",
        Cancelled = "cancelled",
    }
);

choices!(
    /// The kind of record an activity is about.
    RelatedType {
        Account = "account",
        Contact = "contact",
        Lead = "lead",
        Opportunity = "opportunity",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_reads_back_from_its_text() {
        for (at, name) in Stage::NAMES.iter().enumerate() {
            let stage: Stage = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(stage.as_str(), *name);
            assert_eq!(Stage::NAMES[at], stage.to_string());
        }
        assert!(serde_json::from_value::<Stage>(serde_json::json!("Closed_Won")).is_err());
    }
}
