//! Real services for test hosts: nginx serving one page.

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
