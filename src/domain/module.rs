//! The modules a tenant's data and cached answers fall into, and the operations cached on them.
//! Metric labels and the module bits of every cache tag derive from these enums.

use std::fmt;

/// The five entities and the dashboard built from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    Accounts,
    Contacts,
    Leads,
    Opportunities,
    Activities,
    Dashboard,
}

impl Module {
    /// Every module, in the contract's order (its position is also its cache tags' module bits).
    pub const ALL: [Module; 6] = [
        Module::Accounts,
        Module::Contacts,
        Module::Leads,
        Module::Opportunities,
        Module::Activities,
        Module::Dashboard,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The path segment, metric label and wire name, e.g. `opportunities`.
    pub const fn name(self) -> &'static str {
        match self {
            Module::Accounts => "accounts",
            Module::Contacts => "contacts",
            Module::Leads => "leads",
            Module::Opportunities => "opportunities",
            Module::Activities => "activities",
            Module::Dashboard => "dashboard",
        }
    }

    /// Position in [`Self::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Module> {
        Self::ALL.into_iter().find(|module| module.name() == name)
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a cached route answers about a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    List,
    Count,
    Stats,
    Bundle,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::List,
        Operation::Count,
        Operation::Stats,
        Operation::Bundle,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The metric label and the suffix of `CACHE_TTL_<MODULE>_<OPERATION>`.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Count => "count",
            Operation::Stats => "stats",
            Operation::Bundle => "bundle",
        }
    }

    /// Position in [`Self::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_positions_agree() {
        for (index, module) in Module::ALL.into_iter().enumerate() {
            assert_eq!(module.index(), index);
            assert_eq!(Module::from_name(module.name()), Some(module));
        }
        for (index, operation) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(operation.index(), index);
        }
        assert_eq!(Module::from_name("Leads"), None);
    }
}
