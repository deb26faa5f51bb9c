//! The orchestrator: graph.build (seed 001).
//!
//! [`Orchestrator::build`] records the request, plans it with the
//! [`Planner`], routes every task to an executor (in-process jobs to the
//! built-in [`InProcessExecutor`], others to the configured executor), then
//! runs the plan: ready tasks (all inputs built) are queued and launched as
//! slots allow, woken by executor updates on a channel (never by polling),
//! and every transition is an event. Each event is first applied to the
//! shared [`BuildState`], so the live view is the reducer's view and a log
//! that breaks the diagrams is refused as it is written.
//!
//! This first slice covers: a global parallelism limit, success and failure
//! chains of the job.exec diagram, launch failures, retries per the job's
//! policy (a new run with `attempt` and `previous_job_run_id`, after an
//! exponential backoff with jitter; cancellations are never retried),
//! fail-fast (a failure cancels the request's other runs, waits for their
//! confirmation, then fails the build), and the [`BuildOutcome`]. Still to
//! come (issue #3): named pools, timeouts, liveness and Lost, reruns
//! after missing deps (today a `MissingDeps` run fails its task), keep-going,
//! the scratch directory, and build heartbeats.

mod error;
mod run;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use error::BuildError;

use crate::bel::{BelSink, BuildEvent, Event};
use crate::clock::{Clock, IdGenerator, SystemClock, UuidV7Ids};
use crate::executor::{Executor, InProcessExecutor};
use crate::graph::Graph;
use crate::partition::PartitionRef;
use crate::planner::{Availability, PartitionStatusView, Planner};
use crate::state::BuildState;

/// Options of one build request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Rebuild the requested partitions even when they are available.
    pub force: bool,
}

impl BuildOptions {
    /// Sets `force`.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// A partition a build did not produce, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotBuilt {
    /// The partition.
    pub partition: PartitionRef,
    /// Why it is not available.
    pub reason: String,
}

/// What a build request did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildOutcome {
    /// The request's id.
    pub build_request_id: String,
    /// Partitions built by this request's runs.
    pub built: Vec<PartitionRef>,
    /// Partitions that were already available and not rebuilt.
    pub skipped: Vec<PartitionRef>,
    /// Partitions of the plan that are not available, with the reason.
    pub not_built: Vec<NotBuilt>,
}

impl BuildOutcome {
    /// True when everything asked for is available.
    pub fn succeeded(&self) -> bool {
        self.not_built.is_empty()
    }
}

/// Plans and runs builds. Clones share one orchestrator.
#[derive(Debug, Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) graph: Arc<Graph>,
    pub(crate) executor: Option<Arc<dyn Executor>>,
    pub(crate) in_process: Arc<dyn Executor>,
    pub(crate) bel: Arc<dyn BelSink>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) state_dir: PathBuf,
    pub(crate) parallelism: usize,
    pub(crate) state: Arc<Mutex<BuildState>>,
    pub(crate) commit_lock: tokio::sync::Mutex<()>,
}

/// The catalog as the planner sees it.
#[derive(Debug)]
struct Catalog(Arc<Mutex<BuildState>>);

impl Availability for Catalog {
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status(partition)
    }
}

impl Orchestrator {
    /// Starts an orchestrator.
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::default()
    }

    /// A snapshot of the build state (catalog, runs, requests).
    pub fn state(&self) -> BuildState {
        self.inner.lock_state().clone()
    }

    /// Builds `requested` with default options.
    pub async fn build(&self, requested: &[PartitionRef]) -> Result<BuildOutcome, BuildError> {
        self.build_with(requested, BuildOptions::default()).await
    }

    /// Builds `requested`. A build that ran returns `Ok` whether or not it
    /// succeeded (see [`BuildOutcome::succeeded`]); `Err` means it could not
    /// run: a planning error, unschedulable tasks, or a failing event log.
    pub async fn build_with(
        &self,
        requested: &[PartitionRef],
        options: BuildOptions,
    ) -> Result<BuildOutcome, BuildError> {
        run::Build::new(Arc::clone(&self.inner), requested.to_vec(), options)
            .run()
            .await
    }

    pub(crate) fn planner(inner: &Inner) -> Planner {
        Planner::new(Arc::clone(&inner.graph))
            .with_bel(Arc::clone(&inner.bel))
            .with_clock(Arc::clone(&inner.clock))
            .with_ids(Arc::clone(&inner.ids))
            .with_availability(Arc::new(Catalog(Arc::clone(&inner.state))))
    }
}

impl Inner {
    /// Applies events to the build state (refusing what the diagrams do not
    /// allow), then appends them as one batch.
    pub(crate) async fn commit(&self, mut events: Vec<BuildEvent>) -> Result<(), BuildError> {
        if events.is_empty() {
            return Ok(());
        }
        // One commit at a time, so the state sees events in seq order.
        let _turn = self.commit_lock.lock().await;
        {
            let mut check = self.lock_state().clone();
            for e in &events {
                check.apply(e).map_err(BuildError::Violation)?;
            }
        }
        let range = self.bel.append(events.clone()).await?;
        let mut state = self.lock_state();
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = range.first + i as u64;
            state.apply(e).map_err(BuildError::Violation)?;
        }
        Ok(())
    }

    pub(crate) fn lock_state(&self) -> std::sync::MutexGuard<'_, BuildState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn event(&self, request: &str, job_run_id: &str, event: Event) -> BuildEvent {
        BuildEvent::at(self.clock.now_ns(), event)
            .for_request(request)
            .for_job_run(job_run_id)
    }
}

/// Builds an [`Orchestrator`].
#[derive(Debug, Default)]
#[must_use]
pub struct OrchestratorBuilder {
    graph: Option<Arc<Graph>>,
    executor: Option<Arc<dyn Executor>>,
    bel: Option<Arc<dyn BelSink>>,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn IdGenerator>>,
    state_dir: Option<PathBuf>,
    parallelism: Option<usize>,
}

impl OrchestratorBuilder {
    /// The graph to build from (required).
    pub fn graph(mut self, graph: impl Into<Arc<Graph>>) -> Self {
        self.graph = Some(graph.into());
        self
    }

    /// The executor for process jobs (in-process jobs need none).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// The build event log (required).
    pub fn bel(mut self, bel: Arc<dyn BelSink>) -> Self {
        self.bel = Some(bel);
        self
    }

    /// The clock for event timestamps (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The id generator for requests and runs (default: UUID v7).
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = Some(ids);
        self
    }

    /// Where run logs go (default `.databuild`).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Runs at once, at most (default: the number of CPUs).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = Some(n.max(1));
        self
    }

    /// Checks the settings and builds the orchestrator.
    pub fn build(self) -> Result<Orchestrator, BuildError> {
        let graph = self
            .graph
            .ok_or(BuildError::MissingSetting { setting: "graph" })?;
        let bel = self
            .bel
            .ok_or(BuildError::MissingSetting { setting: "bel" })?;
        let parallelism = self.parallelism.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                graph,
                executor: self.executor,
                in_process: Arc::new(InProcessExecutor::new()),
                bel,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                ids: self.ids.unwrap_or_else(|| Arc::new(UuidV7Ids)),
                state_dir: self
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from(".databuild")),
                parallelism,
                state: Arc::default(),
                commit_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

#[cfg(test)]
mod tests;
