//! What the drivers that run a system daemon (charon, conntrackd) share: the supervisor task
//! and its stop signal, the restart backoff, the private state directory, the output file and
//! a polite stop (SIGTERM, then SIGKILL). Each driver keeps only what is its daemon's own.

use crate::DriverError;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tracing::warn;

/// The task that keeps a daemon running, started on the first apply and stopped on shutdown.
pub(crate) struct Supervisor {
    stop: watch::Sender<bool>,
    task: StdMutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Supervisor {
    pub(crate) fn new() -> Supervisor {
        Supervisor {
            stop: watch::channel(false).0,
            task: StdMutex::new(None),
        }
    }

    /// The stop signal the supervising task watches.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Starts the task unless it runs already.
    pub(crate) fn ensure<F>(&self, task: impl FnOnce() -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(mut slot) = self.task.lock() else {
            return;
        };
        if slot.is_none() {
            *slot = Some(tokio::spawn(task()));
        }
    }

    /// Whether the task was started (and not shut down).
    pub(crate) fn started(&self) -> bool {
        self.task.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Signals stop and waits (at most 5 s) for the task to stop its daemon.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut s| s.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Restart delays: doubling from `first` up to `max`, back to `first` after a life longer
/// than `reset_after` (a daemon that ran a while and died is restarted at once).
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    reset_after: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration, reset_after: Duration) -> Backoff {
        Backoff {
            first,
            max,
            reset_after,
            next: first,
        }
    }

    /// After a clean reconfiguration: the next start is immediate-ish again.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay before the next start, after a life that lasted `lived`.
    fn delay(&mut self, lived: Duration) -> Duration {
        if lived > self.reset_after {
            self.next = self.first;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Waits before restarting `daemon`, whose last life began at `started`. False: stop was
    /// signalled meanwhile.
    pub(crate) async fn wait(
        &mut self,
        daemon: &str,
        started: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let delay = self.delay(started.elapsed());
        warn!(
            backoff_ms = delay.as_millis() as u64,
            "{daemon} is down; restarting it"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop.changed() => false,
        }
    }
}

/// The daemon's binary: `$env` when set (tests, unusual installs), else `default`.
pub(crate) fn binary(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Writes `contents` to `dir/file`, creating `dir` (mode 0700) first.
pub(crate) fn write_private(
    dir: &Path,
    file: &str,
    contents: &str,
    error: impl Fn(String) -> DriverError,
) -> Result<PathBuf, DriverError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| error(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(file);
    std::fs::write(&path, contents)
        .map_err(|e| error(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

/// `dir/name`, opened for appending, as a child's stdout and stderr.
pub(crate) fn output(
    dir: &Path,
    name: &str,
    error: impl Fn(String) -> DriverError,
) -> Result<(Stdio, Stdio), DriverError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(|e| error(format!("{name}: {e}")))?;
    let err = out.try_clone().map_err(|e| error(format!("{name}: {e}")))?;
    Ok((out.into(), err.into()))
}

/// SIGTERM, so the daemon cleans up after itself, then SIGKILL after `grace`.
pub(crate) async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    grace: Duration,
) {
    if let Some(pid) = pid {
        let _ = crate::tool::run("kill", &["-TERM", &pid.to_string()], None).await;
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_long_life() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(300), Duration::from_secs(30));
        let short: Vec<_> = (0..4).map(|_| b.delay(ms(10)).as_millis()).collect();
        assert_eq!(short, [100, 200, 300, 300]);
        assert_eq!(b.delay(Duration::from_secs(31)), ms(100));
        assert_eq!(b.delay(ms(10)), ms(200));
        b.reset();
        assert_eq!(b.delay(ms(10)), ms(100));
    }

    #[tokio::test]
    async fn backoff_stops_when_asked() {
        let mut b = Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        let (tx, mut stop) = watch::channel(false);
        let waiting = tokio::spawn(async move { b.wait("test", Instant::now(), &mut stop).await });
        tx.send_replace(true);
        assert!(!waiting.await.unwrap());
    }

    #[tokio::test]
    async fn the_supervisor_runs_one_task_and_waits_for_it_on_shutdown() {
        let sup = Supervisor::new();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let mut stop = sup.stopping();
        sup.ensure(|| async move {
            let _ = stop.changed().await;
            let _ = done_tx.send(());
        });
        // A second ensure while the first runs starts nothing.
        sup.ensure(|| async { panic!("started twice") });
        sup.shutdown().await;
        assert!(done.await.is_ok());
    }

    #[test]
    fn private_files_live_in_a_private_directory() {
        let dir = std::env::temp_dir().join(format!("kawaii-child-{}", std::process::id()));
        let path = write_private(&dir, "x.conf", "a = 1\n", DriverError::transient).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
