//! Real services for test hosts: nginx serving one page; self-signed certificates for TLS
//! backends (`openssl s_server`) and what a TLS client sees of them.

use crate::{Host, KitError, Result, Topology, wait_tcp};
use std::time::Duration;

/// Starts nginx in `host` on port 80 serving `page` at `/`; waits until it listens on `ip`.
pub fn nginx(t: &mut Topology, host: &Host, ip: &str, page: &str) -> Result<usize> {
    let dir = t.dir().join(format!("nginx-{}", host.name));
    let www = dir.join("www");
    let err = |error| KitError::Spawn {
        cmd: "write nginx files".into(),
        error,
    };
    std::fs::create_dir_all(&www).map_err(err)?;
    std::fs::write(www.join("index.html"), page).map_err(err)?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{ listen 80; root {d}/www; location / {{ }} }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(err)?;
    let i = t.spawn(
        host,
        &format!("nginx-{}", host.name),
        &["nginx", "-c", &path.to_string_lossy()],
    )?;
    wait_tcp(
        host,
        format!("{ip}:80").parse().expect("an IPv4 address"),
        Duration::from_secs(10),
    )?;
    Ok(i)
}

/// A self-signed certificate for `name` in `dir` (`NAME.crt`, `NAME.key`); their paths.
pub fn self_signed(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let mut openssl = std::process::Command::new("openssl");
    openssl
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt);
    crate::output(openssl, None).unwrap_or_else(|e| panic!("{e}"));
    (crt.to_string_lossy().into(), key.to_string_lossy().into())
}

/// The certificate subject a TLS client in `host` sees for `name` at `addr` (`ip:port`, an
/// IPv6 address in brackets).
pub fn tls_subject(host: &Host, addr: &str, name: &str) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -subject"
    );
    host.sh(&script).unwrap_or_default()
}
