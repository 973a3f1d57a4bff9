//! The state directory's permissions: the directory is 0700 and every file in it 0600, because
//! the store holds secrets (IPsec PSKs, keys) in clear. Wider modes found on an existing
//! directory are tightened, and the log says so.

use crate::StoreError;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use tracing::warn;

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

/// Creates `dir` (0700) if needed, then tightens it to 0700, its subdirectories to 0700 and its
/// regular files to 0600. Sockets and symlinks are left alone.
pub fn secure_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))?;
    tighten(dir, 0o700)?;
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            tighten(&path, 0o700)?;
        } else if kind.is_file() {
            tighten(&path, 0o600)?;
        }
    }
    Ok(())
}

fn tighten(path: &Path, want: u32) -> Result<(), StoreError> {
    let mode = fs::metadata(path)
        .map_err(|e| io(path, e))?
        .permissions()
        .mode()
        & 0o7777;
    if mode != want {
        fs::set_permissions(path, fs::Permissions::from_mode(want)).map_err(|e| io(path, e))?;
        warn!(
            path = %path.display(),
            was = format!("{mode:04o}"),
            now = format!("{want:04o}"),
            "state directory entry had wider permissions; tightened"
        );
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist (so that SQLite, which gives its
/// WAL and shm files the database file's mode, never creates a world-readable file).
pub fn create_private(path: &Path) -> Result<(), StoreError> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}

/// Replaces `path` with `bytes` atomically (a 0600 temporary file renamed over it).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn wide_modes_are_tightened_and_new_files_are_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(dir.join("old.db"), "x").expect("write");
        fs::set_permissions(dir.join("old.db"), fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::create_dir(dir.join("sub")).expect("mkdir");
        fs::set_permissions(dir.join("sub"), fs::Permissions::from_mode(0o755)).expect("chmod");
        secure_dir(&dir).expect("secure");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("old.db")), 0o600);
        assert_eq!(mode(&dir.join("sub")), 0o700);
        create_private(&dir.join("new.db")).expect("create");
        assert_eq!(mode(&dir.join("new.db")), 0o600);
        write_private(&dir.join("cache.json"), b"{}").expect("write");
        assert_eq!(mode(&dir.join("cache.json")), 0o600);
        assert_eq!(fs::read(dir.join("cache.json")).expect("read"), b"{}");
    }
}
