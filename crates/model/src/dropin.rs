//! Drop-in formats of the anchors, converted to native documents.
//!
//! kiagateway's `servers.toml`: `[backends]` maps a domain to one backend that receives both its
//! TLS (443) and its plain HTTP (80) traffic; or `[https_backends]` + `[http_backends]` give them
//! separately. It runs as an edge node: the domain router alone, on all addresses, :80 and :443.

use crate::error::{FieldError, ModelError};
use crate::spec::{Gateway, Route, RouterSettings};

/// Some(..) when `text` is a kiagateway `servers.toml` (its tables and nothing else).
pub fn kiagateway(text: &str) -> Option<Result<Gateway, ModelError>> {
    let table: toml::Table = text.parse().ok()?;
    const KEYS: [&str; 3] = ["backends", "https_backends", "http_backends"];
    if table.is_empty() || !table.keys().all(|k| KEYS.contains(&k.as_str())) {
        return None;
    }
    let mut routes: Vec<Route> = Vec::new();
    for key in KEYS {
        let Some(section) = table.get(key) else {
            continue;
        };
        let Some(map) = section.as_table() else {
            return Some(Err(ModelError::Syntax(FieldError::new(
                key,
                "must be a table of \"domain\" = \"ip:port\"",
            ))));
        };
        for (domain, backend) in map {
            let backends: Vec<String> = match backend {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => {
                    return Some(Err(ModelError::Syntax(FieldError::new(
                        format!("{key}.{domain}"),
                        "must be \"ip:port\" or a list of them",
                    ))));
                }
            };
            let domain = domain.to_ascii_lowercase();
            let idx = match routes.iter().position(|r| r.domain == domain) {
                Some(i) => i,
                None => {
                    routes.push(Route {
                        domain,
                        https: vec![],
                        http: vec![],
                        balance: None,
                        proxy_protocol: None,
                        health_check: None,
                    });
                    routes.len() - 1
                }
            };
            let r = &mut routes[idx];
            match key {
                "backends" => {
                    r.https.extend(backends.clone());
                    r.http.extend(backends);
                }
                "https_backends" => r.https.extend(backends),
                _ => r.http.extend(backends),
            }
        }
    }
    let mut g = Gateway {
        routes,
        router: Some(RouterSettings::default()),
        ..Default::default()
    };
    g.gateway.name = "kiagateway".into();
    Some(Ok(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let one = kiagateway("[backends]\n\"example.com\" = \"127.0.0.1:8001\"\n\"example.org\" = \"127.0.0.1:8002\"\n")
            .expect("recognised")
            .expect("valid");
        assert_eq!(one.routes.len(), 2);
        assert_eq!(one.routes[0].https, one.routes[0].http);
        let two = kiagateway("[https_backends]\n\"example.com\" = \"127.0.0.1:8443\"\n[http_backends]\n\"example.com\" = \"127.0.0.1:8080\"\n")
            .expect("recognised")
            .expect("valid");
        assert_eq!(two.routes.len(), 1);
        assert_eq!(two.routes[0].https, ["127.0.0.1:8443"]);
        assert_eq!(two.routes[0].http, ["127.0.0.1:8080"]);
        assert!(crate::validate(&two).is_ok());
        assert!(kiagateway("[gateway]\nname = \"x\"\n").is_none());
    }
}
