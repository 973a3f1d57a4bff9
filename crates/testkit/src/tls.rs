//! A throwaway PKI for tests, made by the `openssl` tool: a CA, a server certificate for
//! 127.0.0.1 and a client certificate it signed, all valid for a day, keys mode 0600.

use crate::{KitError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ca.pem`, `server.pem` + `server.key`, `client.pem` + `client.key` in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes the files in `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir).map_err(|error| KitError::Spawn {
            cmd: format!("mkdir {}", dir.display()),
            error,
        })?;
        let openssl = |args: &[&str]| -> Result<()> {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(dir);
            crate::output(cmd, None).map(drop)
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = [
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=kawaii test CA",
        ];
        openssl(&[&["req", "-x509"][..], &ec, &ca].concat())?;
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let file = |suffix: &str| format!("{name}.{suffix}");
            let write = |p: PathBuf, text: &str| {
                std::fs::write(&p, text).map_err(|error| KitError::Spawn {
                    cmd: format!("write {}", p.display()),
                    error,
                })
            };
            write(dir.join(file("ext")), ext)?;
            let subj = format!("/CN={name}");
            let (key, csr) = (file("key"), file("csr"));
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &["-keyout", &key, "-out", &csr, "-subj", &subj],
                ]
                .concat(),
            )?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &file("pem"),
                "-days",
                "1",
                "-extfile",
                &file("ext"),
            ])?;
            use std::os::unix::fs::PermissionsExt;
            let key = dir.join(key);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(
                |error| KitError::Spawn {
                    cmd: format!("chmod 600 {}", key.display()),
                    error,
                },
            )?;
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// One of the files, e.g. `ca.pem`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
