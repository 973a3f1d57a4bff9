//! `--store URL`: which store holds the desired state, and opening it.
//!
//! `sqlite` (the file in `--state`; `sqlite:DIR` names another directory),
//! `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, or `etcds://...` (TLS with `--store-ca`,
//! `--store-cert`, `--store-key`). etcd credentials come only from `--store-auth-file`
//! (`USER:PASSWORD` on its first line) and are never logged. Also `kawaii store copy`.

use anyhow::Context;
use kawaii_model::Secret;
use kawaii_store::{EtcdOptions, EtcdStore, EtcdTls, SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded store; `None`: the `--state` directory.
    Sqlite(Option<PathBuf>),
    Etcd {
        tls: bool,
        /// `HOST:PORT` each.
        endpoints: Vec<String>,
        /// `/kawaii/acme`: starts with `/`, no trailing `/`.
        prefix: String,
    },
}

/// The `--store*` options as given.
#[derive(Debug, Clone, Default)]
pub struct StoreArgs {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub auth_file: Option<PathBuf>,
}

pub fn parse(url: &str) -> Result<StoreUrl, String> {
    let url = url.trim();
    if url == "sqlite" {
        return Ok(StoreUrl::Sqlite(None));
    }
    if let Some(dir) = url.strip_prefix("sqlite:") {
        let dir = dir.strip_prefix("//").unwrap_or(dir);
        if dir.is_empty() {
            return Err("sqlite: names no directory".into());
        }
        return Ok(StoreUrl::Sqlite(Some(PathBuf::from(dir))));
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("etcd://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("etcds://") {
        (true, r)
    } else {
        return Err(format!(
            "{url:?} is not sqlite, sqlite:DIR, etcd://HOST:PORT[,HOST:PORT]/PREFIX or etcds://..."
        ));
    };
    let (hosts, prefix) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url:?} has no key prefix (etcd://HOST:PORT/PREFIX)"))?;
    let prefix = format!("/{}", prefix.trim_end_matches('/'));
    if prefix == "/" {
        return Err(format!(
            "{url:?} has an empty key prefix; give each gateway its own, e.g. /kawaii/acme"
        ));
    }
    if prefix.contains("//") {
        return Err(format!("key prefix {prefix:?} has an empty segment"));
    }
    let mut endpoints = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = h
            .rsplit_once(':')
            .ok_or_else(|| format!("endpoint {h:?} has no port (HOST:PORT)"))?;
        if host.is_empty() || host.trim_matches(|c| c == '[' || c == ']').is_empty() {
            return Err(format!("endpoint {h:?} has no host"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(format!(
                "endpoint {h:?}: write an IPv6 address as [ADDR]:PORT"
            ));
        }
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("endpoint {h:?}: {port:?} is not a port"))?;
        endpoints.push(h.to_string());
    }
    Ok(StoreUrl::Etcd {
        tls,
        endpoints,
        prefix,
    })
}

/// `USER:PASSWORD` on the first line that is not empty or a `#` comment.
pub fn parse_auth(text: &str) -> Result<(String, Secret), String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("the auth file is empty (expected USER:PASSWORD)")?;
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_string(), Secret::new(password)))
        }
        _ => Err("expected USER:PASSWORD".into()),
    }
}

impl StoreArgs {
    /// The same URL with no TLS files or credentials (the sqlite side of a copy).
    pub fn without_access(self) -> Self {
        StoreArgs {
            url: self.url,
            ..Default::default()
        }
    }
}

/// Opens the store `args` names. `state` is the state directory (the SQLite file, the etcd
/// cache); `cache`: whether an etcd store keeps its cache there (`serve` does, `store copy`
/// does not).
pub fn open(args: &StoreArgs, state: &Path, cache: bool) -> anyhow::Result<Arc<dyn Store>> {
    let url = parse(&args.url).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
    match url {
        StoreUrl::Sqlite(dir) => {
            for (given, flag) in [
                (&args.ca, "--store-ca"),
                (&args.cert, "--store-cert"),
                (&args.key, "--store-key"),
                (&args.auth_file, "--store-auth-file"),
            ] {
                if given.is_some() {
                    anyhow::bail!("{flag} is only for an etcd store");
                }
            }
            let dir = dir.unwrap_or_else(|| state.to_path_buf());
            let s = SqliteStore::open(&dir)
                .with_context(|| format!("opening the store in {}", dir.display()))?;
            Ok(Arc::new(s))
        }
        StoreUrl::Etcd {
            tls,
            endpoints,
            prefix,
        } => {
            let read = |p: &Option<PathBuf>, flag: &str| -> anyhow::Result<Option<Vec<u8>>> {
                p.as_ref()
                    .map(|p| std::fs::read(p).with_context(|| format!("{flag} {}", p.display())))
                    .transpose()
            };
            let tls_opts = if tls {
                let key = read(&args.key, "--store-key")?
                    .map(|k| String::from_utf8(k).context("--store-key is not PEM text"))
                    .transpose()?
                    .map(Secret::new);
                let cert = read(&args.cert, "--store-cert")?;
                if cert.is_some() != key.is_some() {
                    anyhow::bail!("--store-cert and --store-key go together");
                }
                Some(EtcdTls {
                    ca: read(&args.ca, "--store-ca")?,
                    cert,
                    key,
                })
            } else {
                if args.ca.is_some() || args.cert.is_some() || args.key.is_some() {
                    anyhow::bail!("--store-ca/--store-cert/--store-key need an etcds:// URL");
                }
                None
            };
            let user =
                match &args.auth_file {
                    Some(p) => {
                        let text = std::fs::read_to_string(p)
                            .with_context(|| format!("--store-auth-file {}", p.display()))?;
                        Some(parse_auth(&text).map_err(|e| {
                            anyhow::anyhow!("--store-auth-file {}: {e}", p.display())
                        })?)
                    }
                    None => None,
                };
            let scheme = if tls { "https" } else { "http" };
            let opts = EtcdOptions {
                endpoints: endpoints
                    .iter()
                    .map(|e| format!("{scheme}://{e}"))
                    .collect(),
                prefix,
                tls: tls_opts,
                user,
                state_dir: cache.then(|| state.to_path_buf()),
            };
            let s = EtcdStore::open(opts).context("opening the etcd store")?;
            Ok(Arc::new(s))
        }
    }
}

/// `kawaii store copy`: the document, the audit trail and the metadata from one store to
/// another; refuses a target that is not empty unless `force`.
pub fn copy(
    from: &StoreArgs,
    to: &StoreArgs,
    state: &Path,
    force: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let source = open(from, state, false).context("source store")?;
    let target = open(to, state, false).context("target store")?;
    let data = source.export().context("reading the source store")?;
    target
        .import(&data, force)
        .context("writing the target store")?;
    let check = target.export().context("reading the target store back")?;
    if check.snapshot != data.snapshot || check.audit.len() != data.audit.len() {
        anyhow::bail!("the target store does not hold what was copied");
    }
    println!(
        "copied revision {} and {} audit entries from {} to {}",
        data.snapshot.revision,
        data.audit.len(),
        from.url,
        to.url
    );
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse("sqlite"), Ok(StoreUrl::Sqlite(None)));
        assert_eq!(
            parse("sqlite:/var/lib/k"),
            Ok(StoreUrl::Sqlite(Some("/var/lib/k".into())))
        );
        assert_eq!(
            parse("sqlite:///var/lib/k"),
            Ok(StoreUrl::Sqlite(Some("/var/lib/k".into())))
        );
        assert_eq!(
            parse("etcd://10.0.0.5:2379,10.0.0.6:2379/kawaii/acme"),
            Ok(StoreUrl::Etcd {
                tls: false,
                endpoints: vec!["10.0.0.5:2379".into(), "10.0.0.6:2379".into()],
                prefix: "/kawaii/acme".into()
            })
        );
        assert_eq!(
            parse("etcds://[2001:db8::1]:2379/kawaii/acme/"),
            Ok(StoreUrl::Etcd {
                tls: true,
                endpoints: vec!["[2001:db8::1]:2379".into()],
                prefix: "/kawaii/acme".into()
            })
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("etcd://10.0.0.5:2379", "no key prefix"),
            ("etcd://10.0.0.5:2379/", "empty key prefix"),
            ("etcd://10.0.0.5/kawaii", "no port"),
            ("etcd://10.0.0.5:x/kawaii", "not a port"),
            ("etcd://:2379/kawaii", "no host"),
            ("etcd://2001:db8::1:2379/kawaii", "IPv6"),
            ("etcd://a:1/k//x", "empty segment"),
            ("redis://a:1/k", "is not sqlite"),
            ("sqlite:", "no directory"),
        ] {
            let e = parse(url).expect_err(url);
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn auth_file() {
        let (u, p) = parse_auth("# kawaii's etcd user\nkawaii:s3:cr3t\n").expect("parse");
        assert_eq!(u, "kawaii");
        assert_eq!(p.expose(), "s3:cr3t");
        assert!(!format!("{p:?}").contains("s3"));
        assert!(parse_auth("\n").is_err());
        assert!(parse_auth("nopassword").is_err());
        assert!(parse_auth(":x").is_err());
    }

    #[test]
    fn copy_between_sqlite_dirs_refuses_a_non_empty_target() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let s = SqliteStore::open(&a).expect("open");
        let mut g = kawaii_model::Gateway::default();
        g.gateway.name = "acme".into();
        let actor = kawaii_store::Actor {
            name: "ops".into(),
            action: "test".into(),
        };
        s.commit(None, &g, &actor).expect("commit");
        drop(s);
        let args = |d: &Path| StoreArgs {
            url: format!("sqlite:{}", d.display()),
            ..Default::default()
        };
        copy(&args(&a), &args(&b), tmp.path(), false).expect("copy");
        let e = copy(&args(&a), &args(&b), tmp.path(), false).expect_err("not empty");
        assert!(format!("{e:#}").contains("not empty"), "{e:#}");
        copy(&args(&a), &args(&b), tmp.path(), true).expect("forced");
        let t = SqliteStore::open(&b).expect("open");
        assert_eq!(t.current().expect("current").gateway, g);
        assert_eq!(t.audit(10).expect("audit").len(), 1);
    }
}
