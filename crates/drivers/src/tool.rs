//! Running system tools (`nft`, `ip`) with input on stdin and a bounded wait.

use crate::DriverError;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `prog args` with `input` on stdin; stdout on success, stderr in the error.
pub(crate) async fn run(
    prog: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, DriverError> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::transient_from(format!("cannot run {prog}"), e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| DriverError::transient_from(format!("{prog}: writing stdin"), e))?;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| DriverError::transient(format!("{prog} {} timed out", args.join(" "))))?
        .map_err(|e| DriverError::transient_from(prog, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(DriverError::rejected(format!(
            "{prog} {}: {}",
            args.join(" "),
            err.trim()
        )))
    }
}
