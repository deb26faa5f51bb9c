//! Executors: where job runs run.
//!
//! An [`Executor`] launches a job run from a [`JobRunSpec`] and reports its
//! life as a stream of [`RunUpdate`]s: running (with a handle such as a
//! pid), heartbeats, and one exit with a classified [`Outcome`]. Backends
//! live in their own crates (local processes, Docker); core holds the trait,
//! the pieces every backend shares so that runs end the same way everywhere
//! ([`OutputScanner`] for the protocol's marker lines and outcome
//! classification, [`RunLog`] for the per-run log file), and the
//! [`InProcessExecutor`] for [`FnJob`](crate::FnJob)s.
//!
//! Cross-cutting behaviour (retries, pools, timeouts, liveness) is the
//! orchestrator's, written once, not each backend's.

mod error;
mod in_process;
mod log;
mod outcome;
mod scanner;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use error::ExecutorError;
pub use in_process::InProcessExecutor;
pub use log::{LineSplitter, LogRecord, RunLog, Stream, log_path};
pub use outcome::{ExitStatus, Outcome};
pub use scanner::{LineKind, OutputScanner};

use crate::job::{JobConfig, JobLabel, Launch};

/// Everything an executor needs to launch one job run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobRunSpec {
    /// The run's id (UUID v7): the launch key, the log file's name.
    pub job_run_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The run this one retries or reruns, if any.
    pub previous_job_run_id: Option<String>,
    /// The build request that started the run.
    pub build_request_id: String,
    /// The job.
    pub job: JobLabel,
    /// The configuration to run.
    pub config: JobConfig,
    /// How to launch it.
    pub launch: Launch,
    /// Where the run's log goes.
    pub log_path: PathBuf,
    /// The request's shared scratch directory, if there is one.
    pub scratch_dir: Option<PathBuf>,
}

impl JobRunSpec {
    /// A spec with no previous run, no scratch directory, attempt 1.
    pub fn new(
        job_run_id: impl Into<String>,
        build_request_id: impl Into<String>,
        job: JobLabel,
        config: JobConfig,
        launch: Launch,
        log_path: PathBuf,
    ) -> Self {
        Self {
            job_run_id: job_run_id.into(),
            attempt: 1,
            previous_job_run_id: None,
            build_request_id: build_request_id.into(),
            job,
            config,
            launch,
            log_path,
            scratch_dir: None,
        }
    }

    /// Largest `DATABUILD_OUTPUTS` value passed; beyond it the variable is
    /// left out (the config file always has the outputs).
    pub const MAX_OUTPUTS_ENV: usize = 64 << 10;

    /// The `DATABUILD_*` variables a run receives (DESIGN's list), except
    /// `DATABUILD_CONFIG_FILE`, whose path the backend chooses.
    pub fn databuild_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("DATABUILD_JOB_RUN_ID".into(), self.job_run_id.clone());
        env.insert("DATABUILD_JOB_LABEL".into(), self.job.to_string());
        env.insert(
            "DATABUILD_BUILD_REQUEST_ID".into(),
            self.build_request_id.clone(),
        );
        env.insert("DATABUILD_ATTEMPT".into(), self.attempt.to_string());
        let outputs: Vec<&str> = self.config.outputs.iter().map(|o| o.as_str()).collect();
        if let Ok(json) = serde_json::to_string(&outputs)
            && json.len() <= Self::MAX_OUTPUTS_ENV
        {
            env.insert("DATABUILD_OUTPUTS".into(), json);
        }
        if let Some(dir) = &self.scratch_dir {
            env.insert(
                "DATABUILD_SCRATCH_DIR".into(),
                dir.to_string_lossy().into_owned(),
            );
        }
        env
    }
}

/// One event in a job run's life, as its executor reports it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunUpdate {
    /// The run started; `handle` identifies it to the backend (a pid, a
    /// container id).
    Running {
        /// The backend's handle.
        handle: String,
    },
    /// A sign of life, with resource use where the backend can measure it.
    Heartbeat {
        /// CPU time used so far, in milliseconds.
        cpu_ms: Option<u64>,
        /// Resident memory in bytes.
        rss_bytes: Option<u64>,
    },
    /// Events a node agent recorded while running this run's subplan
    /// (see [`Launch::Subgraph`]), in the
    /// agent's order, each with its `origin`: the node (this run's id) and
    /// the event's seq on that node. The orchestrator appends them to its
    /// log, leaving out those it recorded already (a re-attached stream
    /// starts again from the agent's first event), and counts them as a
    /// sign of life.
    NodeEvents(Vec<crate::bel::BuildEvent>),
    /// The run ended. Always the last update.
    Exited(Outcome),
}

/// A run's updates, ending with [`RunUpdate::Exited`].
pub type RunUpdates = BoxStream<'static, RunUpdate>;

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// It can stop a run on request.
    pub can_cancel: bool,
    /// It can list and re-attach to runs that outlived an orchestrator.
    pub can_recover: bool,
    /// Runs see a file system of their own (containers).
    pub isolated_fs: bool,
    /// It reports heartbeats of its own (it observes its runs: process
    /// samples, container state). The orchestrator then watches liveness:
    /// a run with no update for `liveness_timeout` is Lost.
    pub reports_heartbeats: bool,
    /// It forwards each job's output as signs of life: any stdout or stderr
    /// line, and `__DATABUILD_HEARTBEAT__` lines (which are never logged as
    /// output), each reported as a [`RunUpdate::Heartbeat`] with no
    /// samples. A backend that cannot observe its runs relies on these;
    /// liveness is watched as for [`reports_heartbeats`](Self::reports_heartbeats),
    /// so a silent job there is Lost after `liveness_timeout`.
    pub output_signs_of_life: bool,
}

impl Capabilities {
    /// Sets whether runs can be stopped on request.
    #[must_use]
    pub fn with_cancel(mut self, yes: bool) -> Self {
        self.can_cancel = yes;
        self
    }

    /// Sets whether runs can be recovered after the orchestrator.
    #[must_use]
    pub fn with_recover(mut self, yes: bool) -> Self {
        self.can_recover = yes;
        self
    }

    /// Sets whether runs see a file system of their own.
    #[must_use]
    pub fn with_isolated_fs(mut self, yes: bool) -> Self {
        self.isolated_fs = yes;
        self
    }

    /// Sets whether the backend reports heartbeats of its own.
    #[must_use]
    pub fn with_heartbeats(mut self, yes: bool) -> Self {
        self.reports_heartbeats = yes;
        self
    }

    /// Sets whether the backend forwards job output lines as signs of life.
    #[must_use]
    pub fn with_output_signs_of_life(mut self, yes: bool) -> Self {
        self.output_signs_of_life = yes;
        self
    }

    /// Whether the orchestrator can watch its runs' liveness (it reports
    /// heartbeats, or forwards output as signs of life).
    pub fn watches_liveness(&self) -> bool {
        self.reports_heartbeats || self.output_signs_of_life
    }
}

/// A backend's name, capabilities and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutorInfo {
    /// The backend's name (`local`, `docker`, `in-process`).
    pub name: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Labels matched against tasks' label requirements (`os=linux`),
    /// common to every place the backend runs work.
    pub labels: BTreeMap<String, String>,
    /// The labels of each place a run can go, for a backend with several
    /// (a Docker engine each, say): a task goes to the backend when one
    /// place's labels, with [`labels`](Self::labels), meet its
    /// requirements, and the backend then runs it on such a place. Empty
    /// when the backend is one place.
    pub placements: Vec<BTreeMap<String, String>>,
}

impl ExecutorInfo {
    /// Info with a name, capabilities and no labels.
    pub fn new(name: impl Into<String>, capabilities: Capabilities) -> Self {
        Self {
            name: name.into(),
            capabilities,
            labels: BTreeMap::new(),
            placements: Vec::new(),
        }
    }

    /// Whether a run with these label requirements can go here, or the
    /// first requirement that the place closest to meeting them misses
    /// (`(key, wanted value)`).
    pub fn can_take<'a>(
        &self,
        requirements: &'a BTreeMap<String, String>,
    ) -> Result<(), (&'a str, &'a str)> {
        let missing_in = |place: Option<&BTreeMap<String, String>>| -> Vec<(&'a str, &'a str)> {
            requirements
                .iter()
                .filter(|(k, v)| {
                    let here = place
                        .and_then(|p| p.get(*k))
                        .or_else(|| self.labels.get(*k));
                    here != Some(*v)
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        };
        let candidates: Vec<Vec<(&str, &str)>> = if self.placements.is_empty() {
            vec![missing_in(None)]
        } else {
            self.placements
                .iter()
                .map(|p| missing_in(Some(p)))
                .collect()
        };
        match candidates.into_iter().min_by_key(Vec::len) {
            Some(missing) if !missing.is_empty() => Err(missing[0]),
            _ => Ok(()),
        }
    }
}

/// Whether `labels` meet every requirement: for a backend choosing among
/// its places (engines) at launch.
pub fn labels_meet(
    labels: &BTreeMap<String, String>,
    requirements: &BTreeMap<String, String>,
) -> bool {
    requirements.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A run that outlived the orchestrator, as a recovering backend lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SurvivingRun {
    /// The run's id.
    pub job_run_id: String,
    /// Whether it is still running.
    pub running: bool,
}

impl SurvivingRun {
    /// A run that outlived an orchestrator.
    pub fn new(job_run_id: impl Into<String>, running: bool) -> Self {
        Self {
            job_run_id: job_run_id.into(),
            running,
        }
    }
}

/// Where job runs run. Object-safe; held as `Arc<dyn Executor>`.
///
/// Contract: `launch` starts the run and returns its updates, which end with
/// exactly one [`RunUpdate::Exited`]. `cancel` asks the run to stop (the
/// backend escalates to a forced kill after its grace period); the run's
/// stream then ends with [`Outcome::Canceled`] once the work is confirmed
/// gone. Optional operations default to [`ExecutorError::Unsupported`].
#[async_trait]
pub trait Executor: Send + Sync + fmt::Debug {
    /// The backend's name, capabilities and labels.
    fn info(&self) -> ExecutorInfo;

    /// Launches a run.
    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError>;

    /// Asks a run to stop.
    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError>;

    /// Runs that outlived an orchestrator (recovering backends only).
    async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
        Err(ExecutorError::Unsupported {
            operation: "list_runs",
            backend: self.info().name,
        })
    }

    /// Re-attaches to a run that outlived an orchestrator.
    async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
        let _ = job_run_id;
        Err(ExecutorError::Unsupported {
            operation: "reattach",
            backend: self.info().name,
        })
    }

    /// The orchestrator has recorded the run's end: what a recovering
    /// backend kept so the run could be re-attached may go. The default
    /// keeps nothing, so it does nothing.
    async fn forget(&self, job_run_id: &str) -> Result<(), ExecutorError> {
        let _ = job_run_id;
        Ok(())
    }

    /// Changes in the health of the backend or its engines (an engine that
    /// stopped answering, or came back), which the orchestrator records as
    /// `ExecutorHealth` events. Each call is a new subscription. The
    /// default reports nothing.
    fn health(&self) -> Option<BoxStream<'static, HealthReport>> {
        None
    }
}

/// A change in the health of an executor or one of its engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The engine (empty for the executor as a whole).
    pub engine: String,
    /// Whether it answers now.
    pub up: bool,
    /// What was seen.
    pub detail: String,
}

macro_rules! forward_executor {
    ($($ptr:ty),*) => {$(
        #[async_trait]
        impl<T: Executor + ?Sized> Executor for $ptr {
            fn info(&self) -> ExecutorInfo {
                (**self).info()
            }
            async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
                (**self).launch(spec).await
            }
            async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
                (**self).cancel(job_run_id, reason).await
            }
            async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
                (**self).list_runs().await
            }
            async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
                (**self).reattach(job_run_id).await
            }
            async fn forget(&self, job_run_id: &str) -> Result<(), ExecutorError> {
                (**self).forget(job_run_id).await
            }
            fn health(&self) -> Option<BoxStream<'static, HealthReport>> {
                (**self).health()
            }
        }
    )*};
}

forward_executor!(std::sync::Arc<T>, Box<T>, &T);
