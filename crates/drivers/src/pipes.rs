//! The pipes driver: hands the plan's pipes to `kawaii-proxy`'s [`Pipes`], which applies them
//! live (new ones listen, removed ones close, other pipes' connections untouched).

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, LastApplied};
use kawaii_plan::Plan;
use kawaii_plan::pipes::{CONNECT_TIMEOUT, IDLE_TIMEOUT, PipePlan};
use kawaii_proxy::{PipeConfig, PipeStatus, Pipes, ProxyError};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct PipesDriver {
    inner: Pipes,
    last: LastApplied<Vec<PipePlan>>,
}

impl PipesDriver {
    pub fn new() -> PipesDriver {
        PipesDriver::default()
    }

    /// Per pipe: connections, bytes, errors by kind.
    pub fn status(&self) -> Vec<PipeStatus> {
        self.inner.status()
    }

    /// Stops accepting and lets connections finish, up to `drain`.
    pub async fn drain(&self, drain: Duration) {
        self.inner.shutdown(drain).await;
    }
}

impl Driver for PipesDriver {
    fn name(&self) -> DriverName {
        DriverName::Pipes
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move {
            if self.last.is(&plan.pipes) {
                return Ok(Applied::quiet());
            }
            let want = plan
                .pipes
                .iter()
                .map(|p| PipeConfig {
                    name: p.name.clone(),
                    listen: p.listen,
                    target: p.target.clone(),
                    connect_timeout: CONNECT_TIMEOUT,
                    idle_timeout: IDLE_TIMEOUT,
                })
                .collect();
            self.inner.apply(want).await.map_err(|e| match e {
                ProxyError::InvalidConfig { .. } => DriverError::rejected_from("", e),
                other => DriverError::transient_from("", other),
            })?;
            self.last.set(&plan.pipes);
            Ok(Applied::quiet())
        })
    }
}
