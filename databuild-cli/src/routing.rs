//! One executor made of two: runs of jobs that name an image go to the
//! Docker executor, the others to the local one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use databuild_core::executor::{
    Capabilities, ExecutorInfo, HealthReport, RunUpdates, SurvivingRun,
};
use databuild_core::{Executor, ExecutorError, JobRunSpec, Launch};
use futures::stream::BoxStream;

/// Routes each run by its job's launch description: an image sends it to
/// `containers`, no image to `processes`. Runs are remembered by id, so
/// cancel, re-attach and forget reach the backend that has the run.
#[derive(Debug)]
pub struct Routed {
    processes: Arc<dyn Executor>,
    containers: Arc<dyn Executor>,
    owners: Mutex<HashMap<String, bool>>,
}

impl Routed {
    /// Routes between a process backend and a container backend.
    pub fn new(processes: Arc<dyn Executor>, containers: Arc<dyn Executor>) -> Self {
        Self {
            processes,
            containers,
            owners: Mutex::default(),
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend that has `job_run_id`, if known.
    fn owner(&self, job_run_id: &str) -> Option<&Arc<dyn Executor>> {
        self.owners().get(job_run_id).map(|&c| self.pick(c))
    }

    fn pick(&self, containers: bool) -> &Arc<dyn Executor> {
        if containers {
            &self.containers
        } else {
            &self.processes
        }
    }
}

#[async_trait]
impl Executor for Routed {
    fn info(&self) -> ExecutorInfo {
        let (p, c) = (self.processes.info(), self.containers.info());
        let capabilities = Capabilities::default()
            .with_cancel(p.capabilities.can_cancel && c.capabilities.can_cancel)
            .with_recover(p.capabilities.can_recover && c.capabilities.can_recover)
            .with_heartbeats(
                p.capabilities.reports_heartbeats && c.capabilities.reports_heartbeats,
            );
        let mut info = ExecutorInfo::new(format!("{}+{}", p.name, c.name), capabilities);
        // Labels both sides carry alike.
        info.labels = p
            .labels
            .into_iter()
            .filter(|(k, v)| c.labels.get(k) == Some(v))
            .collect();
        info
    }

    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
        let containers = match &spec.launch {
            Launch::Process(p) => p.image.is_some(),
            Launch::Subgraph(_) => true,
            _ => false,
        };
        self.owners().insert(spec.job_run_id.clone(), containers);
        self.pick(containers).launch(spec).await
    }

    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
        match self.owner(job_run_id) {
            Some(e) => e.cancel(job_run_id, reason).await,
            None => Err(ExecutorError::UnknownRun {
                job_run_id: job_run_id.to_owned(),
            }),
        }
    }

    async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
        let mut all = Vec::new();
        for containers in [false, true] {
            let runs = self.pick(containers).list_runs().await?;
            let mut owners = self.owners();
            for r in &runs {
                owners.insert(r.job_run_id.clone(), containers);
            }
            drop(owners);
            all.extend(runs);
        }
        Ok(all)
    }

    async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
        match self.owner(job_run_id) {
            Some(e) => e.reattach(job_run_id).await,
            None => Err(ExecutorError::UnknownRun {
                job_run_id: job_run_id.to_owned(),
            }),
        }
    }

    async fn forget(&self, job_run_id: &str) -> Result<(), ExecutorError> {
        let owner = self.owners().remove(job_run_id);
        match owner {
            Some(c) => self.pick(c).forget(job_run_id).await,
            None => {
                self.processes.forget(job_run_id).await?;
                self.containers.forget(job_run_id).await
            }
        }
    }

    fn health(&self) -> Option<BoxStream<'static, HealthReport>> {
        match (self.processes.health(), self.containers.health()) {
            (Some(a), Some(b)) => Some(Box::pin(futures::stream::select(a, b))),
            (a, b) => a.or(b),
        }
    }
}
