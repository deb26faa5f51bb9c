//! `BuildState`: a pure, deterministic reducer over build events.
//!
//! It holds the partition catalog, the job runs with their attempts and
//! states, the build requests, and which requests wait on which runs. The
//! orchestrator's live view and the view rebuilt from the log after a
//! restart are the same code: both are [`BuildState::apply`] over the same
//! events. Applying an event the seeds' diagrams do not allow is a
//! [`Violation`], so the reducer is also the checker of a log's job-run
//! lifecycle (seed 000 and job.exec in seed 001):
//!
//! | run state | events that may follow |
//! |---|---|
//! | (none) | `job_run_queued` |
//! | Queued | `job_scheduled`, `job_run_canceled` |
//! | Scheduled | `job_run_config_validated`, `job_run_config_invalid`, `job_run_running`, `job_run_launch_failed`, `job_run_lost`, `job_run_canceled` |
//! | Running | `job_run_heartbeat`, `job_run_task_succeeded`, `job_run_task_failed`, `job_run_missing_deps`, `job_run_failed` (timeout), `job_run_lost`, `job_run_canceled` |
//! | TaskSucceeded | `job_run_succeeded`, `job_run_metadata_failed` |
//! | Failing (after a launch, config, task or metadata failure) | `job_run_failed` |
//! | Succeeded, Failed, MissingDeps, Canceled, Lost | nothing: later updates are fenced |
//!
//! `job_run_kill_requested` may come in any live state and changes none;
//! `job_run_attached` / `job_run_detached` record who waits on a run.

mod rows;
mod violation;

/// Why a state could not be loaded from a log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Reading the log failed.
    #[error(transparent)]
    Bel(#[from] crate::bel::BelError),
    /// The log breaks the state diagrams.
    #[error("the log breaks the state diagrams: {0}")]
    Violation(#[from] Violation),
    /// A row of the state the sink keeps does not decode.
    #[error("the stored build state is damaged: {what}: {reason}")]
    Rows {
        /// The row (its kind and id).
        what: String,
        /// Why it does not decode.
        reason: String,
    },
}

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use violation::Violation;

use crate::bel::{BuildEvent, Event};
use crate::partition::PartitionRef;
use crate::planner::{Availability, PartitionStatusView};
use crate::proto::{self, PartitionStatus};

/// Where a job run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunState {
    /// Ready, waiting for slots.
    Queued,
    /// Slots granted; the launch is committed (`JobScheduled`).
    Scheduled,
    /// The executor reported it running.
    Running,
    /// The task exited 0; metadata comes next.
    TaskSucceeded,
    /// A stage failed; `JobRunFailed` comes next.
    Failing,
    /// Finished successfully.
    Succeeded,
    /// Finished with a failure.
    Failed,
    /// Finished reporting missing inputs.
    MissingDeps,
    /// Stopped on request, confirmed gone.
    Canceled,
    /// No sign of life for the liveness timeout.
    Lost,
}

impl RunState {
    /// True once the run has ended; later updates are fenced.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::Failed
                | RunState::MissingDeps
                | RunState::Canceled
                | RunState::Lost
        )
    }
}

/// One job run as the log describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobRun {
    /// Its id.
    pub job_run_id: String,
    /// The task it runs.
    pub task: std::sync::Arc<proto::Task>,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The run it retries or reruns.
    pub previous_job_run_id: Option<String>,
    /// The request that started it.
    pub started_by: String,
    /// Where it is.
    pub state: RunState,
    /// A kill was asked and not yet confirmed.
    pub kill_requested: bool,
    /// Unix ns of the last event about it.
    pub last_seen_ns: i64,
    /// The requests waiting on it.
    pub waiters: BTreeSet<String>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// For a run a node agent ran (its subplan): the seq on the node of
    /// the last event relayed from it, 0 before the first.
    pub relayed_seq: u64,
    /// The node's runs its relayed events leave open, by id: when this run
    /// ends without them, the orchestrator closes them (Lost, or Canceled
    /// when they had not started), numbered after the node's last event.
    pub relayed_open: BTreeMap<String, RelayedRun>,
}

/// A run on a node agent that its relayed events leave open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedRun {
    /// The request on the node that runs it.
    pub build_request_id: String,
    /// Where it is.
    pub phase: RelayedPhase,
}

/// How far a run on a node agent got, as its relayed events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayedPhase {
    /// Queued, not launched.
    Queued,
    /// Scheduled or running.
    Launched,
    /// Its task ended; its outcome is not recorded yet.
    Ending,
}

impl RelayedPhase {
    /// The phase's code in stored rows.
    pub fn code(self) -> u32 {
        match self {
            RelayedPhase::Queued => 1,
            RelayedPhase::Launched => 2,
            RelayedPhase::Ending => 3,
        }
    }

    /// The phase with `code`, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => RelayedPhase::Queued,
            2 => RelayedPhase::Launched,
            3 => RelayedPhase::Ending,
            _ => return None,
        })
    }
}

/// Where a build request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestState {
    /// Received.
    Received,
    /// Planning.
    Planning,
    /// Running its plan.
    Executing,
    /// Everything asked for is available.
    Succeeded,
    /// It failed.
    Failed,
    /// It was cancelled.
    Canceled,
}

/// One build request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BuildRequest {
    /// Its id.
    pub build_request_id: String,
    /// What it asked for.
    pub requested: Vec<PartitionRef>,
    /// Its options.
    pub options: crate::orchestrator::BuildOptions,
    /// Where it is.
    pub state: RequestState,
    /// It began to end early (`JobCancels`: fail fast or a cancel) before
    /// its end was recorded.
    pub stopping: bool,
    /// An analysis for it is open (started, neither emitted nor failed).
    pub analyzing: bool,
}

impl BuildRequest {
    /// Whether it ended.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.state,
            RequestState::Succeeded | RequestState::Failed | RequestState::Canceled
        )
    }
}

/// A partition in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Its status.
    pub status: PartitionStatus,
    /// The job run that last changed it.
    pub job_run_id: String,
    /// Sequence number of the event that set the status (0 before the
    /// event was appended).
    pub seq: u64,
}

/// The state of builds, reduced from the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildState {
    last_seq: u64,
    runs: HashMap<String, JobRun, foldhash::fast::RandomState>,
    requests: BTreeMap<String, BuildRequest>,
    catalog: HashMap<PartitionRef, CatalogEntry, foldhash::fast::RandomState>,
}

impl BuildState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state after `events`, or the first violation.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a BuildEvent>) -> Result<Self, Violation> {
        let mut state = Self::new();
        for e in events {
            state.apply(e)?;
        }
        Ok(state)
    }

    /// The last applied sequence number.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// A job run by id.
    pub fn run(&self, job_run_id: &str) -> Option<&JobRun> {
        self.runs.get(job_run_id)
    }

    /// All job runs.
    pub fn runs(&self) -> impl Iterator<Item = &JobRun> {
        self.runs.values()
    }

    /// All build requests, by id.
    pub fn requests(&self) -> impl Iterator<Item = &BuildRequest> {
        self.requests.values()
    }

    /// The partition catalog: every partition with a status.
    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionRef, &CatalogEntry)> {
        self.catalog.iter()
    }

    /// Rebuilds the state from a log: from the state the sink keeps (see
    /// [`BelSink::load_state`](crate::bel::BelSink::load_state)) and the
    /// events after it, or from the whole log (when the sink keeps none, or
    /// its rows are damaged), read in pages (so a long log is never held
    /// whole).
    pub async fn load(bel: &dyn crate::bel::BelSink) -> Result<Self, LoadError> {
        Ok(Self::load_from(bel).await?.0)
    }

    /// [`load`](Self::load), and the seq the sink's stored state was
    /// current to (`None` when it keeps none).
    pub(crate) async fn load_from(
        bel: &dyn crate::bel::BelSink,
    ) -> Result<(Self, Option<u64>), LoadError> {
        let stored = match bel.load_state().await? {
            // The rows are derived from the log: damaged ones are rebuilt
            // from it (the caller sees no stored state and saves it again).
            Some((rows, at)) => match Self::from_rows(rows, at) {
                Ok(state) => Some((state, at)),
                Err(e) => {
                    tracing::warn!(error = %e, "replaying the whole log instead");
                    None
                }
            },
            None => None,
        };
        match stored {
            Some((state, at)) => Ok((Self::replay_after(bel, state, at).await?, Some(at))),
            None => Ok((Self::replay_after(bel, Self::new(), 0).await?, None)),
        }
    }

    /// Applies the events after `since` to `state`, in pages.
    async fn replay_after(
        bel: &dyn crate::bel::BelSink,
        mut state: Self,
        since: u64,
    ) -> Result<Self, LoadError> {
        const PAGE: usize = 10_000;
        let all = crate::bel::EventFilter::all();
        let mut page = bel.read(since, &all, PAGE).await?;
        loop {
            let full = page.len() == PAGE;
            let next_since = page.last().map_or(0, |e| e.seq);
            // Read the next page while this one is applied.
            let apply = async {
                for e in page {
                    state.apply_owned(e)?;
                }
                Ok::<(), LoadError>(())
            };
            if !full {
                apply.await?;
                return Ok(state);
            }
            let (next, applied) = futures::join!(bel.read(next_since, &all, PAGE), apply);
            applied?;
            page = next?;
        }
    }

    /// A build request by id.
    pub fn request(&self, build_request_id: &str) -> Option<&BuildRequest> {
        self.requests.get(build_request_id)
    }

    /// A partition's catalog entry.
    pub fn partition(&self, partition: &PartitionRef) -> Option<&CatalogEntry> {
        self.catalog.get(partition)
    }

    /// [`apply`](Self::apply), taking the event: a queued run keeps the
    /// event's task instead of a copy (replaying a long log).
    pub fn apply_owned(&mut self, mut e: BuildEvent) -> Result<(), Violation> {
        let task = match &mut e.event {
            Some(Event::JobRunQueued(q)) if e.seq > self.last_seq && e.origin.is_none() => {
                q.task.take()
            }
            _ => None,
        };
        match (task, &e.event) {
            (Some(task), Some(Event::JobRunQueued(q))) => {
                self.queue(&e, q, Some(*task))?;
                self.last_seq = e.seq;
                Ok(())
            }
            _ => self.apply(&e),
        }
    }

    /// Applies one event. On a violation the state is unchanged.
    pub fn apply(&mut self, e: &BuildEvent) -> Result<(), Violation> {
        let Some(event) = &e.event else {
            return Err(Violation::new(e, "the event has no payload"));
        };
        if e.seq != 0 && e.seq <= self.last_seq {
            return Err(Violation::new(
                e,
                format!("seq {} does not follow seq {}", e.seq, self.last_seq),
            ));
        }
        match &e.origin {
            Some(origin) => self.relay(e, origin)?,
            None => self.apply_event(e, event)?,
        }
        if e.seq != 0 {
            self.last_seq = e.seq;
        }
        Ok(())
    }

    /// Checks that `events` may be applied, in order, without changing the
    /// state: the work is proportional to the batch, not to the state.
    pub fn check_batch(&self, events: &[BuildEvent]) -> Result<(), Violation> {
        self.overlay(events).map(|_| ())
    }

    /// Applies a batch checked with [`overlay`](Self::overlay) and then
    /// stored at seqs `first..=last`: what the overlay computed replaces the
    /// state's entries, and the catalog entries the batch changed take the
    /// seqs of their events (`statuses`: index in the batch, partition; see
    /// [`status_positions`](Self::status_positions)).
    pub(crate) fn merge(
        &mut self,
        overlay: BuildState,
        statuses: &[(usize, PartitionRef)],
        first: u64,
        last: u64,
    ) {
        let BuildState {
            runs,
            requests,
            mut catalog,
            ..
        } = overlay;
        self.runs.extend(runs);
        self.requests.extend(requests);
        // The overlay holds each partition's last status in the batch: it
        // takes the seq of the partition's last event.
        for (i, r) in statuses.iter().rev() {
            if let Some(mut entry) = catalog.remove(r) {
                entry.seq = first + *i as u64;
                self.catalog.insert(r.clone(), entry);
            }
        }
        self.last_seq = self.last_seq.max(last);
    }

    /// The partitions whose status `events` change, with each event's index.
    pub(crate) fn status_positions(events: &[BuildEvent]) -> Vec<(usize, PartitionRef)> {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.origin.is_none())
            .filter_map(|(i, e)| match &e.event {
                Some(Event::PartitionStatusChanged(p)) => p
                    .partition
                    .as_ref()
                    .and_then(|r| PartitionRef::try_from(r).ok())
                    .map(|r| (i, r)),
                _ => None,
            })
            .collect()
    }

    /// The state of the runs and requests `events` touch after applying
    /// them, computed apart from the state (see [`merge`](Self::merge)).
    pub(crate) fn overlay(&self, events: &[BuildEvent]) -> Result<BuildState, Violation> {
        let mut overlay = BuildState {
            last_seq: self.last_seq,
            ..BuildState::default()
        };
        for e in events {
            let scheduled = match &e.event {
                Some(Event::JobScheduled(s)) => Some(s.job_run_id.as_str()),
                _ => None,
            };
            let node = e.origin.as_ref().map(|o| o.node.as_str());
            for id in std::iter::once(e.job_run_id.as_str())
                .chain(scheduled)
                .chain(node)
            {
                if let Some(run) = self.runs.get(id)
                    && !overlay.runs.contains_key(id)
                {
                    overlay.runs.insert(id.to_owned(), run.clone());
                }
            }
            if let Some(request) = self.requests.get(&e.build_request_id)
                && !overlay.requests.contains_key(&e.build_request_id)
            {
                overlay
                    .requests
                    .insert(e.build_request_id.clone(), request.clone());
            }
            overlay.apply(e)?;
        }
        Ok(overlay)
    }

    fn apply_event(&mut self, e: &BuildEvent, event: &Event) -> Result<(), Violation> {
        use RunState as S;
        let next = |allowed: &[S], to: S| (allowed.to_vec(), to);
        let (allowed, to) = match event {
            Event::JobRunQueued(q) => return self.queue(e, q, None),
            Event::JobScheduled(s) => {
                return self.transition(e, &s.job_run_id, &[S::Queued], S::Scheduled);
            }
            Event::JobRunConfigValidated(_) => next(&[S::Scheduled], S::Scheduled),
            Event::JobRunConfigInvalid(_) | Event::JobRunLaunchFailed(_) => {
                next(&[S::Scheduled], S::Failing)
            }
            Event::JobRunRunning(_) => next(&[S::Scheduled], S::Running),
            Event::JobRunHeartbeat(_) => next(&[S::Running], S::Running),
            Event::JobRunTaskSucceeded(_) => next(&[S::Running], S::TaskSucceeded),
            Event::JobRunTaskFailed(_) => next(&[S::Running], S::Failing),
            Event::JobRunSucceeded(_) => next(&[S::TaskSucceeded], S::Succeeded),
            Event::JobRunMetadataFailed(_) => next(&[S::TaskSucceeded], S::Failing),
            Event::JobRunFailed(f) => {
                let from: &[S] = if f.stage == proto::FailureStage::Timeout as i32 {
                    &[S::Failing, S::Running, S::Scheduled]
                } else {
                    &[S::Failing]
                };
                self.transition(e, &e.job_run_id, from, S::Failed)?;
                if let Some(run) = self.runs.get_mut(&e.job_run_id) {
                    run.failure = Some(f.reason.clone());
                }
                return Ok(());
            }
            Event::JobRunMissingDeps(_) => next(&[S::Running], S::MissingDeps),
            Event::JobRunLost(_) => next(&[S::Scheduled, S::Running], S::Lost),
            Event::JobRunCanceled(_) => next(
                &[
                    S::Queued,
                    S::Scheduled,
                    S::Running,
                    S::TaskSucceeded,
                    S::Failing,
                ],
                S::Canceled,
            ),
            Event::JobRunKillRequested(_) => {
                let run = self.live_run(e, &e.job_run_id)?;
                run.kill_requested = true;
                run.last_seen_ns = e.timestamp_ns;
                return Ok(());
            }
            Event::JobRunAttached(_) => {
                let request = e.build_request_id.clone();
                self.live_run(e, &e.job_run_id)?.waiters.insert(request);
                return Ok(());
            }
            Event::JobRunDetached(_) => {
                let request = e.build_request_id.clone();
                self.known_run(e, &e.job_run_id)?.waiters.remove(&request);
                return Ok(());
            }
            Event::PartitionStatusChanged(p) => return self.partition_status(e, p),
            Event::BuildRequestReceived(r) => return self.receive(e, r),
            Event::BuildPlanning(_) => {
                return self.request_to(e, &[RequestState::Received], RequestState::Planning);
            }
            Event::BuildExecuting(_) => {
                return self.request_to(e, &[RequestState::Planning], RequestState::Executing);
            }
            Event::BuildSucceeded(_) => {
                return self.request_to(
                    e,
                    &[RequestState::Executing, RequestState::Planning],
                    RequestState::Succeeded,
                );
            }
            Event::BuildFailed(_) => {
                return self.request_to(
                    e,
                    &[
                        RequestState::Received,
                        RequestState::Planning,
                        RequestState::Executing,
                    ],
                    RequestState::Failed,
                );
            }
            Event::BuildCanceled(_) => {
                return self.request_to(
                    e,
                    &[
                        RequestState::Received,
                        RequestState::Planning,
                        RequestState::Executing,
                    ],
                    RequestState::Canceled,
                );
            }
            Event::JobCancels(_) => {
                if let Some(request) = self.requests.get_mut(&e.build_request_id) {
                    request.stopping = true;
                }
                return Ok(());
            }
            Event::AnalyzeStarted(_) | Event::JobGraphEmitted(_) | Event::AnalyzeFailed(_) => {
                if let Some(request) = self.requests.get_mut(&e.build_request_id) {
                    request.analyzing = matches!(event, Event::AnalyzeStarted(_));
                }
                return Ok(());
            }
            // Analysis, scheduling summaries, delegation and health change
            // nothing here (the analysis table is `bel::check`).
            _ => return Ok(()),
        };
        self.transition(e, &e.job_run_id, &allowed, to)
    }

    /// A queued run; `task` is the event's task when the caller took it out
    /// (else it is copied from the event).
    fn queue(
        &mut self,
        e: &BuildEvent,
        q: &proto::JobRunQueued,
        task: Option<proto::Task>,
    ) -> Result<(), Violation> {
        if e.job_run_id.is_empty() {
            return Err(Violation::new(e, "a queued run needs a job_run_id"));
        }
        if self.runs.contains_key(&e.job_run_id) {
            return Err(Violation::new(
                e,
                format!("job run {} is queued twice", e.job_run_id),
            ));
        }
        let task = task
            .or_else(|| q.task.as_deref().cloned())
            .ok_or_else(|| Violation::new(e, "a queued run needs its task"))?;
        self.runs.insert(
            e.job_run_id.clone(),
            JobRun {
                job_run_id: e.job_run_id.clone(),
                task: std::sync::Arc::new(task),
                attempt: q.attempt.max(1),
                previous_job_run_id: (!q.previous_job_run_id.is_empty())
                    .then(|| q.previous_job_run_id.clone()),
                started_by: e.build_request_id.clone(),
                state: RunState::Queued,
                kill_requested: false,
                last_seen_ns: e.timestamp_ns,
                waiters: [e.build_request_id.clone()]
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .collect(),
                failure: None,
                relayed_seq: 0,
                relayed_open: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// An event relayed from a node agent: a record of what happened on the
    /// node, kept in the log, which changes nothing here but the node's
    /// progress (the node is the run that ran the agent). Each event of a
    /// node is recorded once, in the node's order.
    fn relay(&mut self, e: &BuildEvent, origin: &proto::EventOrigin) -> Result<(), Violation> {
        let run = self.runs.get_mut(&origin.node).ok_or_else(|| {
            Violation::new(
                e,
                format!(
                    "relayed from node {:?}, which is no job run of this log",
                    origin.node
                ),
            )
        })?;
        if origin.seq <= run.relayed_seq {
            return Err(Violation::new(
                e,
                format!(
                    "event {} of node {} is relayed again (the node's events are recorded up to {})",
                    origin.seq, origin.node, run.relayed_seq
                ),
            ));
        }
        run.relayed_seq = origin.seq;
        let inner = e.job_run_id.as_str();
        let phase = match &e.event {
            Some(Event::JobRunQueued(_)) => Some(RelayedPhase::Queued),
            Some(Event::JobScheduled(s)) => {
                if let Some(r) = run.relayed_open.get_mut(&s.job_run_id) {
                    r.phase = RelayedPhase::Launched;
                }
                None
            }
            Some(Event::JobRunRunning(_)) => Some(RelayedPhase::Launched),
            Some(
                Event::JobRunTaskSucceeded(_)
                | Event::JobRunTaskFailed(_)
                | Event::JobRunConfigInvalid(_)
                | Event::JobRunLaunchFailed(_)
                | Event::JobRunMetadataFailed(_),
            ) => Some(RelayedPhase::Ending),
            Some(
                Event::JobRunSucceeded(_)
                | Event::JobRunFailed(_)
                | Event::JobRunCanceled(_)
                | Event::JobRunLost(_)
                | Event::JobRunMissingDeps(_),
            ) => {
                run.relayed_open.remove(inner);
                None
            }
            _ => None,
        };
        if let Some(phase) = phase
            && !inner.is_empty()
        {
            run.relayed_open
                .entry(inner.to_owned())
                .and_modify(|r| r.phase = phase)
                .or_insert_with(|| RelayedRun {
                    build_request_id: e.build_request_id.clone(),
                    phase,
                });
        }
        Ok(())
    }

    /// The events that close what a node left open when its run ends
    /// without it (its agent killed, silent or gone): each of the node's
    /// open runs is Lost (Canceled when it had not started, or its task had
    /// ended), numbered after the node's last relayed event, at `now_ns`.
    pub fn close_node(&self, node: &str, now_ns: i64) -> Vec<BuildEvent> {
        let Some(run) = self.runs.get(node) else {
            return Vec::new();
        };
        run.relayed_open
            .iter()
            .enumerate()
            .map(|(i, (id, open))| {
                let event = match open.phase {
                    RelayedPhase::Launched => Event::JobRunLost(proto::JobRunLost {
                        last_seen_ns: run.last_seen_ns,
                    }),
                    RelayedPhase::Queued | RelayedPhase::Ending => {
                        Event::JobRunCanceled(proto::JobRunCanceled {
                            reason: format!("its node (run {node}) was lost"),
                            source: proto::CancelSource::Shutdown as i32,
                        })
                    }
                };
                let mut e = BuildEvent::at(now_ns, event)
                    .for_request(&open.build_request_id)
                    .for_job_run(id);
                e.origin = Some(proto::EventOrigin {
                    node: node.to_owned(),
                    seq: run.relayed_seq + 1 + i as u64,
                });
                e
            })
            .collect()
    }

    fn known_run(&mut self, e: &BuildEvent, id: &str) -> Result<&mut JobRun, Violation> {
        self.runs
            .get_mut(id)
            .ok_or_else(|| Violation::new(e, format!("no job run {id:?} was queued")))
    }

    fn live_run(&mut self, e: &BuildEvent, id: &str) -> Result<&mut JobRun, Violation> {
        let run = self.known_run(e, id)?;
        if run.state.is_terminal() {
            let state = run.state;
            return Err(Violation::new(
                e,
                format!("job run {id} already ended ({state:?}): the update is fenced"),
            ));
        }
        Ok(run)
    }

    fn transition(
        &mut self,
        e: &BuildEvent,
        id: &str,
        from: &[RunState],
        to: RunState,
    ) -> Result<(), Violation> {
        let run = self.live_run(e, id)?;
        if !from.contains(&run.state) {
            let state = run.state;
            return Err(Violation::new(
                e,
                format!(
                    "job run {id} is {state:?}; {} may follow only {from:?}",
                    e.kind()
                ),
            ));
        }
        run.state = to;
        run.last_seen_ns = e.timestamp_ns;
        if to.is_terminal() {
            run.kill_requested = false;
        }
        Ok(())
    }

    fn partition_status(
        &mut self,
        e: &BuildEvent,
        p: &proto::PartitionStatusChanged,
    ) -> Result<(), Violation> {
        let partition = p
            .partition
            .as_ref()
            .ok_or_else(|| Violation::new(e, "no partition"))
            .and_then(|r| {
                PartitionRef::try_from(r).map_err(|err| Violation::new(e, err.to_string()))
            })?;
        let status = PartitionStatus::try_from(p.status).unwrap_or(PartitionStatus::Unspecified);
        if status == PartitionStatus::Unspecified {
            return Err(Violation::new(
                e,
                format!("partition {partition} has no status"),
            ));
        }
        self.catalog.insert(
            partition,
            CatalogEntry {
                status,
                job_run_id: p.job_run_id.clone(),
                seq: e.seq,
            },
        );
        Ok(())
    }

    fn receive(
        &mut self,
        e: &BuildEvent,
        r: &proto::BuildRequestReceived,
    ) -> Result<(), Violation> {
        if e.build_request_id.is_empty() || self.requests.contains_key(&e.build_request_id) {
            return Err(Violation::new(
                e,
                "a build request is received once, with an id",
            ));
        }
        let requested = r
            .requested
            .iter()
            .map(|p| PartitionRef::try_from(p).map_err(|err| Violation::new(e, err.to_string())))
            .collect::<Result<_, _>>()?;
        self.requests.insert(
            e.build_request_id.clone(),
            BuildRequest {
                build_request_id: e.build_request_id.clone(),
                requested,
                options: r.options.map_or_else(Default::default, |o| {
                    crate::orchestrator::BuildOptions::default()
                        .force(o.force)
                        .keep_going(o.keep_going)
                }),
                state: RequestState::Received,
                stopping: false,
                analyzing: false,
            },
        );
        Ok(())
    }

    fn request_to(
        &mut self,
        e: &BuildEvent,
        from: &[RequestState],
        to: RequestState,
    ) -> Result<(), Violation> {
        let request = self.requests.get_mut(&e.build_request_id).ok_or_else(|| {
            Violation::new(
                e,
                format!("no build request {:?} was received", e.build_request_id),
            )
        })?;
        if !from.contains(&request.state) {
            let state = request.state;
            return Err(Violation::new(
                e,
                format!(
                    "build request is {state:?}; {} may follow only {from:?}",
                    e.kind()
                ),
            ));
        }
        request.state = to;
        Ok(())
    }
}

impl Availability for BuildState {
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView {
        match self.catalog.get(partition) {
            Some(entry) => match entry.status {
                PartitionStatus::Available => PartitionStatusView::Available,
                PartitionStatus::Building => PartitionStatusView::Building {
                    job_run_id: entry.job_run_id.clone(),
                },
                PartitionStatus::Tainted => PartitionStatusView::Tainted,
                _ => PartitionStatusView::Missing,
            },
            None => PartitionStatusView::Missing,
        }
    }
}

#[cfg(test)]
mod tests;
