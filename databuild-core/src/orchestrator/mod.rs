//! The orchestrator: graph.build (seed 001).
//!
//! [`Orchestrator::build`] records the request, plans it with the
//! [`Planner`], routes every task to an executor (in-process jobs to the
//! built-in [`InProcessExecutor`], others to the configured executor, by
//! labels) and to its pool, then runs the plan: a task whose inputs are
//! built gets a queued job run at once, and queued runs are launched as
//! slots allow, woken by executor updates, timers and slot releases on
//! channels (never by polling). Every transition is an event, first checked
//! against the shared [`BuildState`], so the live view is the reducer's view
//! and a log that breaks the diagrams is refused as it is written.
//!
//! What a run can go through, and the events it leaves:
//!
//! | path | events of the run |
//! |---|---|
//! | success | `job_run_queued`, `job_scheduled`, `partition_status_changed` (building), `job_run_config_validated`, `job_run_running`, `job_run_task_succeeded`, `job_run_succeeded`, `partition_status_changed` (available) |
//! | task failure | … `job_run_running`, `job_run_task_failed`, `job_run_failed`; then a retry (a new run with `attempt` + 1 and `previous_job_run_id`, after an exponential backoff with jitter) or `job_failure` |
//! | launch failure | … `job_run_config_validated`, `job_run_launch_failed`, `job_run_failed` |
//! | timeout | … `job_run_kill_requested` (source timeout), `job_run_failed` (stage timeout) once the run is gone; retried per policy |
//! | lost (no sign of life for `liveness_timeout`) | … `job_run_kill_requested`, `job_run_lost`; slots freed, later updates fenced, retried as a new attempt |
//! | missing deps | … `job_run_missing_deps`, the missing refs planned (`analyze_started` …), then a new run of the task, same attempt, linked by `previous_job_run_id` |
//! | fail fast | `job_failure`, `job_cancels`, `job_run_kill_requested` per running run, `job_run_canceled` once each is confirmed gone, `build_failed` |
//! | cancel | `job_run_kill_requested` (source user), `job_run_canceled`, `build_canceled` |
//! | buffering (a job with a [`BufferingWindow`](crate::job::BufferingWindow)) | `job_run_buffering` per ready task (no run yet; a buffer id), across requests until the window closes or `max_batch` partitions wait; then one `config` call for them all, one `job_run_queued` per returned config (a batching job returns one), `job_run_attached` for every other request waiting on it, and the run goes on as above. If the request holding the buffer ends first, the others run their partitions themselves |
//!
//! The request itself: `build_request_received`, `build_planning`, the
//! analysis, `jobs_unschedulable` (if any), `build_executing`,
//! `remaining_jobs` when the counts change, `build_heartbeat` every
//! `build_heartbeat_interval`, and `build_succeeded`, `build_failed` or
//! `build_canceled`. With [`BuildOptions::keep_going`], a failure does not
//! stop the request: what depends on the failed task is not built and the
//! rest goes on.
//!
//! Requests that overlap share runs. When a task of a request would be
//! queued, the request decides, in the same commit as the run's
//! `job_run_queued` and against the registry of what live requests are
//! building (queued and buffered runs included), whether it builds the
//! task's partitions or waits for the request that claimed them: a waiter
//! records `partition_delegated` naming that request and its run, and is
//! attached (`job_run_attached`) to every run queued for the claim (a
//! retry too). What the planner saw being built is a hint that saves a
//! `config` call, never the decision. A request ending early keeps the
//! queued or running runs another live request waits on, and cancels them
//! once none does. So at any moment at most one live run builds a
//! partition, and a partition is built once until it is tainted, its run
//! fails, is cancelled or lost, or a request forces it.
//!
//! After a restart on the same BEL, [`Orchestrator::load`] resumes the
//! requests the last orchestrator left open ([`Orchestrator::resumed`]):
//! only-queued runs go back to the queue, scheduled runs that never
//! launched are launched under their ids, started runs are re-attached when
//! the executor can recover them (else Lost, and their tasks run as the
//! next attempt). An executor's health reports (`Executor::health`) are
//! recorded as `executor_health` events.

mod buffer;
mod claims;
mod error;
mod execution;
mod recorder;
mod recovery;
mod run;
mod settings;
mod slots;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use error::BuildError;
pub use settings::OrchestratorSettings;

use execution::Control;
use slots::Slots;

use crate::bel::{BelSink, BuildEvent, Event};
use crate::clock::{Clock, IdGenerator, SystemClock, UuidV7Ids};
use crate::executor::{Executor, InProcessExecutor};
use crate::graph::{DataBuildGraph, Graph};
use crate::partition::PartitionRef;
use crate::plan::JobGraph;
use crate::planner::{Availability, PartitionStatusView, PlanError, Planner};
use crate::state::BuildState;

/// Options of one build request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Rebuild the requested partitions even when they are available.
    pub force: bool,
    /// Build everything that does not depend on a failure instead of
    /// failing fast.
    pub keep_going: bool,
}

impl BuildOptions {
    /// Sets `force`.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets `keep_going`.
    #[must_use]
    pub fn keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
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
    /// Requested partitions another live request was building: this one
    /// waited for that request's run instead of building them again.
    pub delegated: Vec<PartitionRef>,
    /// Partitions of the plan that are not available, with the reason.
    pub not_built: Vec<NotBuilt>,
    /// Whether the request was cancelled.
    pub canceled: bool,
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
    pub(crate) scratch_root: PathBuf,
    pub(crate) settings: OrchestratorSettings,
    pub(crate) slots: Slots,
    pub(crate) state: Arc<Mutex<BuildState>>,
    pub(crate) commit_lock: tokio::sync::Mutex<()>,
    /// Live build requests, by id.
    pub(crate) controls: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    /// Set once the state was rebuilt from the BEL.
    pub(crate) loaded: tokio::sync::OnceCell<()>,
    /// Partitions a live request is building, and how their task ends: what
    /// another request that needs one waits on (delegation).
    pub(crate) building: Arc<Mutex<Building>>,
    /// Requests resumed at load, not yet handed out by
    /// [`Orchestrator::resumed`].
    pub(crate) resumed: Mutex<Vec<(String, BuildTask)>>,
    /// Open buffers, by job label (see `buffer`).
    pub(crate) buffers: Mutex<HashMap<String, buffer::Buffer>>,
}

/// A build request's task.
pub(crate) type BuildTask = tokio::task::JoinHandle<Result<BuildOutcome, BuildError>>;

pub(crate) use claims::{Building, TaskEnd};

/// The catalog as the planner sees it.
///
/// A partition a live request claimed counts as being built even before
/// its run is scheduled (the catalog says `Building` only from then on), so
/// the planner does not plan it again. This is a hint: whether the request
/// waits for it or builds it is decided when its task would be queued (see
/// `claims`).
#[derive(Debug)]
struct Catalog {
    state: Arc<Mutex<BuildState>>,
    building: Arc<Mutex<Building>>,
    /// Partitions of runs a resumed request takes over: its own to plan.
    own: std::collections::HashSet<PartitionRef>,
}

impl Availability for Catalog {
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView {
        if self.own.contains(partition) {
            return PartitionStatusView::Missing;
        }
        let status = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status(partition);
        if matches!(status, PartitionStatusView::Building { .. }) {
            return status;
        }
        let claim = self
            .building
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition)
            .map(|c| c.run().unwrap_or_default());
        match claim {
            Some(job_run_id) => PartitionStatusView::Building { job_run_id },
            None => status,
        }
    }
}

impl Orchestrator {
    /// Starts an orchestrator.
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::default()
    }

    /// Rebuilds the build state (the partition catalog, runs, requests)
    /// from the BEL, if that was not done yet, and takes up what a previous
    /// orchestrator on the same BEL left unfinished: its open build
    /// requests are resumed ([`resumed`](Self::resumed) hands them out),
    /// their runs re-queued, launched under their ids, re-attached or
    /// declared lost (DESIGN.md "Exactly-once launch, re-entrance"). Every
    /// operation that needs the state does this first; calling it early
    /// makes [`state`](Self::state) reflect the log at once.
    pub async fn load(&self) -> Result<(), BuildError> {
        self.inner.ensure_loaded().await
    }

    /// The build requests a previous orchestrator on the same BEL left
    /// running, resumed by [`load`](Self::load): each goes on under its own id and options,
    /// taking over its queued and started runs. Each is handed out once;
    /// a resumed request runs to its end whether or not anyone waits on it.
    pub fn resumed(&self) -> Vec<BuildHandle> {
        std::mem::take(&mut *self.inner.resumed())
            .into_iter()
            .map(|(build_request_id, task)| BuildHandle {
                orchestrator: self.clone(),
                build_request_id,
                task,
            })
            .collect()
    }

    /// Marks partitions invalid: the next request that needs one rebuilds
    /// it (seed 001's tainting). Each becomes `Tainted` in the catalog.
    pub async fn taint(&self, partitions: &[PartitionRef]) -> Result<(), BuildError> {
        self.inner.ensure_loaded().await?;
        let now = self.inner.clock.now_ns();
        let events = partitions
            .iter()
            .map(|p| {
                BuildEvent::at(
                    now,
                    Event::PartitionStatusChanged(crate::proto::PartitionStatusChanged {
                        partition: Some(p.to_proto()),
                        status: crate::proto::PartitionStatus::Tainted as i32,
                        job_run_id: String::new(),
                    }),
                )
            })
            .collect();
        self.inner.commit(events).await
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
        self.start(requested, options).outcome().await
    }

    /// Starts building `requested` on a task of its own and returns at once
    /// with a handle that knows the request's id, can cancel it, and waits
    /// for its outcome. Needs a tokio runtime with time enabled.
    pub fn start(&self, requested: &[PartitionRef], options: BuildOptions) -> BuildHandle {
        let build = run::Build::new(Arc::clone(&self.inner), requested.to_vec(), options);
        let build_request_id = build.id.clone();
        BuildHandle {
            orchestrator: self.clone(),
            build_request_id,
            task: build.spawn(),
        }
    }

    /// Runs a plan made earlier (a saved plan, [`JobGraph::decode`]) as a
    /// new request, without analysing again: its tasks whose outputs are
    /// all available now are dropped unless `options` force them. The
    /// caller checks that the plan was made for these job definitions
    /// ([`Graph::definition_digest`](crate::Graph::definition_digest)
    /// against each task's `definition_digest`); a task whose job is not
    /// in the graph is unschedulable.
    pub fn start_plan(&self, plan: crate::plan::JobGraph, options: BuildOptions) -> BuildHandle {
        let build = run::Build::with_plan(Arc::clone(&self.inner), plan, options);
        let build_request_id = build.id.clone();
        BuildHandle {
            orchestrator: self.clone(),
            build_request_id,
            task: build.spawn(),
        }
    }

    /// Cancels a live build request: its runs are asked to stop (each
    /// escalated to a forced kill by its executor after the grace period),
    /// and `BuildCanceled` is written once they are confirmed gone.
    pub fn cancel(&self, build_request_id: &str, reason: &str) -> Result<(), BuildError> {
        self.send(
            build_request_id,
            Control::Cancel {
                reason: reason.to_owned(),
            },
        )
    }

    /// Cancels one job run of a live request. The task it ran is not
    /// built (cancellations are never retried), so the request fails (or,
    /// with keep-going, builds what does not depend on it).
    pub fn cancel_run(&self, job_run_id: &str, reason: &str) -> Result<(), BuildError> {
        let request = self
            .inner
            .lock_state()
            .run(job_run_id)
            .filter(|r| !r.state.is_terminal())
            .map(|r| r.started_by.clone())
            .ok_or_else(|| BuildError::NotLive {
                id: job_run_id.to_owned(),
            })?;
        self.send(
            &request,
            Control::CancelRun {
                job_run_id: job_run_id.to_owned(),
                reason: reason.to_owned(),
            },
        )
    }

    fn send(&self, build_request_id: &str, control: Control) -> Result<(), BuildError> {
        let controls = self.inner.controls();
        controls
            .get(build_request_id)
            .and_then(|tx| tx.send(control).ok())
            .ok_or_else(|| BuildError::NotLive {
                id: build_request_id.to_owned(),
            })
    }

    /// The ids of the build requests running now.
    pub fn live_requests(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.controls().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Runs holding slots now, and slots in use per named pool.
    pub fn slots_in_use(&self) -> (usize, BTreeMap<String, u32>) {
        self.inner.slots.in_use()
    }

    pub(crate) fn planner(inner: &Arc<Inner>) -> Planner {
        Self::planner_with(inner, std::collections::HashSet::new())
    }

    /// A planner that plans `own` as missing whatever the catalog says.
    pub(crate) fn planner_with(
        inner: &Arc<Inner>,
        own: std::collections::HashSet<PartitionRef>,
    ) -> Planner {
        Planner::new(Arc::clone(&inner.graph))
            // Analysis events take the commit path, so the build state (and
            // the rows a sink keeps) sees them.
            .with_bel(Arc::new(recorder::Recorder(Arc::clone(inner))))
            .with_clock(Arc::clone(&inner.clock))
            .with_ids(Arc::clone(&inner.ids))
            .with_availability(Arc::new(Catalog {
                state: Arc::clone(&inner.state),
                building: Arc::clone(&inner.building),
                own,
            }))
    }
}

impl Inner {
    /// Rebuilds the state from the BEL the first time it is needed, and
    /// closes what a previous orchestrator left open (see
    /// [`Orchestrator::load`]).
    pub(crate) async fn ensure_loaded(self: &Arc<Self>) -> Result<(), BuildError> {
        self.loaded
            .get_or_try_init(|| async {
                {
                    let _turn = self.commit_lock.lock().await;
                    let (state, stored) = BuildState::load_from(&*self.bel).await?;
                    // A sink that keeps the state gets it whole when what it
                    // keeps lags the log (a store written before it kept
                    // state, or by plain appends).
                    if self.bel.keeps_state() && stored != Some(state.last_seq()) {
                        self.bel
                            .save_state(state.to_rows(), state.last_seq())
                            .await?;
                    }
                    *self.lock_state() = state;
                }
                self.record_health();
                self.recover().await
            })
            .await
            .map(|_| ())
    }

    /// Records the executor's health reports as `ExecutorHealth` events,
    /// on a task of its own, for as long as the orchestrator lives.
    fn record_health(self: &Arc<Self>) {
        let Some(executor) = &self.executor else {
            return;
        };
        let Some(mut reports) = executor.health() else {
            return;
        };
        let name = executor.info().name;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(report) = reports.next().await {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let event = BuildEvent::at(
                    inner.clock.now_ns(),
                    Event::ExecutorHealth(crate::proto::ExecutorHealth {
                        executor: name.clone(),
                        engine: report.engine,
                        up: report.up,
                        detail: report.detail,
                    }),
                );
                if let Err(e) = inner.commit(vec![event]).await {
                    tracing::warn!(error = %e, "recording an executor health report failed");
                }
            }
        });
    }

    /// Of the events node `node` (a run) relayed, those not recorded yet,
    /// in the node's order, ready to append: a re-attached agent's stream
    /// starts again from its first event, and each event is recorded once.
    pub(crate) fn fresh_node_events(&self, node: &str, events: Vec<BuildEvent>) -> Vec<BuildEvent> {
        let mut last = self.lock_state().run(node).map_or(0, |r| r.relayed_seq);
        let mut fresh = Vec::with_capacity(events.len());
        for mut e in events {
            let Some(origin) = e.origin.as_mut() else {
                continue;
            };
            origin.node = node.to_owned();
            if origin.seq > last {
                last = origin.seq;
                e.seq = 0;
                fresh.push(e);
            }
        }
        fresh
    }

    /// Applies events to the build state (refusing what the diagrams do not
    /// allow), then appends them as one batch.
    pub(crate) async fn commit(&self, events: Vec<BuildEvent>) -> Result<(), BuildError> {
        self.commit_range(events).await.map(|_| ())
    }

    /// [`commit`](Self::commit), returning the seqs the batch was given
    /// (`None` for an empty batch, which is not stored).
    pub(crate) async fn commit_range(
        &self,
        events: Vec<BuildEvent>,
    ) -> Result<Option<crate::bel::SeqRange>, BuildError> {
        if events.is_empty() {
            return Ok(None);
        }
        // One commit at a time, so the state sees events in seq order.
        let _turn = self.commit_lock.lock().await;
        self.commit_in_turn(events).await
    }

    /// [`commit_range`](Self::commit_range) for a caller that holds the
    /// commit turn (`commit_lock`): it decides what to write from the
    /// registry of claims and the state, with no other commit in between.
    pub(crate) async fn commit_in_turn(
        &self,
        mut events: Vec<BuildEvent>,
    ) -> Result<Option<crate::bel::SeqRange>, BuildError> {
        if events.is_empty() {
            return Ok(None);
        }
        // The batch is checked and applied apart (work in proportion to the
        // batch), stored, then merged: the state only ever holds what the
        // log holds.
        let mut overlay = self
            .lock_state()
            .overlay(&events)
            .map_err(BuildError::Violation)?;
        // A node agent's run that ends without success closes what the
        // node left open, in the same batch (written once, here, for every
        // path a run ends by).
        let closing: Vec<BuildEvent> = events
            .iter()
            .filter(|e| {
                e.origin.is_none()
                    && matches!(
                        e.event,
                        Some(
                            Event::JobRunFailed(_)
                                | Event::JobRunLost(_)
                                | Event::JobRunCanceled(_)
                        )
                    )
            })
            .flat_map(|e| overlay.close_node(&e.job_run_id, e.timestamp_ns))
            .collect();
        for c in &closing {
            overlay.apply(c).map_err(BuildError::Violation)?;
        }
        events.extend(closing);
        let statuses = BuildState::status_positions(&events);
        let range = if self.bel.keeps_state() {
            let rows = overlay.delta_rows(&statuses);
            self.bel.append_with_state(events, rows).await?
        } else {
            self.bel.append(events).await?
        };
        self.lock_state()
            .merge(overlay, &statuses, range.first, range.last);
        Ok(Some(range))
    }

    pub(crate) fn controls(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Control>>> {
        self.controls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn resumed(&self) -> std::sync::MutexGuard<'_, Vec<(String, BuildTask)>> {
        self.resumed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn buffers(&self) -> std::sync::MutexGuard<'_, HashMap<String, buffer::Buffer>> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn building(&self) -> std::sync::MutexGuard<'_, Building> {
        self.building.lock().unwrap_or_else(|e| e.into_inner())
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
    scratch_root: Option<PathBuf>,
    parallelism: Option<usize>,
    pools: BTreeMap<String, u32>,
    settings: OrchestratorSettings,
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

    /// Runs at once, at most, over all requests (default: the number of
    /// CPUs).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = Some(n.max(1));
        self
    }

    /// A named pool with `slots` slots. A job whose hints name the pool
    /// takes its `slots` from it (on top of one unit of `parallelism`); a
    /// job naming a pool that does not exist, or needing more slots than the
    /// pool has, is unschedulable.
    pub fn pool(mut self, name: impl Into<String>, slots: u32) -> Self {
        self.pools.insert(name.into(), slots);
        self
    }

    /// Where per-request scratch directories go (default
    /// `<state_dir>/scratch`; a tmpfs such as `/dev/shm/...` makes it seed
    /// 003's in-memory store).
    pub fn scratch_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_root = Some(dir.into());
        self
    }

    /// Timeouts and intervals (see [`OrchestratorSettings`] for defaults).
    pub fn settings(mut self, settings: OrchestratorSettings) -> Self {
        self.settings = settings;
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
        self.settings.validate()?;
        if let Some((name, _)) = self.pools.iter().find(|(_, slots)| **slots == 0) {
            return Err(BuildError::InvalidSetting {
                setting: "pool",
                reason: format!("pool {name:?} has no slots"),
            });
        }
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from(".databuild"));
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                graph,
                executor: self.executor,
                in_process: Arc::new(InProcessExecutor::new()),
                bel,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                ids: self.ids.unwrap_or_else(|| Arc::new(UuidV7Ids)),
                scratch_root: self
                    .scratch_root
                    .unwrap_or_else(|| state_dir.join("scratch")),
                state_dir,
                settings: self.settings,
                slots: Slots::new(parallelism, &self.pools),
                state: Arc::default(),
                commit_lock: tokio::sync::Mutex::new(()),
                controls: Mutex::default(),
                loaded: tokio::sync::OnceCell::new(),
                building: Arc::default(),
                resumed: Mutex::default(),
                buffers: Mutex::default(),
            }),
        })
    }
}

/// A build started with [`Orchestrator::start`].
#[derive(Debug)]
pub struct BuildHandle {
    orchestrator: Orchestrator,
    build_request_id: String,
    task: BuildTask,
}

impl BuildHandle {
    /// The request's id.
    pub fn build_request_id(&self) -> &str {
        &self.build_request_id
    }

    /// Cancels the request (see [`Orchestrator::cancel`]). Cancelling a
    /// request that already ended is not an error.
    pub fn cancel(&self, reason: &str) {
        let _ = self.orchestrator.cancel(&self.build_request_id, reason);
    }

    /// Waits for the request to end.
    pub async fn outcome(self) -> Result<BuildOutcome, BuildError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(BuildError::Aborted(e.to_string())),
        }
    }
}

#[async_trait]
impl DataBuildGraph for Orchestrator {
    async fn analyze(&self, outputs: &[PartitionRef]) -> Result<JobGraph, PlanError> {
        Orchestrator::planner(&self.inner).analyze(outputs).await
    }

    async fn build(&self, outputs: &[PartitionRef]) -> Result<BuildOutcome, BuildError> {
        Orchestrator::build(self, outputs).await
    }
}

#[cfg(test)]
mod tests;
