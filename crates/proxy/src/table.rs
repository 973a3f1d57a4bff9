//! Immutable route tables, swapped atomically on reload.
//!
//! Contract: [`Table::lookup`] resolves a name to the most specific route: exact name, then the
//! longest matching `*.suffix` wildcard (any depth below the suffix), then the default route.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Route;
use crate::config::DomainPattern;

#[derive(Debug, Default)]
pub(crate) struct Table {
    exact: HashMap<String, Arc<Route>>,
    wildcard: HashMap<String, Arc<Route>>,
    default: Option<Arc<Route>>,
    pub all: Vec<Arc<Route>>,
}

impl Table {
    pub(crate) fn insert(&mut self, pattern: DomainPattern, route: Arc<Route>) {
        self.all.push(route.clone());
        match pattern {
            DomainPattern::Exact(d) => {
                self.exact.insert(d, route);
            }
            DomainPattern::Wildcard(s) => {
                self.wildcard.insert(s, route);
            }
            DomainPattern::Default => self.default = Some(route),
        }
    }

    /// `name` is already normalized (lowercase, no trailing dot).
    pub(crate) fn lookup(&self, name: Option<&str>) -> Option<Arc<Route>> {
        if let Some(name) = name {
            if let Some(r) = self.exact.get(name) {
                return Some(r.clone());
            }
            let mut rest = name;
            while let Some((_, suffix)) = rest.split_once('.') {
                if let Some(r) = self.wildcard.get(suffix) {
                    return Some(r.clone());
                }
                rest = suffix;
            }
        }
        self.default.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RouteStats;
    use crate::config::{Balance, ListenerProtocol};
    use std::time::Duration;

    fn route(d: &str) -> Arc<Route> {
        Arc::new(Route::new(
            d.into(),
            ListenerProtocol::Tls,
            Vec::new(),
            Balance::RoundRobin,
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Arc::default(),
        ))
    }

    fn name(r: Option<Arc<Route>>) -> Option<String> {
        r.map(|r| r.domain.clone())
    }

    #[test]
    fn most_specific_wins() {
        let mut t = Table::default();
        for d in [
            "example.com",
            "*.example.com",
            "*.api.example.com",
            "x.api.example.com",
        ] {
            t.insert(DomainPattern::parse(d).expect("pattern"), route(d));
        }
        let _ = RouteStats::default();
        // The most specific pattern wins.
        for (host, want) in [
            ("example.com", "example.com"),
            ("www.example.com", "*.example.com"),
            ("a.b.example.com", "*.example.com"),
            ("v1.api.example.com", "*.api.example.com"),
            ("x.api.example.com", "x.api.example.com"),
        ] {
            assert_eq!(name(t.lookup(Some(host))).as_deref(), Some(want), "{host}");
        }
        assert_eq!(name(t.lookup(Some("example.org"))), None);
        assert_eq!(name(t.lookup(None)), None);
        t.insert(DomainPattern::Default, route("*"));
        assert_eq!(name(t.lookup(Some("example.org"))).as_deref(), Some("*"));
        assert_eq!(name(t.lookup(None)).as_deref(), Some("*"));
    }
}
