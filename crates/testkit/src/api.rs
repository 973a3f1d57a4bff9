//! Typed calls to a kawaii API listening on a host's own loopback: curl runs inside the host's
//! namespace, so a request never leaves it. Bodies go out as `serde_json::Value`; replies come
//! back as a status, the headers and the body (parsed on demand).

use crate::Host;
use serde_json::Value;

/// Where `kawaii serve` listens unless its config says otherwise.
pub const DEFAULT_BASE: &str = "http://127.0.0.1:7780";

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code; 0 when curl got no answer (the reason is in `body`).
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics (naming the body) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The revision in the `ETag` header.
    pub fn etag(&self) -> Option<u64> {
        self.headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("etag:")
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
            .and_then(|v| v.parse().ok())
    }
}

/// A client of one gateway's API, as one token (or none).
#[derive(Debug, Clone)]
pub struct Api {
    host: Host,
    base: String,
    token: Option<String>,
}

impl Api {
    /// The API at [`DEFAULT_BASE`] inside `host`, sending `token` as a bearer token.
    pub fn new(host: &Host, token: Option<&str>) -> Api {
        Api {
            host: host.clone(),
            base: DEFAULT_BASE.to_string(),
            token: token.map(String::from),
        }
    }

    /// The same API as another token (or none).
    pub fn as_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(String::from),
            ..self.clone()
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(&body.to_string()), &[])
    }

    pub fn put(&self, path: &str, body: &Value) -> Reply {
        self.request("PUT", path, Some(&body.to_string()), &[])
    }

    /// PUT guarded by `If-Match` on revision `rev`.
    pub fn put_if_match(&self, path: &str, body: &Value, rev: u64) -> Reply {
        let if_match = format!("If-Match: \"{rev}\"");
        self.request("PUT", path, Some(&body.to_string()), &[&if_match])
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None, &[])
    }

    /// `GET /v1/status` as JSON.
    pub fn status(&self) -> Value {
        self.get("/v1/status").json()
    }

    /// Whether the driver `name` reports ok in `/v1/status`.
    pub fn driver_ok(&self, name: &str) -> bool {
        let r = self.get("/v1/status");
        r.status == 200
            && serde_json::from_str::<Value>(&r.body).is_ok_and(|s| {
                s["drivers"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["name"] == name && d["ok"] == true))
            })
    }

    /// Any request; `body` is sent as JSON as it is (for bodies that are meant to be wrong).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>, headers: &[&str]) -> Reply {
        let mut args: Vec<String> = ["curl", "-sS", "-i", "-X", method, "--max-time", "5"]
            .map(String::from)
            .to_vec();
        let mut header = |h: String| {
            args.push("-H".into());
            args.push(h);
        };
        if let Some(t) = &self.token {
            header(format!("Authorization: Bearer {t}"));
        }
        for h in headers {
            header((*h).into());
        }
        if let Some(b) = body {
            header("Content-Type: application/json".into());
            args.push("--data-binary".into());
            args.push(b.into());
        }
        args.push(format!("{}{path}", self.base));
        let out = match self.host.exec(&args) {
            Ok(out) => out,
            Err(e) => {
                return Reply {
                    status: 0,
                    headers: String::new(),
                    body: e.to_string(),
                };
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            headers: head.to_string(),
            body: if status == 0 {
                String::from_utf8_lossy(&out.stderr).into_owned()
            } else {
                body.to_string()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_comes_from_the_etag_header() {
        let reply = Reply {
            status: 200,
            headers: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nETag: \"42\"".into(),
            body: "{\"a\":1}".into(),
        };
        assert_eq!(reply.etag(), Some(42));
        assert_eq!(reply.json()["a"], 1);
        let none = Reply {
            headers: "HTTP/1.1 200 OK".into(),
            ..reply
        };
        assert_eq!(none.etag(), None);
    }
}
