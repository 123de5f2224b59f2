//! TTL policy: each route's default, unless `CACHE_TTL_<MODULE>_<OPERATION>` replaces it.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::{Module, Operation};

/// The overrides by module and operation, their names resolved once when the cache is built.
pub(super) struct Ttls {
    overrides: HashMap<(Module, Operation), Duration>,
}

impl Ttls {
    /// Names that match no module and operation are ignored.
    pub(super) fn new(overrides: &HashMap<String, u64>) -> Self {
        let mut table = HashMap::new();
        for (name, secs) in overrides {
            for module in Module::ALL {
                for operation in Operation::ALL {
                    let wanted = format!("{}_{}", module.name(), operation.name());
                    if name.eq_ignore_ascii_case(&wanted) {
                        table.insert((module, operation), Duration::from_secs(*secs));
                    }
                }
            }
        }
        Ttls { overrides: table }
    }

    /// An entity's part of the bundle lives as long as the bundle
    /// (`CACHE_TTL_DASHBOARD_BUNDLE`).
    pub(super) fn of(&self, module: Module, operation: Operation, default: Duration) -> Duration {
        let module = match operation {
            Operation::Bundle => Module::Dashboard,
            _ => module,
        };
        self.overrides
            .get(&(module, operation))
            .copied()
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_only_its_own_default() {
        let overrides = HashMap::from([
            ("LEADS_COUNT".to_owned(), 7),
            ("dashboard_bundle".to_owned(), 9),
            ("NOTHING_LIST".to_owned(), 1),
        ]);
        let ttls = Ttls::new(&overrides);
        let default = Duration::from_secs(60);
        assert_eq!(
            ttls.of(Module::Leads, Operation::Count, default),
            Duration::from_secs(7)
        );
        assert_eq!(
            ttls.of(Module::Dashboard, Operation::Bundle, default),
            Duration::from_secs(9)
        );
        assert_eq!(
            ttls.of(Module::Leads, Operation::Bundle, default),
            Duration::from_secs(9),
            "an entity's part of the bundle lives as long as the bundle"
        );
        assert_eq!(ttls.of(Module::Leads, Operation::List, default), default);
        assert_eq!(
            ttls.of(Module::Accounts, Operation::Count, default),
            default
        );
    }
}
