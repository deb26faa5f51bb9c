//! The run of one plan: graph.build's loop (seed 001) over the job run
//! lifecycle (seed 000).
//!
//! A task whose inputs are all built gets a job run at once (`JobRunQueued`,
//! in the same batch as the success that made it ready). Queued runs are
//! launched as slots allow (`JobScheduled` is committed before the
//! executor is asked; the launch itself runs beside the loop, so slow
//! launches, such as a container's create and start, overlap). The loop
//! sleeps on one `select!`: executor updates, launches coming back,
//! control messages (cancel), the earliest timer (retry backoff, run
//! timeout, liveness, build heartbeat, cancel wait) and, when ready work is
//! waiting for slots another request holds, the slots' release signal.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::buffer::{Buffer, Covered, Joiner};
use super::claims::{Claim, release};
use super::recovery::{Resume, Takeover, outputs};
use super::run::{Build, Route, Routed, backoff, status_events};
use super::slots::Grant;
use super::{BuildError, BuildOutcome, NotBuilt, Orchestrator, TaskEnd};
use crate::bel::{BuildEvent, Event};
use crate::clock::sleep_until_some;
use crate::executor::{
    Executor, ExecutorError, ExitStatus, JobRunSpec, Outcome, RunUpdate, log_path,
};
use crate::job::protocol::MissingDeps;
use crate::partition::PartitionRef;
use crate::plan::{JobGraph, TaskId};
use crate::planner::AnalyzeRequest;
use crate::proto::{self, CancelSource, FailureStage, PartitionStatus};
use crate::state::{JobRun, RunState};

/// A message to a live build request.
#[derive(Debug)]
pub(crate) enum Control {
    /// Cancel the request.
    Cancel { reason: String },
    /// Cancel one of its job runs.
    CancelRun { job_run_id: String, reason: String },
    /// Flush its buffer of this job now: another request filled the batch.
    FlushBuffer { job: String },
    /// The last live request waiting on this claim of the request stopped
    /// waiting: a request that is ending and kept the claim's run only for
    /// the waiters lets it go.
    Unwaited { claim: Arc<Claim> },
}

/// Where a task of the plan is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskStatus {
    /// Waiting for inputs.
    Waiting,
    /// A run is queued, waiting for slots.
    Ready,
    /// A run is in flight.
    Running,
    /// Waiting out a retry backoff.
    Backoff,
    /// Built.
    Done,
    /// Failed, or never ran because something failed.
    NotBuilt(String),
}

#[derive(Debug)]
struct TaskState {
    status: TaskStatus,
    /// Upstream tasks not built yet.
    waiting_on: u32,
    /// The attempt of the task's next (or current) run.
    attempt: u32,
    /// The run the next run follows (a retry or a rerun).
    previous: Option<String>,
    /// Reruns after missing deps so far.
    reruns: u32,
    /// The queued or running run.
    run: Option<String>,
    /// Its queued run was scheduled by an orchestrator that stopped before
    /// launching it: the launch record is written already.
    scheduled: bool,
    route: Route,
}

impl TaskState {
    /// A task not yet ready, waiting for `waiting_on` upstream tasks.
    fn waiting(waiting_on: u32, route: Route) -> Self {
        Self {
            status: TaskStatus::Waiting,
            waiting_on,
            attempt: 1,
            previous: None,
            reruns: 0,
            run: None,
            scheduled: false,
            route,
        }
    }
}

/// Why the orchestrator asked a run to stop.
#[derive(Debug, Clone)]
enum Stop {
    Timeout(Duration),
    Cancel {
        reason: String,
        source: CancelSource,
    },
}

#[derive(Debug)]
struct LiveRun {
    task: TaskId,
    executor: Arc<dyn Executor>,
    name: Arc<str>,
    grant: Grant,
    running: bool,
    last_seen: Instant,
    last_seen_ns: i64,
    bel_beat: Option<Instant>,
    /// The catalog's last seq when the run was launched.
    launched_seq: u64,
    stop: Option<Stop>,
}

/// A launch that came back from its executor.
struct Launched {
    task: TaskId,
    run: String,
    grant: Grant,
    executor: Arc<dyn Executor>,
    name: Arc<str>,
    watched: bool,
    timeout: Option<Duration>,
    launched_seq: u64,
    result: Result<crate::executor::RunUpdates, ExecutorError>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retry(usize),
    Timeout(String),
    Liveness(String),
    BuildHeartbeat,
    CancelWait,
    /// The buffering window of this job closes.
    BufferClose(String),
}

/// How the request is ending early.
#[derive(Debug, Clone)]
enum Ending {
    FailFast(String),
    Canceled {
        reason: String,
        source: CancelSource,
    },
}

impl Ending {
    /// Why, and on whose behalf, the request's runs are stopped.
    fn stop_reason(&self) -> (String, CancelSource) {
        match self {
            Ending::FailFast(_) => (
                "fail fast: another job of the build failed".to_owned(),
                CancelSource::FailFast,
            ),
            Ending::Canceled { reason, source } => (reason.clone(), *source),
        }
    }
}

/// Tasks per status, kept as statuses change (never recounted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    waiting: u64,
    ready: u64,
    running: u64,
    backoff: u64,
    done: u64,
    not_built: u64,
}

impl Counts {
    fn slot(&mut self, s: &TaskStatus) -> &mut u64 {
        match s {
            TaskStatus::Waiting => &mut self.waiting,
            TaskStatus::Ready => &mut self.ready,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Backoff => &mut self.backoff,
            TaskStatus::Done => &mut self.done,
            TaskStatus::NotBuilt(_) => &mut self.not_built,
        }
    }
}

pub(super) struct Execution<'a> {
    build: &'a Build,
    plan: JobGraph,
    tasks: Vec<TaskState>,
    /// Queued tasks per pool.
    queues: Vec<VecDeque<TaskId>>,
    next_queue: usize,
    runs: HashMap<String, LiveRun>,
    timers: BTreeSet<(Instant, Timer)>,
    counts: Counts,
    reported: (u64, u64, u64),
    /// Partitions built, in the order their runs succeeded.
    built: Vec<PartitionRef>,
    /// Runs ended per outcome, for build heartbeats.
    succeeded: u64,
    failed: u64,
    canceled: u64,
    failures: Vec<String>,
    ending: Option<Ending>,
    blocked: bool,
    /// Events that ride with the next commit (`RemainingJobs`).
    pending: Vec<BuildEvent>,
    scratch: Option<PathBuf>,
    /// This request's claims, by task: how they end, for requests that
    /// wait on them.
    published: HashMap<usize, Arc<Claim>>,
    /// Tasks to queue (or buffer), decided at the next commit: each is
    /// built here, waited for, or found built (see `claims`).
    claiming: Vec<TaskId>,
    /// Partitions the plan found being built elsewhere (a hint), decided
    /// at the next commit.
    hinted: Vec<PartitionRef>,
    /// Claims of other requests this one waits on.
    joined: Vec<Arc<Claim>>,
    /// Partitions the plan found being built that were neither claimed nor
    /// built when decided: built here.
    orphaned: HashSet<PartitionRef>,
    /// The catalog's last seq when the request began to plan: a partition
    /// available since was built by another request meanwhile.
    planned_from: u64,
    /// Partitions another request is building, and this request's tasks
    /// that wait for them.
    external: HashMap<PartitionRef, Vec<TaskId>>,
    /// The ends of those partitions' tasks.
    waits: FuturesUnordered<BoxFuture<'static, (PartitionRef, TaskEnd)>>,
    /// Runs of other requests this one attached to.
    attached: Vec<String>,
    /// Requested partitions another request was building.
    delegated: Vec<PartitionRef>,
    /// Those whose builder failed.
    delegated_failed: Vec<NotBuilt>,
    /// Every launched run's updates, tagged with its id, polled in place
    /// (no task or channel per run between the executor and this loop).
    updates: SelectAll<BoxStream<'static, (Arc<str>, RunUpdate)>>,
    control: Option<mpsc::UnboundedReceiver<Control>>,
    released: watch::Receiver<u64>,
    /// Launches in flight.
    launching: FuturesUnordered<BoxFuture<'static, Launched>>,
    /// Their runs, each with a stop asked while it was being launched.
    launching_ids: HashMap<String, Option<Stop>>,
    /// A resumed request's open runs, taken over when it starts.
    takeovers: Vec<Takeover>,
    /// Its lost runs, which its tasks' next runs follow.
    lost: Vec<JobRun>,
    /// Buffers this request owns: its tasks in each, by job.
    own_buffers: HashMap<String, Vec<TaskId>>,
    /// Buffers to flush at the next turn of the loop (the batch is full).
    flush_now: Vec<String>,
    /// Its tasks in other requests' buffers, waiting for the runs.
    buffer_waits: FuturesUnordered<BoxFuture<'static, BufferAnswer>>,
    /// Tasks that run on their own (their buffer's owner went away).
    unbuffered: HashSet<usize>,
    /// Joiner: partitions another request's batch run builds, and the task
    /// of this request they belong to.
    covering: HashMap<PartitionRef, TaskId>,
    /// Owner: this request's buffered tasks whose outputs a batch run (of
    /// the anchor task) builds.
    covers: HashMap<usize, Vec<TaskId>>,
    /// Runs a covered task (owner) or covering partitions (joiner) still
    /// waits for.
    cover_left: HashMap<usize, u32>,
}

/// A buffered task and what the buffer's owner answered.
type BufferAnswer = (TaskId, Result<Vec<Covered>, String>);

async fn recv_control(rx: &mut Option<mpsc::UnboundedReceiver<Control>>) -> Option<Control> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Drop for Execution<'_> {
    /// However the request ends (an error from the BEL included), requests
    /// waiting on its tasks are told, so none waits forever.
    fn drop(&mut self) {
        // Buffers it still owns go: their joiners hear so and run their
        // partitions themselves.
        {
            let mut buffers = self.build.inner.buffers();
            for job in self.own_buffers.keys() {
                if buffers.get(job).is_some_and(|b| b.owner == self.build.id) {
                    buffers.remove(job);
                }
            }
        }
        let open: Vec<usize> = self.published.keys().copied().collect();
        for t in open {
            self.end_task(
                TaskId::new(t),
                TaskEnd::Failed("the request building it ended first".into()),
            );
        }
        self.leave_claims();
    }
}

impl<'a> Execution<'a> {
    pub(super) fn new(
        build: &'a Build,
        plan: JobGraph,
        routes: Vec<Route>,
        control: Option<mpsc::UnboundedReceiver<Control>>,
        planned_from: u64,
    ) -> Self {
        let tasks = routes
            .into_iter()
            .enumerate()
            .map(|(i, route)| {
                TaskState::waiting(plan.upstream(TaskId::new(i)).count() as u32, route)
            })
            .collect::<Vec<_>>();
        let counts = Counts {
            waiting: tasks.len() as u64,
            ..Counts::default()
        };
        Self {
            build,
            plan,
            tasks,
            queues: vec![VecDeque::new(); build.inner.slots.pools()],
            next_queue: 0,
            runs: HashMap::new(),
            timers: BTreeSet::new(),
            counts,
            reported: (0, 0, 0),
            built: Vec::new(),
            succeeded: 0,
            failed: 0,
            canceled: 0,
            failures: Vec::new(),
            ending: None,
            blocked: false,
            pending: Vec::new(),
            scratch: None,
            updates: SelectAll::new(),
            published: HashMap::new(),
            claiming: Vec::new(),
            hinted: Vec::new(),
            joined: Vec::new(),
            orphaned: HashSet::new(),
            planned_from,
            external: HashMap::new(),
            waits: FuturesUnordered::new(),
            attached: Vec::new(),
            delegated: Vec::new(),
            delegated_failed: Vec::new(),
            control,
            released: build.inner.slots.subscribe(),
            launching: FuturesUnordered::new(),
            launching_ids: HashMap::new(),
            takeovers: Vec::new(),
            lost: Vec::new(),
            own_buffers: HashMap::new(),
            flush_now: Vec::new(),
            buffer_waits: FuturesUnordered::new(),
            unbuffered: HashSet::new(),
            covering: HashMap::new(),
            covers: HashMap::new(),
            cover_left: HashMap::new(),
        }
    }

    /// Makes this the execution of a resumed request: it takes over
    /// `takeovers` and follows `lost` when it starts.
    pub(super) fn take_over(&mut self, takeovers: Vec<Takeover>, lost: Vec<JobRun>) {
        self.takeovers = takeovers;
        self.lost = lost;
    }

    /// The plan's task that `run` ran, when it is still waiting to run
    /// here.
    fn task_of(&self, run: &JobRun) -> Option<TaskId> {
        let outputs = outputs(run);
        let label = run.task.job.as_ref().map(|j| j.label.as_str());
        let task = self.plan.producer(outputs.first()?)?;
        let t = self.plan.task(task);
        (t.config.outputs == outputs
            && Some(t.job.as_str()) == label
            && self.tasks[task.index()].status == TaskStatus::Waiting
            && self.tasks[task.index()].route.is_ok())
        .then_some(task)
    }

    /// A resumed request takes over its open runs (see
    /// [`super::recovery`]): queued ones go back to the queue, scheduled
    /// ones never launched go first in it, keeping their ids and launch
    /// records, and re-attached ones are live again. A run its new plan has
    /// no task for is cancelled (or, when started, followed to its end
    /// apart). Tasks whose run was lost run as the next attempt.
    async fn resume_runs(&mut self, events: &mut Vec<BuildEvent>) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        for run in std::mem::take(&mut self.lost) {
            if let Some(task) = self.task_of(&run) {
                let state = &mut self.tasks[task.index()];
                if state.attempt <= run.attempt {
                    state.attempt = run.attempt + 1;
                    state.previous = Some(run.job_run_id.clone());
                }
            }
        }
        let mut apart = Vec::new();
        for takeover in std::mem::take(&mut self.takeovers) {
            let Some(task) = self.task_of(&takeover.run) else {
                apart.push(takeover);
                continue;
            };
            let Takeover { run, how, claim } = takeover;
            let id = run.job_run_id.clone();
            let waiting = self.tasks[task.index()].waiting_on;
            if waiting > 0 && !matches!(how, Resume::Attach(_)) {
                apart.push(Takeover { run, how, claim });
                continue;
            }
            let state = &mut self.tasks[task.index()];
            state.attempt = run.attempt;
            state.previous = run.previous_job_run_id.clone();
            state.run = Some(id.clone());
            state.waiting_on = 0;
            let routed = match &state.route {
                Ok(r) => r.clone(),
                Err(_) => unreachable!("task_of takes routed tasks only"),
            };
            self.published.insert(task.index(), claim);
            match how {
                Resume::Queue => {
                    self.set_status(task, TaskStatus::Ready);
                    self.queues[routed.grant.pool].push_back(task);
                }
                Resume::Launch => {
                    self.tasks[task.index()].scheduled = true;
                    self.set_status(task, TaskStatus::Ready);
                    self.queues[routed.grant.pool].push_front(task);
                }
                Resume::Attach(updates) => {
                    // It runs whatever the limits say now: it holds slots.
                    inner.slots.force_acquire(routed.grant);
                    self.set_status(task, TaskStatus::Running);
                    let stop = run.kill_requested.then(|| Stop::Cancel {
                        reason: "a kill asked before the restart".into(),
                        source: CancelSource::Unspecified,
                    });
                    self.runs.insert(
                        id.clone(),
                        LiveRun {
                            task,
                            executor: routed.executor,
                            name: routed.name,
                            grant: routed.grant,
                            running: run.state == RunState::Running,
                            last_seen: Instant::now(),
                            last_seen_ns: inner.clock.now_ns(),
                            bel_beat: Some(Instant::now()),
                            launched_seq: inner.lock_state().last_seq(),
                            stop,
                        },
                    );
                    if let Some(limit) = self.plan.task(task).config.hints.timeout {
                        self.arm(limit, Timer::Timeout(id.clone()));
                    }
                    if routed.heartbeats {
                        self.arm(inner.settings.liveness_timeout, Timer::Liveness(id.clone()));
                    }
                    let tag: Arc<str> = Arc::from(id.as_str());
                    self.updates
                        .push(updates.map(move |u| (Arc::clone(&tag), u)).boxed());
                }
            }
        }
        events.extend(
            inner.release_takeovers(apart, "the resumed request's plan has no task for it"),
        );
        Ok(())
    }

    fn set_status(&mut self, task: TaskId, status: TaskStatus) {
        let old = std::mem::replace(&mut self.tasks[task.index()].status, status);
        *self.counts.slot(&old) -= 1;
        let new = self.tasks[task.index()].status.clone();
        *self.counts.slot(&new) += 1;
    }

    fn event(&self, run: &str, event: Event) -> BuildEvent {
        self.build.event(run, event)
    }

    /// Commits `events` (after the events that ride with the next
    /// commit), taking first, in the same turn, the wait-or-build decisions
    /// that came up (see [`settle`](Self::settle)).
    async fn commit(&mut self, events: Vec<BuildEvent>) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let _turn = inner.commit_lock.lock().await;
        self.commit_in_turn(events).await
    }

    /// [`commit`](Self::commit) for a caller that holds the commit turn.
    async fn commit_in_turn(&mut self, mut events: Vec<BuildEvent>) -> Result<(), BuildError> {
        self.settle(&mut events);
        if !self.pending.is_empty() {
            events.splice(0..0, self.pending.drain(..));
        }
        self.build.inner.commit_in_turn(events).await.map(|_| ())
    }

    pub(super) async fn run(mut self) -> Result<BuildOutcome, BuildError> {
        let inner = Arc::clone(&self.build.inner);
        if !self.plan.is_empty() {
            let dir = inner.scratch_root.join(&self.build.id);
            match std::fs::create_dir_all(&dir) {
                Ok(()) => self.scratch = Some(dir),
                Err(source) => {
                    let err = BuildError::Scratch { path: dir, source };
                    self.commit(vec![self.event(
                        "",
                        Event::BuildFailed(proto::BuildFailed {
                            reason: err.to_string(),
                        }),
                    )])
                    .await?;
                    return Err(err);
                }
            }
        }
        // Partitions already available are delegated to the build that made
        // them (historical delegation, seed 001), with one job-skipped event
        // per run that made them.
        let mut events = self.historical_delegations();
        // Partitions another live request is building are waited for, not
        // built again (delegation, seed 001).
        self.delegate_in_progress();
        // Unschedulable tasks (keep-going only) fail first.
        for i in 0..self.tasks.len() {
            if let Err(why) = &self.tasks[i].route {
                let reason = format!("unschedulable: {why}");
                self.not_built(TaskId::new(i), reason.clone());
                self.failures.push(format!(
                    "job {} {reason}",
                    self.plan.task(TaskId::new(i)).job
                ));
            }
        }
        self.resume_runs(&mut events).await?;
        let mut ready = Vec::new();
        for i in 0..self.tasks.len() {
            if self.tasks[i].status == TaskStatus::Waiting && self.tasks[i].waiting_on == 0 {
                ready.push(TaskId::new(i));
            }
        }
        for t in ready {
            self.queue(t);
        }
        self.commit(events).await?;
        self.arm(
            inner.settings.build_heartbeat_interval,
            Timer::BuildHeartbeat,
        );
        loop {
            while let Some(rx) = &mut self.control
                && let Ok(c) = rx.try_recv()
            {
                self.on_control(c).await?;
            }
            for job in std::mem::take(&mut self.flush_now) {
                self.flush(&job).await?;
            }
            self.dispatch().await?;
            self.report_remaining().await?;
            if self.finished() {
                break;
            }
            let next = self.timers.first().map(|(at, _)| *at);
            let blocked = self.blocked;
            tokio::select! {
                update = self.updates.next(), if !self.updates.is_empty() => {
                    if let Some((run, update)) = update {
                        self.on_update(run.to_string(), update).await?;
                    }
                }
                control = recv_control(&mut self.control) => match control {
                    Some(c) => self.on_control(c).await?,
                    None => self.control = None,
                },
                () = sleep_until_some(next) => self.on_timers().await?,
                end = self.waits.next(), if !self.waits.is_empty() => {
                    if let Some((partition, end)) = end {
                        self.on_external_end(partition, end).await?;
                    }
                }
                buffered = self.buffer_waits.next(), if !self.buffer_waits.is_empty() => {
                    if let Some((task, covered)) = buffered {
                        self.on_buffered(task, covered).await?;
                    }
                }
                launched = self.launching.next(), if !self.launching.is_empty() => {
                    if let Some(launched) = launched {
                        self.on_launched(launched).await?;
                    }
                }
                _ = self.released.changed(), if blocked => {}
            }
        }
        self.finish().await
    }

    fn historical_delegations(&self) -> Vec<BuildEvent> {
        self.delegations_to_built(self.plan.available())
    }

    fn finished(&self) -> bool {
        self.own_buffers.is_empty()
            && self.flush_now.is_empty()
            && self.buffer_waits.is_empty()
            && self.waits.is_empty()
            && self.runs.is_empty()
            && self.launching.is_empty()
            && self.counts.backoff == 0
            && self.counts.ready == 0
            && self.claiming.is_empty()
    }

    fn arm(&mut self, after: Duration, timer: Timer) {
        self.timers.insert((Instant::now() + after, timer));
    }

    /// Takes an extended plan and the states of its new tasks (routed,
    /// waiting; the caller counts what they wait for).
    fn grow(&mut self, plan: JobGraph, new_tasks: &[TaskId]) {
        self.plan = plan;
        for &t in new_tasks {
            debug_assert_eq!(t.index(), self.tasks.len());
            let route = self.build.route(self.plan.task(t));
            self.tasks.push(TaskState::waiting(0, route));
            self.counts.waiting += 1;
        }
    }

    /// One input of each of `tasks` is built: those with nothing left to
    /// wait for are queued (unless the request is ending).
    fn inputs_ready(&mut self, tasks: Vec<TaskId>) {
        for t in tasks {
            let state = &mut self.tasks[t.index()];
            state.waiting_on -= 1;
            if state.waiting_on == 0 && state.status == TaskStatus::Waiting && self.ending.is_none()
            {
                self.queue(t);
            }
        }
    }

    /// A ready task: whether it is built here (a new run, or into its
    /// job's buffer), waited for, or found built is decided at the next
    /// commit (see [`settle`](Self::settle)).
    fn queue(&mut self, task: TaskId) {
        if !self.claiming.contains(&task) {
            self.claiming.push(task);
        }
    }

    /// The wait-or-build decisions of what came up since the last commit,
    /// taken in the commit turn (no other commit, hence no other claim, in
    /// between), into the batch about to be committed: first the
    /// partitions the plan found being built elsewhere, then the tasks to
    /// queue (deciding one may make others ready).
    fn settle(&mut self, events: &mut Vec<BuildEvent>) {
        for p in std::mem::take(&mut self.hinted) {
            self.settle_hint(p, events);
        }
        while !self.claiming.is_empty() {
            for t in std::mem::take(&mut self.claiming) {
                if matches!(
                    self.tasks[t.index()].status,
                    TaskStatus::Waiting | TaskStatus::Backoff
                ) {
                    self.settle_task(t, events);
                }
            }
        }
    }

    /// A partition the plan found being built by another request: its
    /// readers wait for the claim on it; with no claim any more, it is
    /// built (then they go on) or it is built here.
    fn settle_hint(&mut self, partition: PartitionRef, events: &mut Vec<BuildEvent>) {
        let inner = Arc::clone(&self.build.inner);
        let claim = inner.building().get(&partition).cloned();
        let end = match claim {
            Some(claim) => {
                let rx = self.join_claim(&partition, &claim, events);
                self.wait(partition, rx);
                return;
            }
            None => {
                let available = inner
                    .lock_state()
                    .partition(&partition)
                    .is_some_and(|e| e.status == PartitionStatus::Available);
                if available {
                    events.extend(self.delegations_to_built(std::slice::from_ref(&partition)));
                    TaskEnd::Built
                } else {
                    self.orphaned.insert(partition.clone());
                    TaskEnd::Failed(format!(
                        "{partition} is neither built nor being built by a live request"
                    ))
                }
            }
        };
        self.wait(partition, tokio::sync::watch::channel(end).1);
    }

    /// A ready task's decision: outputs another live request claimed are
    /// waited for (the task is done when they are built); outputs all built
    /// since this request began to plan need no run; otherwise this
    /// request claims the outputs and queues a run (or buffers the task).
    fn settle_task(&mut self, task: TaskId, events: &mut Vec<BuildEvent>) {
        let inner = Arc::clone(&self.build.inner);
        let outputs = self.plan.task(task).config.outputs.clone();
        let foreign: Vec<(PartitionRef, Arc<Claim>)> = {
            let building = inner.building();
            outputs
                .iter()
                .filter_map(|o| {
                    building
                        .get(o)
                        .filter(|c| c.owner != self.build.id)
                        .map(|c| (o.clone(), Arc::clone(c)))
                })
                .collect()
        };
        if !foreign.is_empty() {
            let partitions: Vec<PartitionRef> = foreign.iter().map(|(p, _)| p.clone()).collect();
            self.note_delegated(&partitions);
            *self.cover_left.entry(task.index()).or_insert(0) += foreign.len() as u32;
            for (partition, claim) in foreign {
                let rx = self.join_claim(&partition, &claim, events);
                self.covering.insert(partition.clone(), task);
                self.external.insert(partition.clone(), Vec::new());
                self.wait(partition, rx);
            }
            return;
        }
        let built_meanwhile = {
            let state = inner.lock_state();
            outputs.iter().all(|o| {
                state.partition(o).is_some_and(|e| {
                    e.status == PartitionStatus::Available && e.seq > self.planned_from
                })
            })
        };
        if built_meanwhile && !self.published.contains_key(&task.index()) {
            events.extend(self.delegations_to_built(&outputs));
            self.note_delegated(&outputs);
            self.set_status(task, TaskStatus::Done);
            let downstream: Vec<TaskId> = self.plan.downstream(task).map(|(d, _)| d).collect();
            self.inputs_ready(downstream);
            return;
        }
        match self.plan.task(task).config.hints.buffering {
            Some(window) if !self.unbuffered.contains(&task.index()) => {
                self.buffer(task, window, events);
            }
            _ => self.enqueue(task, events),
        }
    }

    /// Joins another request's claim on `partition` as a waiter:
    /// `PartitionDelegated` naming its request and run, and
    /// `JobRunAttached` when the run is live (a run queued later for the
    /// claim attaches every waiter as it is queued). Returns the end to
    /// wait for.
    fn join_claim(
        &mut self,
        partition: &PartitionRef,
        claim: &Arc<Claim>,
        events: &mut Vec<BuildEvent>,
    ) -> tokio::sync::watch::Receiver<TaskEnd> {
        let run = claim.run();
        claim.join(&self.build.id, std::slice::from_ref(partition));
        self.note_joined(claim);
        events.push(self.event(
            "",
            Event::PartitionDelegated(proto::PartitionDelegated {
                partition: Some(partition.to_proto()),
                to_build_request_id: claim.owner.clone(),
                to_job_run_id: run.clone().unwrap_or_default(),
                historical: false,
            }),
        ));
        if let Some(run) = run {
            let live = self
                .build
                .inner
                .lock_state()
                .run(&run)
                .is_some_and(|r| !r.state.is_terminal() && !r.waiters.contains(&self.build.id));
            if live {
                events.push(self.event(
                    &run,
                    Event::JobRunAttached(proto::JobRunAttached {
                        partitions: vec![partition.to_proto()],
                    }),
                ));
                if !self.attached.contains(&run) {
                    self.attached.push(run);
                }
            }
        }
        claim.subscribe()
    }

    /// Of `partitions`, those this request asked for are delegated (once
    /// each) in its outcome.
    fn note_delegated(&mut self, partitions: &[PartitionRef]) {
        let requested: HashSet<&PartitionRef> = self.plan.requested().iter().collect();
        for p in partitions {
            if requested.contains(p) && !self.delegated.contains(p) {
                self.delegated.push(p.clone());
            }
        }
    }

    /// Remembers a claim this request waits on, to leave it when it ends.
    fn note_joined(&mut self, claim: &Arc<Claim>) {
        if !self.joined.iter().any(|c| Arc::ptr_eq(c, claim)) {
            self.joined.push(Arc::clone(claim));
        }
    }

    /// Waits for the end of another request's task building `partition`.
    fn wait(&mut self, partition: PartitionRef, mut rx: tokio::sync::watch::Receiver<TaskEnd>) {
        self.waits.push(Box::pin(async move {
            let end = match rx.wait_for(|e| *e != TaskEnd::Pending).await {
                Ok(end) => end.clone(),
                Err(_) => TaskEnd::Failed("the request building it ended".into()),
            };
            (partition, end)
        }));
    }

    /// `PartitionDelegated` (historical) for each of `partitions`, built
    /// already, and one `JobSkipped` per run that built them.
    fn delegations_to_built(&self, partitions: &[PartitionRef]) -> Vec<BuildEvent> {
        let state = self.build.inner.lock_state();
        let mut events = Vec::new();
        let mut by_run: std::collections::BTreeMap<&str, Vec<proto::PartitionRef>> =
            std::collections::BTreeMap::new();
        for p in partitions {
            let run_id = state
                .partition(p)
                .map(|e| e.job_run_id.as_str())
                .unwrap_or_default();
            let by = state.run(run_id);
            events.push(self.event(
                "",
                Event::PartitionDelegated(proto::PartitionDelegated {
                    partition: Some(p.to_proto()),
                    to_build_request_id: by.map(|r| r.started_by.clone()).unwrap_or_default(),
                    to_job_run_id: run_id.to_owned(),
                    historical: true,
                }),
            ));
            if by.is_some() {
                by_run.entry(run_id).or_default().push(p.to_proto());
            }
        }
        for (run_id, partitions) in by_run {
            let Some(run) = state.run(run_id) else {
                continue;
            };
            events.push(self.event(
                "",
                Event::JobSkipped(proto::JobSkipped {
                    job: run.task.job.clone(),
                    partitions,
                    built_by_build_request_id: run.started_by.clone(),
                    built_by_job_run_id: run_id.to_owned(),
                }),
            ));
        }
        events
    }

    /// Puts a ready task's outputs into its job's open buffer (joining
    /// another request's, or opening one this request owns), with a
    /// `JobRunBuffering` event.
    fn buffer(
        &mut self,
        task: TaskId,
        window: crate::job::BufferingWindow,
        events: &mut Vec<BuildEvent>,
    ) {
        let inner = Arc::clone(&self.build.inner);
        let job = self.plan.task(task).job.to_string();
        let outputs = self.plan.task(task).config.outputs.clone();
        // Other requests that need these partitions wait for this task.
        self.publish(task);
        let mut buffers = inner.buffers();
        let buffer = buffers.entry(job.clone()).or_insert_with(|| {
            self.timers.insert((
                Instant::now() + window.window,
                Timer::BufferClose(job.clone()),
            ));
            Buffer {
                id: inner.ids.next_id(),
                owner: self.build.id.clone(),
                partitions: Vec::new(),
                deadline_ns: inner.clock.now_ns()
                    + i64::try_from(window.window.as_nanos()).unwrap_or(i64::MAX),
                max_batch: window.max_batch,
                joiners: Vec::new(),
            }
        });
        buffer.partitions.extend(outputs.iter().cloned());
        if buffer.owner == self.build.id {
            self.own_buffers.entry(job.clone()).or_default().push(task);
        } else {
            let (reply, answer) = tokio::sync::oneshot::channel();
            buffer.joiners.push(Joiner {
                request: self.build.id.clone(),
                partitions: outputs.clone(),
                reply,
            });
            self.buffer_waits.push(Box::pin(async move {
                let covered = answer
                    .await
                    .unwrap_or_else(|_| Err("the request holding the buffer ended".into()));
                (task, covered)
            }));
        }
        let (id, deadline_ns, full, owner) = (
            buffer.id.clone(),
            buffer.deadline_ns,
            buffer.full(),
            buffer.owner.clone(),
        );
        drop(buffers);
        events.push(self.event(
            "",
            Event::JobRunBuffering(proto::JobRunBuffering {
                buffer_id: id,
                job: Some(self.plan.task(task).job.to_proto()),
                partitions: outputs.iter().map(PartitionRef::to_proto).collect(),
                window_deadline_ns: deadline_ns,
                max_batch: window.max_batch.unwrap_or(0),
            }),
        ));
        if full {
            if owner == self.build.id {
                self.flush_now.push(job);
            } else if let Some(tx) = inner.controls().get(&owner) {
                let _ = tx.send(Control::FlushBuffer { job });
            }
        }
    }

    /// The window of this request's buffer of `job` closed, or the batch
    /// is full: one `config` call for every partition in it, one run per
    /// config (anchored on one of this request's buffered tasks, or a new
    /// task for a config that covers only other requests' partitions), and
    /// each joining request told which runs cover its partitions.
    async fn flush(&mut self, job: &str) -> Result<(), BuildError> {
        let Some(own) = self.own_buffers.remove(job) else {
            return Ok(());
        };
        let inner = Arc::clone(&self.build.inner);
        let buffer = {
            let mut buffers = inner.buffers();
            match buffers.get(job) {
                Some(b) if b.owner == self.build.id => buffers.remove(job),
                _ => None,
            }
        };
        let joiners = buffer.map(|b| b.joiners).unwrap_or_default();
        if let Some(ending) = &self.ending {
            let reason = match ending {
                Ending::FailFast(f) => format!("not run: {f}"),
                Ending::Canceled { reason, .. } => format!("not run: canceled: {reason}"),
            };
            for j in joiners {
                let _ = j.reply.send(Err(reason.clone()));
            }
            for t in own {
                self.not_built(t, reason.clone());
            }
            return Ok(());
        }
        let mut union: Vec<PartitionRef> = Vec::new();
        let mut seen = HashSet::new();
        for p in own
            .iter()
            .flat_map(|t| self.plan.task(*t).config.outputs.iter())
            .chain(joiners.iter().flat_map(|j| j.partitions.iter()))
        {
            if seen.insert(p.clone()) {
                union.push(p.clone());
            }
        }
        let configs = match inner.graph.job(job) {
            Some(j) => j.config(&union).await.map_err(|e| e.to_string()),
            None => Err(format!("job {job} is not in the graph")),
        }
        .and_then(|configs| {
            let mut covered = HashSet::new();
            for c in &configs {
                for o in &c.outputs {
                    if !seen.contains(o) || !covered.insert(o.clone()) {
                        return Err(format!("the configs cover {o} more than once, or unasked"));
                    }
                }
            }
            if let Some(p) = union.iter().find(|p| !covered.contains(*p)) {
                return Err(format!("no config covers {p}"));
            }
            // The batch may read what no single partition's config did: it
            // runs only on inputs already built.
            let state = inner.lock_state();
            for input in configs.iter().flat_map(|c| c.materialized_inputs()) {
                let built = state
                    .partition(input)
                    .is_some_and(|e| e.status == PartitionStatus::Available);
                if !built {
                    return Err(format!("the batch reads {input}, which is not built"));
                }
            }
            Ok(configs)
        });
        let configs = match configs {
            Ok(c) => c,
            Err(why) => {
                let reason = format!("the buffered config call of job {job} failed: {why}");
                for j in joiners {
                    let _ = j.reply.send(Err(reason.clone()));
                }
                for t in own {
                    self.task_failed(t, "", reason.clone(), false).await?;
                }
                return Ok(());
            }
        };
        let digest = Arc::clone(&self.plan.task(own[0]).definition_digest);
        let label = self.plan.task(own[0]).job.clone();
        let mut events = Vec::new();
        // The runs, their claims and the joiners' attachments are decided
        // and written in one commit turn.
        let turn = Arc::clone(&inner);
        let _turn = turn.commit_lock.lock().await;
        let mut anchor_of: HashMap<PartitionRef, TaskId> = HashMap::new();
        let mut used: HashSet<usize> = HashSet::new();
        for config in configs {
            let anchor = own.iter().copied().find(|t| {
                !used.contains(&t.index())
                    && self
                        .plan
                        .task(*t)
                        .config
                        .outputs
                        .iter()
                        .any(|o| config.outputs.contains(o))
            });
            let anchor = match anchor {
                Some(t) => t,
                None => {
                    let mut plan = self.plan.clone();
                    let t = plan.push_task(crate::plan::Task {
                        job: label.clone(),
                        config: config.clone(),
                        definition_digest: Arc::clone(&digest),
                    });
                    self.grow(plan, &[t]);
                    t
                }
            };
            used.insert(anchor.index());
            let before: HashSet<PartitionRef> = self
                .plan
                .task(anchor)
                .config
                .outputs
                .iter()
                .cloned()
                .collect();
            self.plan.task_mut(anchor).config = config;
            match self.published.get(&anchor.index()).cloned() {
                Some(claim) => {
                    let mut building = inner.building();
                    for o in &self.plan.task(anchor).config.outputs {
                        if !before.contains(o) {
                            building.insert(o.clone(), Arc::clone(&claim));
                        }
                    }
                }
                None => {
                    self.publish(anchor);
                }
            }
            for o in &self.plan.task(anchor).config.outputs {
                anchor_of.insert(o.clone(), anchor);
            }
            self.enqueue(anchor, &mut events);
        }
        // This request's other buffered tasks finish with the runs that
        // build their outputs.
        for t in own.iter().filter(|t| !used.contains(&t.index())) {
            let anchors: HashSet<usize> = self
                .plan
                .task(*t)
                .config
                .outputs
                .iter()
                .filter_map(|o| anchor_of.get(o).map(|a| a.index()))
                .collect();
            self.cover_left.insert(t.index(), anchors.len() as u32);
            for a in anchors {
                self.covers.entry(a).or_default().push(*t);
            }
        }
        // Every request waiting on the runs is attached to them in the batch
        // that queues them, before any can start.
        let now = inner.clock.now_ns();
        for j in &joiners {
            let mut attach: std::collections::BTreeMap<String, Vec<proto::PartitionRef>> =
                std::collections::BTreeMap::new();
            for p in &j.partitions {
                if let Some(run) = anchor_of
                    .get(p)
                    .and_then(|a| self.tasks[a.index()].run.clone())
                {
                    attach.entry(run).or_default().push(p.to_proto());
                }
            }
            for (run, partitions) in attach {
                events.push(
                    BuildEvent::at(
                        now,
                        Event::JobRunAttached(proto::JobRunAttached { partitions }),
                    )
                    .for_request(&j.request)
                    .for_job_run(run),
                );
            }
            for p in &j.partitions {
                if let Some(claim) = anchor_of
                    .get(p)
                    .and_then(|a| self.published.get(&a.index()))
                {
                    claim.join(&j.request, std::slice::from_ref(p));
                }
            }
        }
        self.commit_in_turn(events).await?;
        drop(_turn);
        for j in joiners {
            let covered = j
                .partitions
                .iter()
                .filter_map(|p| {
                    let anchor = anchor_of.get(p)?;
                    Some(Covered {
                        partition: p.clone(),
                        run: self.tasks[anchor.index()].run.clone()?,
                        owner: self.build.id.clone(),
                        claim: Arc::clone(self.published.get(&anchor.index())?),
                    })
                })
                .collect();
            let _ = j.reply.send(Ok(covered));
        }
        Ok(())
    }

    /// Joiner: the owner of the buffer answered. The runs covering this
    /// task's partitions are attached to and waited for; with no answer
    /// (the owner went away) the task runs here, unbuffered.
    async fn on_buffered(
        &mut self,
        task: TaskId,
        covered: Result<Vec<Covered>, String>,
    ) -> Result<(), BuildError> {
        if self.ending.is_some() || self.tasks[task.index()].status != TaskStatus::Waiting {
            return Ok(());
        }
        let mut events = Vec::new();
        match covered {
            Err(why) => {
                tracing::info!(%why, "a buffered task runs on its own");
                self.unbuffered.insert(task.index());
                self.queue(task);
            }
            Ok(covered) => {
                let partitions: Vec<PartitionRef> =
                    covered.iter().map(|c| c.partition.clone()).collect();
                self.note_delegated(&partitions);
                // The owner recorded the attachments with the runs.
                self.cover_left.insert(task.index(), covered.len() as u32);
                for c in covered {
                    events.push(self.event(
                        "",
                        Event::PartitionDelegated(proto::PartitionDelegated {
                            partition: Some(c.partition.to_proto()),
                            to_build_request_id: c.owner.clone(),
                            to_job_run_id: c.run.clone(),
                            historical: false,
                        }),
                    ));
                    if !self.attached.contains(&c.run) {
                        self.attached.push(c.run.clone());
                    }
                    self.covering.insert(c.partition.clone(), task);
                    self.external.insert(c.partition.clone(), Vec::new());
                    self.note_joined(&c.claim);
                    self.wait(c.partition, c.claim.subscribe());
                }
            }
        }
        self.commit(events).await
    }

    /// The batch run of `anchor` ended: the buffered tasks of this request
    /// it covered end with it.
    fn end_covered(&mut self, anchor: TaskId, end: &TaskEnd) {
        for t in self.covers.remove(&anchor.index()).unwrap_or_default() {
            if self.tasks[t.index()].status != TaskStatus::Waiting {
                continue;
            }
            match end {
                TaskEnd::Built | TaskEnd::Pending => {
                    let left = self.cover_left.entry(t.index()).or_insert(1);
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.set_status(t, TaskStatus::Done);
                        self.end_task(t, TaskEnd::Built);
                        let downstream: Vec<TaskId> =
                            self.plan.downstream(t).map(|(d, _)| d).collect();
                        self.inputs_ready(downstream);
                    }
                }
                TaskEnd::Failed(why) => {
                    self.not_built(t, format!("its batch run failed: {why}"));
                    if self.build.options.keep_going {
                        self.skip_downstream(t);
                    }
                }
            }
        }
    }

    /// A new run for a ready task this request claims: `JobRunQueued`
    /// into `events`, `JobRunAttached` for every live request waiting on
    /// the claim, and the task into its pool's queue.
    fn enqueue(&mut self, task: TaskId, events: &mut Vec<BuildEvent>) {
        let run = self.build.inner.ids.next_id();
        let t = &self.tasks[task.index()];
        events.push(self.event(
            &run,
            Event::JobRunQueued(proto::JobRunQueued {
                task: Some(Box::new(self.plan.task(task).to_proto())),
                attempt: t.attempt,
                previous_job_run_id: t.previous.clone().unwrap_or_default(),
            }),
        ));
        let pool = t.route.as_ref().map_or(0, |r| r.grant.pool);
        let claim = self.publish(task);
        claim.set_run(Some(run.clone()));
        let waiters = claim.waiters();
        if !waiters.is_empty() {
            let controls = self.build.inner.controls();
            for (request, partitions) in waiters {
                if request == self.build.id || !controls.contains_key(&request) {
                    continue;
                }
                events.push(
                    BuildEvent::at(
                        self.build.inner.clock.now_ns(),
                        Event::JobRunAttached(proto::JobRunAttached {
                            partitions: partitions.iter().map(PartitionRef::to_proto).collect(),
                        }),
                    )
                    .for_request(&request)
                    .for_job_run(&run),
                );
            }
        }
        self.tasks[task.index()].run = Some(run);
        self.set_status(task, TaskStatus::Ready);
        self.queues[pool].push_back(task);
    }

    async fn report_remaining(&mut self) -> Result<(), BuildError> {
        let c = self.counts;
        let now = (
            c.ready,
            c.running,
            c.waiting + c.ready + c.running + c.backoff,
        );
        if now != self.reported {
            self.reported = now;
            let (ready, running, remaining) = now;
            // The counts ride with the next batch: a launched run's
            // `JobRunRunning` comes at once. With nothing in flight they go
            // out now.
            self.pending.retain(|e| e.kind() != "remaining_jobs");
            let event = self.event(
                "",
                Event::RemainingJobs(proto::RemainingJobs {
                    ready,
                    running,
                    remaining,
                }),
            );
            self.pending.push(event);
        }
        if !self.pending.is_empty() && self.runs.is_empty() && self.launching.is_empty() {
            self.commit(Vec::new()).await?;
        }
        Ok(())
    }

    /// Launches queued runs while slots allow, taking the pools' queues in
    /// turn.
    async fn dispatch(&mut self) -> Result<(), BuildError> {
        self.blocked = false;
        let inner = Arc::clone(&self.build.inner);
        // Once the request is ending, only runs it hosts for other requests
        // are queued.
        while self.counts.ready > 0 {
            if !inner.slots.any_room() {
                self.blocked = true;
                return Ok(());
            }
            let n = self.queues.len();
            let mut picked = None;
            for k in 0..n {
                let q = (self.next_queue + k) % n;
                let Some(&task) = self.queues[q].front() else {
                    continue;
                };
                let grant = match &self.tasks[task.index()].route {
                    Ok(r) => r.grant,
                    Err(_) => unreachable!("unroutable tasks are never queued"),
                };
                if inner.slots.try_acquire(grant) {
                    self.queues[q].pop_front();
                    self.next_queue = q + 1;
                    picked = Some((task, grant));
                    break;
                }
            }
            let Some((task, grant)) = picked else {
                self.blocked = true;
                return Ok(());
            };
            self.launch(task, grant).await?;
        }
        Ok(())
    }

    async fn launch(&mut self, task: TaskId, grant: Grant) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let run = self.tasks[task.index()]
            .run
            .clone()
            .unwrap_or_else(|| unreachable!("a queued task has a run"));
        let t = self.plan.task(task);
        if std::mem::take(&mut self.tasks[task.index()].scheduled) {
            // Resumed: its launch record was committed before the restart.
        } else {
            let mut events = vec![self.event(
                &run,
                Event::JobScheduled(proto::JobScheduled {
                    job_run_id: run.clone(),
                }),
            )];
            events.extend(status_events(
                self.build,
                &run,
                &t.config.outputs,
                PartitionStatus::Building,
            ));
            events.push(self.event(
                &run,
                Event::JobRunConfigValidated(proto::JobRunConfigValidated {}),
            ));
            // The launch record is committed before the launch.
            self.commit(events).await?;
        }
        let t = self.plan.task(task);
        let launch = inner
            .graph
            .job(t.job.as_str())
            .map(|j| j.launch())
            .unwrap_or_else(|| unreachable!("routing checked every job"));
        let log = log_path(&inner.state_dir, &run, inner.clock.now_ns());
        let mut spec = JobRunSpec::new(
            run.clone(),
            self.build.id.clone(),
            t.job.clone(),
            t.config.clone(),
            launch,
            log,
        );
        let timeout = t.config.hints.timeout;
        let state = &self.tasks[task.index()];
        spec.attempt = state.attempt;
        spec.previous_job_run_id = state.previous.clone();
        spec.scratch_dir = self.scratch.clone();
        let Routed {
            executor,
            name,
            heartbeats: watched,
            ..
        } = match &state.route {
            Ok(r) => r.clone(),
            Err(_) => unreachable!("unroutable tasks are never queued"),
        };
        self.set_status(task, TaskStatus::Running);
        let launched_seq = inner.lock_state().last_seq();
        // The launch runs beside the loop (a container's create and start
        // take a while; launches to several engines overlap); its result
        // comes back through `launching`.
        self.launching_ids.insert(run.clone(), None);
        let pending = Arc::clone(&executor);
        self.launching.push(Box::pin(async move {
            let result = pending.launch(spec).await;
            Launched {
                task,
                run,
                grant,
                executor,
                name,
                watched,
                timeout,
                launched_seq,
                result,
            }
        }));
        Ok(())
    }

    /// A launch came back: the run is live, or its attempt failed.
    async fn on_launched(&mut self, launched: Launched) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let Launched {
            task,
            run,
            grant,
            executor,
            name,
            watched,
            timeout,
            launched_seq,
            result,
        } = launched;
        let stop = self.launching_ids.remove(&run).flatten();
        match result {
            Ok(updates) => {
                self.runs.insert(
                    run.clone(),
                    LiveRun {
                        task,
                        executor,
                        name,
                        grant,
                        running: false,
                        last_seen: Instant::now(),
                        last_seen_ns: inner.clock.now_ns(),
                        bel_beat: None,
                        launched_seq,
                        stop: None,
                    },
                );
                if let Some(limit) = timeout {
                    self.arm(limit, Timer::Timeout(run.clone()));
                }
                if watched {
                    self.arm(
                        inner.settings.liveness_timeout,
                        Timer::Liveness(run.clone()),
                    );
                }
                let id: Arc<str> = Arc::from(run.as_str());
                self.updates
                    .push(updates.map(move |u| (Arc::clone(&id), u)).boxed());
                // Asked to stop while it was being launched.
                if let Some(stop) = stop {
                    self.stop_run(&run, stop).await;
                }
            }
            Err(e) => {
                inner.slots.release(grant);
                let (reason, retryable) = match &e {
                    ExecutorError::Launch {
                        reason, retryable, ..
                    } => (reason.clone(), *retryable),
                    other => (other.to_string(), false),
                };
                self.commit(vec![
                    self.event(
                        &run,
                        Event::JobRunLaunchFailed(proto::JobRunLaunchFailed {
                            reason: reason.clone(),
                            retryable,
                        }),
                    ),
                    self.event(
                        &run,
                        Event::JobRunFailed(proto::JobRunFailed {
                            stage: FailureStage::Launch as i32,
                            reason: reason.clone(),
                            retryable,
                        }),
                    ),
                ])
                .await?;
                self.failed += 1;
                self.attempt_failed(task, &run, format!("launch failed: {reason}"), retryable)
                    .await?;
            }
        }
        Ok(())
    }

    async fn on_update(&mut self, run: String, update: RunUpdate) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let Some(live) = self.runs.get_mut(&run) else {
            // A run that ended or was declared lost: fenced.
            tracing::debug!(job_run_id = %run, ?update, "update for a run that is no longer live: refused");
            return Ok(());
        };
        live.last_seen = Instant::now();
        live.last_seen_ns = inner.clock.now_ns();
        match update {
            RunUpdate::Running { handle } => {
                if live.running {
                    // Re-attached: `JobRunRunning` is in the log already.
                    return Ok(());
                }
                live.running = true;
                // `Running` is the first sign of life in the log; the first
                // heartbeat event comes one interval later.
                live.bel_beat = Some(Instant::now());
                let executor = live.name.to_string();
                self.commit(vec![self.event(
                    &run,
                    Event::JobRunRunning(proto::JobRunRunning { executor, handle }),
                )])
                .await
            }
            RunUpdate::Heartbeat { cpu_ms, rss_bytes } => {
                let now = Instant::now();
                let due = live.bel_beat.is_some_and(|at| {
                    now.duration_since(at) >= inner.settings.bel_heartbeat_interval
                });
                if !due {
                    return Ok(());
                }
                live.bel_beat = Some(now);
                self.commit(vec![self.event(
                    &run,
                    Event::JobRunHeartbeat(proto::JobRunHeartbeat {
                        cpu_ms: cpu_ms.unwrap_or(0),
                        rss_bytes: rss_bytes.unwrap_or(0),
                    }),
                )])
                .await
            }
            RunUpdate::NodeEvents(events) => {
                let fresh = inner.fresh_node_events(&run, events);
                self.commit(fresh).await
            }
            RunUpdate::Exited(outcome) => {
                let live = self
                    .runs
                    .remove(&run)
                    .unwrap_or_else(|| unreachable!("looked up above"));
                if !live.running {
                    // A re-attached run that ended while nobody watched.
                    self.commit(vec![self.event(
                        &run,
                        Event::JobRunRunning(proto::JobRunRunning {
                            executor: live.name.to_string(),
                            handle: "re-attached".into(),
                        }),
                    )])
                    .await?;
                }
                inner.slots.release(live.grant);
                let executor = Arc::clone(&live.executor);
                self.on_exit(&run, live, outcome).await?;
                // Recorded: the executor may drop what it kept for a
                // re-attach.
                if let Err(e) = executor.forget(&run).await {
                    tracing::warn!(job_run_id = %run, error = %e, "the executor could not forget an ended run");
                }
                Ok(())
            }
        }
    }

    async fn on_exit(
        &mut self,
        run: &str,
        live: LiveRun,
        outcome: Outcome,
    ) -> Result<(), BuildError> {
        let task = live.task;
        let outputs = self.plan.task(task).config.outputs.clone();
        let outcome = match (&live.stop, outcome) {
            // A run stopped for its timeout ends as a timeout failure (unless
            // it finished first).
            (Some(Stop::Timeout(limit)), Outcome::Canceled { .. } | Outcome::Failed { .. }) => {
                let reason = format!("timeout: the run passed its limit of {limit:?}");
                self.commit(vec![self.event(
                    run,
                    Event::JobRunFailed(proto::JobRunFailed {
                        stage: FailureStage::Timeout as i32,
                        reason: reason.clone(),
                        retryable: true,
                    }),
                )])
                .await?;
                self.failed += 1;
                return self.attempt_failed(task, run, reason, true).await;
            }
            (_, outcome) => outcome,
        };
        match outcome {
            Outcome::Succeeded { .. } => {
                self.succeeded += 1;
                let mut events = vec![
                    self.event(
                        run,
                        Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {}),
                    ),
                    self.event(
                        run,
                        Event::JobRunSucceeded(proto::JobRunSucceeded {
                            manifest: Some(Box::new(proto::PartitionManifest {
                                outputs: outputs.iter().map(PartitionRef::to_proto).collect(),
                                task: Some(self.plan.task(task).to_proto()),
                                ..Default::default()
                            })),
                        }),
                    ),
                ];
                events.extend(status_events(
                    self.build,
                    run,
                    &outputs,
                    PartitionStatus::Available,
                ));
                self.tasks[task.index()].run = None;
                self.set_status(task, TaskStatus::Done);
                self.built.extend(outputs.iter().cloned());
                let downstream: Vec<TaskId> = self.plan.downstream(task).map(|(t, _)| t).collect();
                self.inputs_ready(downstream);
                self.end_covered(task, &TaskEnd::Built);
                self.commit(events).await?;
                // Committed available: the claim ends now.
                self.end_task(task, TaskEnd::Built);
                Ok(())
            }
            Outcome::Failed {
                stage,
                reason,
                exit,
                retryable,
            } => {
                let mut events = Vec::new();
                if stage == FailureStage::Metadata {
                    events.push(self.event(
                        run,
                        Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {}),
                    ));
                    events.push(self.event(
                        run,
                        Event::JobRunMetadataFailed(proto::JobRunMetadataFailed {
                            reason: reason.clone(),
                        }),
                    ));
                } else {
                    events.push(self.event(
                        run,
                        Event::JobRunTaskFailed(proto::JobRunTaskFailed {
                            exit: exit.map(ExitStatus::to_proto),
                        }),
                    ));
                }
                events.push(self.event(
                    run,
                    Event::JobRunFailed(proto::JobRunFailed {
                        stage: stage as i32,
                        reason: reason.clone(),
                        retryable,
                    }),
                ));
                self.commit(events).await?;
                self.failed += 1;
                self.attempt_failed(task, run, reason, retryable).await
            }
            Outcome::MissingDeps { missing_deps, .. } => {
                self.commit(vec![self.event(
                    run,
                    Event::JobRunMissingDeps(proto::JobRunMissingDeps {
                        missing_deps: missing_deps.iter().map(MissingDeps::to_proto).collect(),
                    }),
                )])
                .await?;
                self.on_missing_deps(task, run, &missing_deps, live.launched_seq)
                    .await
            }
            Outcome::Canceled { reason } => {
                let source = match &live.stop {
                    Some(Stop::Cancel { source, .. }) => *source,
                    _ => CancelSource::Unspecified,
                };
                let mut events = vec![self.event(
                    run,
                    Event::JobRunCanceled(proto::JobRunCanceled {
                        reason: reason.clone(),
                        source: source as i32,
                    }),
                )];
                events.extend(status_events(
                    self.build,
                    run,
                    &outputs,
                    PartitionStatus::Failed,
                ));
                self.commit(events).await?;
                self.canceled += 1;
                let reason = format!("canceled: {reason}");
                if self.ending.is_some() {
                    self.not_built(task, reason);
                    Ok(())
                } else {
                    // One run cancelled on its own: the task cannot finish.
                    self.task_failed(task, run, reason, false).await
                }
            }
        }
    }

    /// MissingDeps (seed 000): plan the missing refs under this request,
    /// then run the task again once they are built. Not a retry: the
    /// attempt stays.
    async fn on_missing_deps(
        &mut self,
        task: TaskId,
        run: &str,
        missing_deps: &[MissingDeps],
        launched_seq: u64,
    ) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let mut seen = HashSet::new();
        let missing: Vec<PartitionRef> = missing_deps
            .iter()
            .flat_map(|m| m.missing.iter())
            .filter(|r| seen.insert(*r))
            .cloned()
            .collect();
        let listed = missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let limit = inner.settings.max_missing_deps_reruns;
        if self.ending.is_some() {
            self.not_built(task, format!("missing dependencies {listed}; not rerun"));
            return Ok(());
        }
        if self.tasks[task.index()].reruns >= limit {
            let reason = format!(
                "missing dependencies {listed} after {limit} reruns (max_missing_deps_reruns)"
            );
            return self.task_failed(task, run, reason, true).await;
        }
        let stale = {
            let state = inner.lock_state();
            missing.iter().find_map(|r| {
                state
                    .partition(r)
                    .filter(|e| e.status == PartitionStatus::Available && e.seq <= launched_seq)
                    .map(|_| r.clone())
            })
        };
        if let Some(r) = stale {
            let reason = format!(
                "the job reported {r} missing, but it was available when the run started; rebuilding cannot help"
            );
            return self.task_failed(task, run, reason, true).await;
        }
        let request = AnalyzeRequest::new([]).with_build_request_id(self.build.id.clone());
        let mut plan = self.plan.clone();
        let new_tasks = match Orchestrator::planner(&inner)
            .add_inputs(&mut plan, task, &missing, &request)
            .await
        {
            Ok(new_tasks) => new_tasks,
            Err(e) => {
                let reason = format!("missing dependencies {listed} cannot be built: {e}");
                return self.task_failed(task, run, reason, true).await;
            }
        };
        self.grow(plan, &new_tasks);
        let state = &mut self.tasks[task.index()];
        state.reruns += 1;
        state.previous = Some(run.to_owned());
        state.run = None;
        self.set_status(task, TaskStatus::Waiting);
        // Count what each new task and the rerun wait for; queue what is
        // ready.
        let mut doomed = Vec::new();
        for t in new_tasks.iter().copied().chain([task]) {
            let mut waiting = 0;
            let mut failed_upstream = None;
            for (u, _) in self.plan.upstream(t) {
                match &self.tasks[u.index()].status {
                    TaskStatus::Done => {}
                    TaskStatus::NotBuilt(why) => {
                        failed_upstream = Some(format!(
                            "upstream job {} did not build: {why}",
                            self.plan.task(u).job
                        ));
                    }
                    _ => waiting += 1,
                }
            }
            self.tasks[t.index()].waiting_on = waiting;
            if let Err(why) = &self.tasks[t.index()].route {
                doomed.push((t, format!("unschedulable: {why}")));
            } else if let Some(why) = failed_upstream {
                doomed.push((t, why));
            } else if waiting == 0 {
                self.queue(t);
            }
        }
        self.commit(Vec::new()).await?;
        for (t, why) in doomed {
            let run = self.tasks[t.index()].run.clone().unwrap_or_default();
            self.task_failed(t, &run, why, false).await?;
        }
        Ok(())
    }

    /// A run failed: retry per the job's policy (a new run, after a backoff
    /// with jitter), or fail the task for good.
    async fn attempt_failed(
        &mut self,
        task: TaskId,
        run: &str,
        reason: String,
        retryable: bool,
    ) -> Result<(), BuildError> {
        let policy = self.plan.task(task).config.hints.retry;
        let attempt = self.tasks[task.index()].attempt;
        if !retryable
            || attempt >= policy.max_attempts
            || (self.ending.is_some() && !self.hosts(task))
        {
            let reason = if attempt > 1 {
                format!("{reason} (attempt {attempt} of {})", policy.max_attempts)
            } else {
                reason
            };
            return self.task_failed(task, run, reason, true).await;
        }
        let state = &mut self.tasks[task.index()];
        state.attempt = attempt + 1;
        state.previous = Some(run.to_owned());
        state.run = None;
        self.set_status(task, TaskStatus::Backoff);
        self.arm(backoff(&policy, attempt, run), Timer::Retry(task.index()));
        Ok(())
    }

    fn not_built(&mut self, task: TaskId, reason: String) {
        self.tasks[task.index()].run = None;
        self.end_task(task, TaskEnd::Failed(reason.clone()));
        self.set_status(task, TaskStatus::NotBuilt(reason.clone()));
        if self.covers.contains_key(&task.index()) {
            self.end_covered(task, &TaskEnd::Failed(reason));
        }
    }

    /// This request's claim on a task's outputs (made now if it has none):
    /// a concurrent request that needs one waits for it instead of building
    /// it again. Called in the commit turn only.
    fn publish(&mut self, task: TaskId) -> Arc<Claim> {
        if let Some(claim) = self.published.get(&task.index()) {
            return Arc::clone(claim);
        }
        let claim = Claim::new(self.build.id.clone(), None);
        let mut building = self.build.inner.building();
        for o in &self.plan.task(task).config.outputs {
            building.insert(o.clone(), Arc::clone(&claim));
        }
        drop(building);
        self.published.insert(task.index(), Arc::clone(&claim));
        claim
    }

    /// Ends a task's claim and tells the requests waiting on it how the
    /// task ended. A task built ends its claim only once its outputs are
    /// committed available, so no request finds it neither claimed nor
    /// built.
    fn end_task(&mut self, task: TaskId, end: TaskEnd) {
        let Some(claim) = self.published.remove(&task.index()) else {
            return;
        };
        release(
            &mut self.build.inner.building(),
            &claim,
            &self.plan.task(task).config.outputs,
        );
        claim.finish(end);
    }

    /// Stops waiting on other requests' claims: this request leaves each as
    /// a waiter, and an owner that kept a run only for its waiters hears
    /// when none is left. Returns the runs this request was attached to.
    fn leave_claims(&mut self) -> Vec<String> {
        let inner = Arc::clone(&self.build.inner);
        let mut runs = Vec::new();
        for claim in std::mem::take(&mut self.joined) {
            claim.leave(&self.build.id);
            if let Some(run) = claim.run() {
                runs.push(run);
            }
            let controls = inner.controls();
            if !claim.has_waiter(|w| controls.contains_key(w))
                && let Some(tx) = controls.get(&claim.owner)
            {
                let _ = tx.send(Control::Unwaited {
                    claim: Arc::clone(&claim),
                });
            }
        }
        runs
    }

    /// Whether another live request waits on this task's claim: then the
    /// task's run is kept (hosted) when this request ends early.
    fn hosts(&self, task: TaskId) -> bool {
        let Some(claim) = self.published.get(&task.index()) else {
            return false;
        };
        let controls = self.build.inner.controls();
        claim.has_waiter(|w| w != self.build.id && controls.contains_key(w))
    }

    /// The task of one of this request's queued, launching or running runs.
    fn task_of_run(&self, run: &str) -> Option<TaskId> {
        if let Some(live) = self.runs.get(run) {
            return Some(live.task);
        }
        self.tasks
            .iter()
            .position(|t| t.run.as_deref() == Some(run))
            .map(TaskId::new)
    }

    /// Readers of every partition the plan found being built by another
    /// request count it as one more input; whether they wait for that
    /// request's claim, or it was built, or must be built here, is decided
    /// at the first commit (planning's answer is a hint).
    fn delegate_in_progress(&mut self) {
        let in_progress: Vec<PartitionRef> = self
            .plan
            .in_progress()
            .iter()
            .map(|p| p.partition.clone())
            .collect();
        if in_progress.is_empty() {
            return;
        }
        let wanted: HashSet<&PartitionRef> = in_progress.iter().collect();
        let mut readers: HashMap<PartitionRef, Vec<TaskId>> = HashMap::new();
        for (id, t) in self.plan.tasks() {
            for input in t.config.materialized_inputs() {
                if wanted.contains(input) {
                    readers.entry(input.clone()).or_default().push(id);
                }
            }
        }
        self.note_delegated(&in_progress);
        for partition in &in_progress {
            let tasks = readers.remove(partition).unwrap_or_default();
            for t in &tasks {
                self.tasks[t.index()].waiting_on += 1;
            }
            self.external.insert(partition.clone(), tasks);
        }
        self.hinted = in_progress;
    }

    /// A partition another request was building is built, or will not be.
    async fn on_external_end(
        &mut self,
        partition: PartitionRef,
        end: TaskEnd,
    ) -> Result<(), BuildError> {
        if let Some(task) = self.covering.remove(&partition) {
            self.external.remove(&partition);
            if self.tasks[task.index()].status != TaskStatus::Waiting {
                return Ok(());
            }
            return match end {
                TaskEnd::Built | TaskEnd::Pending => {
                    let left = self.cover_left.entry(task.index()).or_insert(1);
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        if self.outputs_available(task) {
                            self.set_status(task, TaskStatus::Done);
                            self.end_task(task, TaskEnd::Built);
                            let downstream: Vec<TaskId> =
                                self.plan.downstream(task).map(|(d, _)| d).collect();
                            self.inputs_ready(downstream);
                        } else {
                            // Others built some of its outputs, not all:
                            // the task is decided again (and runs for all of
                            // them: a config covers the task as a whole).
                            self.cover_left.remove(&task.index());
                            self.queue(task);
                        }
                    }
                    self.commit(Vec::new()).await
                }
                TaskEnd::Failed(_)
                    if self.ending.is_none() && self.unbuilt_elsewhere(&partition) =>
                {
                    // Nobody built it (its builder never started it, lost it,
                    // or was cancelled): this request decides again, from
                    // scratch, whether to build the task or wait.
                    tracing::info!(%partition, "a partition another request did not build is decided again here");
                    self.covering.retain(|p, t| {
                        let other = *t == task;
                        if other {
                            self.external.remove(p);
                        }
                        !other
                    });
                    self.cover_left.remove(&task.index());
                    self.delegated.retain(|p| *p != partition);
                    self.unbuffered.insert(task.index());
                    self.queue(task);
                    self.commit(Vec::new()).await
                }
                TaskEnd::Failed(why) => {
                    self.delegated.retain(|p| *p != partition);
                    let reason = format!("the run building {partition} failed: {why}");
                    self.task_failed(task, "", reason, false).await
                }
            };
        }
        // A wait whose task decided again meanwhile is stale.
        let Some(tasks) = self.external.remove(&partition) else {
            return Ok(());
        };
        match end {
            TaskEnd::Built | TaskEnd::Pending => {
                self.inputs_ready(tasks);
                self.commit(Vec::new()).await
            }
            TaskEnd::Failed(why) => {
                let orphaned = self.orphaned.remove(&partition);
                if self.ending.is_none() && (orphaned || self.unbuilt_elsewhere(&partition)) {
                    return self.build_it_here(partition, tasks, &why).await;
                }
                let reason = format!("input {partition}, built by another request, failed: {why}");
                if self.delegated.contains(&partition) {
                    self.failures.push(reason.clone());
                    self.delegated.retain(|p| *p != partition);
                    self.delegated_failed.push(NotBuilt {
                        partition: partition.clone(),
                        reason: reason.clone(),
                    });
                }
                for t in tasks {
                    if self.tasks[t.index()].status == TaskStatus::Waiting {
                        self.task_failed(t, "", reason.clone(), false).await?;
                    }
                }
                if self.failures.last() == Some(&reason)
                    && !self.build.options.keep_going
                    && self.ending.is_none()
                {
                    self.begin_ending(Ending::FailFast(reason)).await?;
                }
                Ok(())
            }
        }
    }

    /// Whether every output of `task` is available.
    fn outputs_available(&self, task: TaskId) -> bool {
        let state = self.build.inner.lock_state();
        self.plan.task(task).config.outputs.iter().all(|o| {
            state
                .partition(o)
                .is_some_and(|e| e.status == PartitionStatus::Available)
        })
    }

    /// Whether the other request's run of `partition` ended without the job
    /// failing on its own (it never started, was lost, or was cancelled):
    /// then building it here is what the waiter wants, not a failure.
    fn unbuilt_elsewhere(&self, partition: &PartitionRef) -> bool {
        let state = self.build.inner.lock_state();
        let Some(entry) = state.partition(partition) else {
            return true;
        };
        if entry.status == PartitionStatus::Available || entry.status == PartitionStatus::Building {
            return false;
        }
        state
            .run(&entry.job_run_id)
            .is_none_or(|r| matches!(r.state, RunState::Lost | RunState::Canceled))
            || state.run(&entry.job_run_id).is_some_and(|r| {
                r.state == RunState::Failed
                    && r.failure
                        .as_deref()
                        .is_some_and(|f| f.starts_with("the run never started"))
            })
    }

    /// Plans `partition` into this request's plan (its builder elsewhere did
    /// not build it) and makes `readers` wait for the new task.
    async fn build_it_here(
        &mut self,
        partition: PartitionRef,
        readers: Vec<TaskId>,
        why: &str,
    ) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let request = AnalyzeRequest::new([partition.clone()])
            .with_build_request_id(self.build.id.clone())
            .force(true);
        let mut plan = self.plan.clone();
        let planned = Orchestrator::planner(&inner)
            .extend(&mut plan, &request)
            .await;
        let producer = plan.producer(&partition);
        let (new_tasks, producer) = match (planned, producer) {
            (Ok(new_tasks), Some(producer)) => (new_tasks, producer),
            (Err(e), _) => {
                let reason = format!(
                    "input {partition} was not built elsewhere ({why}) and cannot be planned here: {e}"
                );
                for t in readers {
                    self.task_failed(t, "", reason.clone(), false).await?;
                }
                return Ok(());
            }
            (Ok(_), None) => {
                let reason = format!("input {partition} was not built elsewhere ({why})");
                for t in readers {
                    self.task_failed(t, "", reason.clone(), false).await?;
                }
                return Ok(());
            }
        };
        tracing::info!(%partition, why, "building here a partition another request did not build");
        self.grow(plan, &new_tasks);
        for r in readers {
            if self.plan.connect(producer, r, partition.clone()).is_err() {
                self.task_failed(r, "", format!("input {partition} closes a cycle"), false)
                    .await?;
            }
        }
        self.delegated.retain(|p| *p != partition);
        for t in new_tasks {
            let waiting = self
                .plan
                .upstream(t)
                .filter(|(u, _)| self.tasks[u.index()].status != TaskStatus::Done)
                .count() as u32;
            self.tasks[t.index()].waiting_on = waiting;
            if let Err(why) = &self.tasks[t.index()].route {
                let why = format!("unschedulable: {why}");
                self.task_failed(t, "", why, false).await?;
            } else if waiting == 0 {
                self.queue(t);
            }
        }
        self.commit(Vec::new()).await
    }

    /// A task failed for good. With keep-going, what depends on it is not
    /// built and the rest goes on; otherwise the request fails fast.
    async fn task_failed(
        &mut self,
        task: TaskId,
        run: &str,
        reason: String,
        mark_outputs: bool,
    ) -> Result<(), BuildError> {
        let job = self.plan.task(task).job.clone();
        let mut events = if mark_outputs && !run.is_empty() {
            status_events(
                self.build,
                run,
                &self.plan.task(task).config.outputs,
                PartitionStatus::Failed,
            )
        } else {
            Vec::new()
        };
        if !run.is_empty() {
            events.push(self.event(
                "",
                Event::JobFailure(proto::JobFailure {
                    job_run_id: run.to_owned(),
                }),
            ));
        }
        self.not_built(task, reason.clone());
        self.failures.push(format!("job {job} failed: {reason}"));
        self.commit(events).await?;
        if self.build.options.keep_going {
            self.skip_downstream(task);
            return Ok(());
        }
        if self.ending.is_none() {
            self.begin_ending(Ending::FailFast(format!("job {job} failed: {reason}")))
                .await?;
        }
        Ok(())
    }

    /// Keep-going: every task downstream of `task` will not be built.
    fn skip_downstream(&mut self, task: TaskId) {
        let job = self.plan.task(task).job.clone();
        let mut stack: Vec<TaskId> = self.plan.downstream(task).map(|(t, _)| t).collect();
        while let Some(t) = stack.pop() {
            if self.tasks[t.index()].status != TaskStatus::Waiting {
                continue;
            }
            self.not_built(t, format!("upstream job {job} did not build"));
            stack.extend(self.plan.downstream(t).map(|(d, _)| d));
        }
    }

    /// Fail-fast or cancel: stop launching, end queued runs, ask running
    /// ones to stop, and wait (at most `kill_grace`) for their confirmation.
    async fn begin_ending(&mut self, ending: Ending) -> Result<(), BuildError> {
        let (reason, source) = ending.stop_reason();
        self.ending = Some(ending);
        // Decided in one commit turn: no request joins a claim of this one
        // between the decision to keep a run for its waiters and the cancels.
        let inner = Arc::clone(&self.build.inner);
        let turn = inner.commit_lock.lock().await;
        let mut events = Vec::new();
        // Nothing more is waited for from other requests: not their
        // buffers, not their runs.
        self.buffer_waits = FuturesUnordered::new();
        self.claiming.clear();
        self.hinted.clear();
        self.leave_claims();
        for (partition, task) in std::mem::take(&mut self.covering) {
            if self.tasks[task.index()].status == TaskStatus::Waiting {
                self.not_built(task, format!("not run: {reason}"));
            }
            self.delegated.retain(|p| *p != partition);
        }
        for i in 0..self.tasks.len() {
            if self.tasks[i].status == TaskStatus::Waiting
                && self.tasks[i].waiting_on == 0
                && self.published.contains_key(&i)
                && self.tasks[i].run.is_none()
                && !self
                    .own_buffers
                    .values()
                    .any(|ts| ts.iter().any(|t| t.index() == i))
            {
                // In another request's buffer.
                self.not_built(TaskId::new(i), format!("not run: {reason}"));
            }
        }
        let owned: Vec<String> = self.own_buffers.keys().cloned().collect();
        self.flush_now.extend(owned);
        self.waits = FuturesUnordered::new();
        for (partition, tasks) in std::mem::take(&mut self.external) {
            for t in tasks {
                if self.tasks[t.index()].status == TaskStatus::Waiting {
                    self.not_built(t, format!("not run: {reason}"));
                }
            }
            if let Some(i) = self.delegated.iter().position(|p| *p == partition) {
                self.delegated.remove(i);
                self.delegated_failed.push(NotBuilt {
                    partition,
                    reason: format!("not waited for: {reason}"),
                });
            }
        }
        // Queued runs end at once (nothing was started), but for those
        // another live request waits on: this request keeps them (it hosts
        // them), detached, and runs them for the waiters.
        let queued: Vec<TaskId> = self.queues.iter_mut().flat_map(|q| q.drain(..)).collect();
        for t in queued {
            if self.hosts(t) {
                let pool = self.tasks[t.index()]
                    .route
                    .as_ref()
                    .map_or(0, |r| r.grant.pool);
                self.queues[pool].push_back(t);
                if let Some(run) = self.tasks[t.index()].run.clone() {
                    events.push(self.event(
                        &run,
                        Event::JobRunDetached(proto::JobRunDetached {
                            reason: format!("{reason}; another request still waits on the run"),
                        }),
                    ));
                }
                continue;
            }
            if let Some(run) = self.tasks[t.index()].run.clone() {
                events.push(self.event(
                    &run,
                    Event::JobRunCanceled(proto::JobRunCanceled {
                        reason: reason.clone(),
                        source: source as i32,
                    }),
                ));
                self.canceled += 1;
            }
            self.not_built(t, format!("canceled before it started: {reason}"));
        }
        let backoffs: Vec<usize> = self
            .timers
            .iter()
            .filter_map(|(_, t)| match t {
                Timer::Retry(i) => Some(*i),
                _ => None,
            })
            .collect();
        let dropped: HashSet<usize> = backoffs
            .into_iter()
            .filter(|i| !self.hosts(TaskId::new(*i)))
            .collect();
        self.timers
            .retain(|(_, t)| !matches!(t, Timer::Retry(i) if dropped.contains(i)));
        for i in dropped {
            self.not_built(TaskId::new(i), format!("not retried: {reason}"));
        }
        let mut running: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| r.stop.is_none())
            .map(|(id, _)| id.clone())
            .chain(
                self.launching_ids
                    .iter()
                    .filter(|(_, stop)| stop.is_none())
                    .map(|(id, _)| id.clone()),
            )
            .collect();
        running.sort();
        // A run another live request waits on is not cancelled: this request
        // detaches from it and keeps it until it ends, for the other one.
        let shared: Vec<String> = running
            .iter()
            .filter(|r| self.task_of_run(r).is_some_and(|t| self.hosts(t)))
            .cloned()
            .collect();
        running.retain(|r| !shared.contains(r));
        for r in &shared {
            events.push(self.event(
                r,
                Event::JobRunDetached(proto::JobRunDetached {
                    reason: format!("{reason}; another request still waits on the run"),
                }),
            ));
        }
        // graph.build draws job failure -> job cancels -> build failed; the
        // cancels are recorded even when nothing else runs, so that an
        // orchestrator restarting on the log knows the request was ending.
        events.push(self.event(
            "",
            Event::JobCancels(proto::JobCancels {
                job_run_ids: running.clone(),
            }),
        ));
        for r in &running {
            events.push(self.event(
                r,
                Event::JobRunKillRequested(proto::JobRunKillRequested {
                    reason: reason.clone(),
                    source: source as i32,
                }),
            ));
        }
        self.commit_in_turn(events).await?;
        drop(turn);
        let grace = self.build.inner.settings.kill_grace;
        self.arm(grace, Timer::CancelWait);
        for r in running {
            self.stop_run(
                &r,
                Stop::Cancel {
                    reason: reason.clone(),
                    source,
                },
            )
            .await;
        }
        Ok(())
    }

    /// Asks the executor to stop a run (the kill request is already
    /// recorded).
    async fn stop_run(&mut self, run: &str, stop: Stop) {
        if let Some(pending) = self.launching_ids.get_mut(run) {
            // Stopped once its launch comes back.
            pending.get_or_insert(stop);
            return;
        }
        let Some(live) = self.runs.get_mut(run) else {
            return;
        };
        let reason = match &stop {
            Stop::Timeout(limit) => format!("timeout after {limit:?}"),
            Stop::Cancel { reason, .. } => reason.clone(),
        };
        live.stop = Some(stop);
        let executor = Arc::clone(&live.executor);
        if let Err(e) = executor.cancel(run, &reason).await {
            tracing::warn!(job_run_id = %run, error = %e, "asking a run to stop failed");
        }
    }

    async fn on_control(&mut self, control: Control) -> Result<(), BuildError> {
        match control {
            Control::FlushBuffer { job } => self.flush(&job).await,
            Control::Unwaited { claim } => self.unwaited(&claim).await,
            Control::Cancel { reason } => {
                if matches!(self.ending, Some(Ending::Canceled { .. })) {
                    return Ok(());
                }
                self.begin_ending(Ending::Canceled {
                    reason,
                    source: CancelSource::User,
                })
                .await
            }
            Control::CancelRun { job_run_id, reason } => {
                if self.stop_asked(&job_run_id).is_some() {
                    return self.kill(&job_run_id, reason, CancelSource::User).await;
                }
                // A queued run ends at once.
                let queued = self
                    .tasks
                    .iter()
                    .position(|t| {
                        t.status == TaskStatus::Ready && t.run.as_deref() == Some(&job_run_id)
                    })
                    .map(TaskId::new);
                if let Some(task) = queued {
                    for q in &mut self.queues {
                        q.retain(|t| *t != task);
                    }
                    self.commit(vec![self.event(
                        &job_run_id,
                        Event::JobRunCanceled(proto::JobRunCanceled {
                            reason: reason.clone(),
                            source: CancelSource::User as i32,
                        }),
                    )])
                    .await?;
                    self.canceled += 1;
                    return self
                        .task_failed(task, &job_run_id, format!("canceled: {reason}"), true)
                        .await;
                }
                Ok(())
            }
        }
    }

    /// No live request waits any more on this request's `claim`: when this
    /// request is ending and kept the claim's run only for the waiters, the
    /// run goes (cancelled if queued or waiting out a backoff, asked to stop
    /// if running).
    async fn unwaited(&mut self, claim: &Arc<Claim>) -> Result<(), BuildError> {
        let Some((reason, source)) = self.ending.as_ref().map(Ending::stop_reason) else {
            return Ok(());
        };
        let Some(task) = self
            .published
            .iter()
            .find(|(_, c)| Arc::ptr_eq(c, claim))
            .map(|(t, _)| TaskId::new(*t))
        else {
            return Ok(());
        };
        if self.hosts(task) {
            return Ok(());
        }
        let reason = format!("{reason}; no request waits on it any more");
        let run = self.tasks[task.index()].run.clone();
        match self.tasks[task.index()].status {
            TaskStatus::Ready => {
                for q in &mut self.queues {
                    q.retain(|t| *t != task);
                }
                let mut events = Vec::new();
                if let Some(run) = &run {
                    events.push(self.event(
                        run,
                        Event::JobRunCanceled(proto::JobRunCanceled {
                            reason: reason.clone(),
                            source: source as i32,
                        }),
                    ));
                    self.canceled += 1;
                }
                self.not_built(task, format!("canceled before it started: {reason}"));
                self.commit(events).await
            }
            TaskStatus::Backoff => {
                self.timers
                    .retain(|(_, t)| !matches!(t, Timer::Retry(i) if *i == task.index()));
                self.not_built(task, format!("not retried: {reason}"));
                Ok(())
            }
            TaskStatus::Running => match run {
                Some(run) => self.kill(&run, reason, source).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// For a launching or running run of this request, whether it was
    /// asked to stop (`None` for any other run).
    fn stop_asked(&self, run: &str) -> Option<bool> {
        match (self.runs.get(run), self.launching_ids.get(run)) {
            (Some(live), _) => Some(live.stop.is_some()),
            (None, Some(pending)) => Some(pending.is_some()),
            (None, None) => None,
        }
    }

    /// Asks a launching or running run to stop, once: `JobRunKillRequested`
    /// committed, then the executor told.
    async fn kill(
        &mut self,
        run: &str,
        reason: String,
        source: CancelSource,
    ) -> Result<(), BuildError> {
        if self.stop_asked(run) != Some(false) {
            return Ok(());
        }
        self.commit(vec![self.event(
            run,
            Event::JobRunKillRequested(proto::JobRunKillRequested {
                reason: reason.clone(),
                source: source as i32,
            }),
        )])
        .await?;
        self.stop_run(run, Stop::Cancel { reason, source }).await;
        Ok(())
    }

    async fn on_timers(&mut self) -> Result<(), BuildError> {
        let now = Instant::now();
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            self.on_timer(timer).await?;
        }
        Ok(())
    }

    async fn on_timer(&mut self, timer: Timer) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        match timer {
            Timer::BufferClose(job) => self.flush(&job).await,
            Timer::Retry(i) => {
                self.queue(TaskId::new(i));
                self.commit(Vec::new()).await
            }
            Timer::Timeout(run) => {
                let Some(live) = self.runs.get(&run) else {
                    return Ok(());
                };
                if live.stop.is_some() {
                    return Ok(());
                }
                let limit = self
                    .plan
                    .task(live.task)
                    .config
                    .hints
                    .timeout
                    .unwrap_or_default();
                self.commit(vec![self.event(
                    &run,
                    Event::JobRunKillRequested(proto::JobRunKillRequested {
                        reason: format!("timeout: the run passed its limit of {limit:?}"),
                        source: CancelSource::Timeout as i32,
                    }),
                )])
                .await?;
                self.stop_run(&run, Stop::Timeout(limit)).await;
                Ok(())
            }
            Timer::Liveness(run) => {
                let limit = inner.settings.liveness_timeout;
                let Some(live) = self.runs.get(&run) else {
                    return Ok(());
                };
                let deadline = live.last_seen + limit;
                if deadline > Instant::now() {
                    self.timers.insert((deadline, Timer::Liveness(run)));
                    return Ok(());
                }
                self.lost(&run).await
            }
            Timer::BuildHeartbeat => {
                let c = self.counts;
                self.commit(vec![self.event(
                    "",
                    Event::BuildHeartbeat(proto::BuildHeartbeat {
                        counts: Some(proto::RunCounts {
                            buffering: 0,
                            queued: c.ready,
                            running: c.running,
                            succeeded: self.succeeded,
                            failed: self.failed,
                            canceled: self.canceled,
                        }),
                    }),
                )])
                .await?;
                self.arm(
                    inner.settings.build_heartbeat_interval,
                    Timer::BuildHeartbeat,
                );
                Ok(())
            }
            Timer::CancelWait => {
                // Runs asked to stop that did not confirm are let go; a run
                // this request detached from (another live request waits on
                // it) is kept and followed to its end, or it would run on
                // with nobody watching it.
                let left: Vec<String> = self
                    .runs
                    .iter()
                    .filter(|(_, live)| live.stop.is_some())
                    .map(|(id, _)| id.clone())
                    .collect();
                for run in left {
                    if let Some(live) = self.runs.remove(&run) {
                        tracing::warn!(job_run_id = %run, "the run's cancel was not confirmed within kill_grace; the build ends without it");
                        inner.slots.release(live.grant);
                        self.not_built(
                            live.task,
                            "its cancel was not confirmed within kill_grace".into(),
                        );
                    }
                }
                Ok(())
            }
        }
    }

    /// No sign of life for the liveness timeout: the run is Lost, its
    /// slots are freed, later updates are fenced, and the task is retried.
    async fn lost(&mut self, run: &str) -> Result<(), BuildError> {
        let inner = Arc::clone(&self.build.inner);
        let Some(live) = self.runs.remove(run) else {
            return Ok(());
        };
        inner.slots.release(live.grant);
        let limit = inner.settings.liveness_timeout;
        let reason = format!("lost: no sign of life for {limit:?}");
        self.commit(vec![
            self.event(
                run,
                Event::JobRunKillRequested(proto::JobRunKillRequested {
                    reason: reason.clone(),
                    source: CancelSource::Timeout as i32,
                }),
            ),
            self.event(
                run,
                Event::JobRunLost(proto::JobRunLost {
                    last_seen_ns: live.last_seen_ns,
                }),
            ),
        ])
        .await?;
        self.failed += 1;
        if let Err(e) = live.executor.cancel(run, &reason).await {
            tracing::warn!(job_run_id = %run, error = %e, "asking a lost run to stop failed");
        }
        if self.ending.is_some() {
            self.not_built(live.task, reason);
            return Ok(());
        }
        self.attempt_failed(live.task, run, reason, true).await
    }

    async fn finish(mut self) -> Result<BuildOutcome, BuildError> {
        // Tasks left unbuilt tell whoever waits on them; runs of other
        // requests this one waited on are let go.
        let open: Vec<usize> = self.published.keys().copied().collect();
        for t in open {
            self.end_task(
                TaskId::new(t),
                TaskEnd::Failed("the request building it ended first".into()),
            );
        }
        let mut attached = std::mem::take(&mut self.attached);
        attached.extend(self.leave_claims());
        attached.sort();
        attached.dedup();
        let mut detach = Vec::new();
        {
            let state = self.build.inner.lock_state();
            for run in &attached {
                if state
                    .run(run)
                    .is_some_and(|r| !r.state.is_terminal() && r.waiters.contains(&self.build.id))
                {
                    detach.push(run.clone());
                }
            }
        }
        let detach: Vec<BuildEvent> = detach
            .iter()
            .map(|run| {
                self.event(
                    run,
                    Event::JobRunDetached(proto::JobRunDetached {
                        reason: "the request ended".into(),
                    }),
                )
            })
            .collect();
        self.commit(detach).await?;
        let built = std::mem::take(&mut self.built);
        let mut not_built = std::mem::take(&mut self.delegated_failed);
        let fallback = match &self.ending {
            Some(Ending::FailFast(f)) => format!("not run: {f}"),
            Some(Ending::Canceled { reason, .. }) => format!("not run: canceled: {reason}"),
            None => "not run".to_owned(),
        };
        for (id, task) in self.plan.tasks() {
            match &self.tasks[id.index()].status {
                TaskStatus::Done => {}
                TaskStatus::NotBuilt(reason) => {
                    not_built.extend(task.config.outputs.iter().map(|p| NotBuilt {
                        partition: p.clone(),
                        reason: reason.clone(),
                    }))
                }
                _ => not_built.extend(task.config.outputs.iter().map(|p| NotBuilt {
                    partition: p.clone(),
                    reason: fallback.clone(),
                })),
            }
        }
        let skipped = self.plan.available().to_vec();
        let canceled = matches!(self.ending, Some(Ending::Canceled { .. }));
        let last = match self.ending.take() {
            Some(Ending::Canceled { reason, source }) => {
                Event::BuildCanceled(proto::BuildCanceled {
                    reason,
                    source: source as i32,
                })
            }
            _ if self.failures.is_empty() && not_built.is_empty() => {
                Event::BuildSucceeded(proto::BuildSucceeded {
                    built: built.iter().map(PartitionRef::to_proto).collect(),
                    delegated: self.delegated.iter().map(PartitionRef::to_proto).collect(),
                    skipped: skipped.iter().map(PartitionRef::to_proto).collect(),
                })
            }
            _ => Event::BuildFailed(proto::BuildFailed {
                reason: match self.failures.len() {
                    0 => fallback,
                    1 => self.failures[0].clone(),
                    n => format!("{} (and {} more failures)", self.failures[0], n - 1),
                },
            }),
        };
        self.commit(vec![self.event("", last)]).await?;
        if let Some(dir) = &self.scratch
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            tracing::warn!(path = %dir.display(), error = %e, "removing the scratch directory failed");
        }
        Ok(BuildOutcome {
            build_request_id: self.build.id.clone(),
            built,
            skipped,
            delegated: std::mem::take(&mut self.delegated),
            not_built,
            canceled,
        })
    }
}
