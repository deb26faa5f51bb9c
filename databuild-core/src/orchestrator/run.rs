//! One build request, from receipt to its last event.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{BuildError, BuildOptions, BuildOutcome, Inner, NotBuilt, Orchestrator};
use crate::bel::{BuildEvent, Event};
use crate::clock::sleep_until_some;
use crate::executor::{
    Executor, ExecutorError, ExitStatus, JobRunSpec, Outcome, RunUpdate, log_path,
};
use crate::job::Launch;
use crate::partition::PartitionRef;
use crate::plan::{JobGraph, TaskId};
use crate::planner::AnalyzeRequest;
use crate::proto::{self, CancelSource, FailureStage, PartitionStatus};

/// Where a task of the plan is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskStatus {
    /// Waiting for inputs.
    Waiting,
    /// Ready, waiting for a slot.
    Ready,
    /// A run is in flight.
    Running,
    /// Built.
    Done,
    /// Failed, or never ran because something failed.
    NotBuilt(String),
}

pub(super) struct Build {
    inner: Arc<Inner>,
    requested: Vec<PartitionRef>,
    options: BuildOptions,
    id: String,
}

/// The run of one plan.
struct Execution<'a> {
    build: &'a Build,
    plan: JobGraph,
    status: Vec<TaskStatus>,
    waiting_on: Vec<usize>,
    ready: VecDeque<TaskId>,
    runs: HashMap<String, (TaskId, Arc<dyn Executor>)>,
    executors: Vec<Arc<dyn Executor>>,
    failing: Option<String>,
    /// The attempt the next run of each task is.
    attempts: Vec<u32>,
    /// The run each task's next run retries.
    previous: Vec<Option<String>>,
    /// Tasks waiting out a retry backoff, by deadline.
    retries: std::collections::BTreeSet<(tokio::time::Instant, usize)>,
    updates_tx: mpsc::UnboundedSender<(String, RunUpdate)>,
    updates_rx: mpsc::UnboundedReceiver<(String, RunUpdate)>,
    remaining: (u64, u64, u64),
}

impl Build {
    pub(super) fn new(
        inner: Arc<Inner>,
        requested: Vec<PartitionRef>,
        options: BuildOptions,
    ) -> Self {
        let id = inner.ids.next_id();
        Self {
            inner,
            requested,
            options,
            id,
        }
    }

    fn event(&self, job_run_id: &str, event: Event) -> BuildEvent {
        self.inner.event(&self.id, job_run_id, event)
    }

    async fn fail(&self, reason: String) -> Result<(), BuildError> {
        self.inner
            .commit(vec![
                self.event("", Event::BuildFailed(proto::BuildFailed { reason })),
            ])
            .await
    }

    pub(super) async fn run(self) -> Result<BuildOutcome, BuildError> {
        let refs: Vec<proto::PartitionRef> =
            self.requested.iter().map(PartitionRef::to_proto).collect();
        self.inner
            .commit(vec![
                self.event(
                    "",
                    Event::BuildRequestReceived(proto::BuildRequestReceived {
                        requested: refs,
                        options: Some(proto::BuildOptions {
                            force: self.options.force,
                            keep_going: false,
                        }),
                    }),
                ),
                self.event("", Event::BuildPlanning(proto::BuildPlanning {})),
            ])
            .await?;
        let request = AnalyzeRequest::new(self.requested.iter().cloned())
            .with_build_request_id(self.id.clone())
            .force(self.options.force);
        let plan = match Orchestrator::planner(&self.inner)
            .analyze_request(&request)
            .await
        {
            Ok(plan) => plan,
            Err(e) => {
                self.fail(format!("analysis failed: {e}")).await?;
                return Err(e.into());
            }
        };
        let executors = self.route(&plan).await?;
        self.inner
            .commit(vec![self.event(
                "",
                Event::BuildExecuting(proto::BuildExecuting {
                    plan_digest: plan.digest(),
                }),
            )])
            .await?;
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let n = plan.len();
        let mut exec = Execution {
            build: &self,
            waiting_on: (0..n)
                .map(|i| plan.upstream(TaskId::new(i)).count())
                .collect(),
            status: vec![TaskStatus::Waiting; n],
            plan,
            ready: VecDeque::new(),
            runs: HashMap::new(),
            executors,
            failing: None,
            attempts: vec![1; n],
            previous: vec![None; n],
            retries: std::collections::BTreeSet::new(),
            updates_tx,
            updates_rx,
            remaining: (0, 0, 0),
        };
        exec.run().await
    }

    /// The executor of each task, or the build fails as unschedulable.
    async fn route(&self, plan: &JobGraph) -> Result<Vec<Arc<dyn Executor>>, BuildError> {
        let mut executors = Vec::with_capacity(plan.len());
        let mut unschedulable = Vec::new();
        for (_, task) in plan.tasks() {
            let job = self.inner.graph.job(task.job.as_str());
            let chosen = match job.map(|j| j.launch()) {
                None => Err("the job is not in the graph".to_owned()),
                Some(Launch::InProcess(_)) => Ok(Arc::clone(&self.inner.in_process)),
                Some(_) => match &self.inner.executor {
                    None => Err("no executor for process jobs is configured".to_owned()),
                    Some(executor) => {
                        let labels = executor.info().labels;
                        match task
                            .config
                            .hints
                            .label_requirements
                            .iter()
                            .find(|(k, v)| labels.get(*k) != Some(v))
                        {
                            Some((k, v)) => Err(format!("no executor has label {k}={v}")),
                            None => Ok(Arc::clone(executor)),
                        }
                    }
                },
            };
            match chosen {
                Ok(e) => executors.push(e),
                Err(reason) => unschedulable.push((task, reason)),
            }
        }
        if unschedulable.is_empty() {
            return Ok(executors);
        }
        let tasks = unschedulable
            .iter()
            .map(|(task, reason)| proto::UnschedulableTask {
                task: Some(task.to_proto()),
                reason: reason.clone(),
            })
            .collect();
        let listed: Vec<(String, String)> = unschedulable
            .iter()
            .map(|(task, reason)| (task.job.to_string(), reason.clone()))
            .collect();
        self.inner
            .commit(vec![self.event(
                "",
                Event::JobsUnschedulable(proto::JobsUnschedulable { tasks }),
            )])
            .await?;
        let err = BuildError::Unschedulable { tasks: listed };
        self.fail(err.to_string()).await?;
        Err(err)
    }
}

/// The wait before attempt `failed + 1`: the initial backoff doubled per
/// attempt, capped, times a jitter in [0.5, 1) drawn from the failed run's
/// id (so injected ids make it reproducible).
fn backoff(policy: &crate::job::RetryPolicy, failed: u32, run: &str) -> std::time::Duration {
    use std::hash::BuildHasher;
    let doubled = policy
        .initial_backoff
        .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    let capped = doubled.min(policy.max_backoff);
    let h = foldhash::fast::FixedState::with_seed(7).hash_one(run);
    let jitter = 0.5 + (h % 1000) as f64 / 2000.0;
    capped.mul_f64(jitter)
}

fn status_events(
    build: &Build,
    run: &str,
    outputs: &[PartitionRef],
    status: PartitionStatus,
) -> Vec<BuildEvent> {
    outputs
        .iter()
        .map(|o| {
            build.event(
                run,
                Event::PartitionStatusChanged(proto::PartitionStatusChanged {
                    partition: Some(o.to_proto()),
                    status: status as i32,
                    job_run_id: run.to_owned(),
                }),
            )
        })
        .collect()
}

impl Execution<'_> {
    async fn run(&mut self) -> Result<BuildOutcome, BuildError> {
        for i in 0..self.plan.len() {
            if self.waiting_on[i] == 0 {
                self.status[i] = TaskStatus::Ready;
                self.ready.push_back(TaskId::new(i));
            }
        }
        loop {
            self.dispatch().await?;
            self.report_remaining().await?;
            if self.runs.is_empty() && self.retries.is_empty() {
                break;
            }
            let next_retry = self.retries.first().map(|(at, _)| *at);
            tokio::select! {
                update = self.updates_rx.recv() => {
                    let Some((run, update)) = update else { break };
                    self.on_update(run, update).await?;
                }
                () = sleep_until_some(next_retry) => {
                    let now = tokio::time::Instant::now();
                    while let Some(&(at, task)) = self.retries.first() {
                        if at > now {
                            break;
                        }
                        self.retries.pop_first();
                        self.status[task] = TaskStatus::Ready;
                        self.ready.push_back(TaskId::new(task));
                    }
                }
            }
        }
        self.finish().await
    }

    async fn report_remaining(&mut self) -> Result<(), BuildError> {
        let count = |f: fn(&TaskStatus) -> bool| self.status.iter().filter(|s| f(s)).count() as u64;
        let now = (
            count(|s| *s == TaskStatus::Ready),
            count(|s| *s == TaskStatus::Running),
            count(|s| {
                matches!(
                    s,
                    TaskStatus::Waiting | TaskStatus::Ready | TaskStatus::Running
                )
            }),
        );
        if now != self.remaining {
            self.remaining = now;
            let (ready, running, remaining) = now;
            self.build
                .inner
                .commit(vec![self.build.event(
                    "",
                    Event::RemainingJobs(proto::RemainingJobs {
                        ready,
                        running,
                        remaining,
                    }),
                )])
                .await?;
        }
        Ok(())
    }

    /// Launches ready tasks while slots allow.
    async fn dispatch(&mut self) -> Result<(), BuildError> {
        while self.failing.is_none() && self.runs.len() < self.build.inner.parallelism {
            let Some(task) = self.ready.pop_front() else {
                return Ok(());
            };
            let inner = &self.build.inner;
            let run = inner.ids.next_id();
            let t = self.plan.task(task).clone();
            let mut events = vec![
                self.build.event(
                    &run,
                    Event::JobRunQueued(proto::JobRunQueued {
                        task: Some(t.to_proto()),
                        attempt: self.attempts[task.index()],
                        previous_job_run_id: self.previous[task.index()]
                            .clone()
                            .unwrap_or_default(),
                    }),
                ),
                self.build.event(
                    &run,
                    Event::JobScheduled(proto::JobScheduled {
                        job_run_id: run.clone(),
                    }),
                ),
            ];
            events.extend(status_events(
                self.build,
                &run,
                &t.config.outputs,
                PartitionStatus::Building,
            ));
            events.push(self.build.event(
                &run,
                Event::JobRunConfigValidated(proto::JobRunConfigValidated {}),
            ));
            // The launch record is committed before the launch.
            inner.commit(events).await?;
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
            spec.attempt = self.attempts[task.index()];
            spec.previous_job_run_id = self.previous[task.index()].clone();
            let executor = Arc::clone(&self.executors[task.index()]);
            self.status[task.index()] = TaskStatus::Running;
            match executor.launch(spec).await {
                Ok(mut updates) => {
                    self.runs.insert(run.clone(), (task, executor));
                    let tx = self.updates_tx.clone();
                    tokio::spawn(async move {
                        while let Some(u) = updates.next().await {
                            if tx.send((run.clone(), u)).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => {
                    let (reason, retryable) = match &e {
                        ExecutorError::Launch {
                            reason, retryable, ..
                        } => (reason.clone(), *retryable),
                        other => (other.to_string(), false),
                    };
                    let events = vec![
                        self.build.event(
                            &run,
                            Event::JobRunLaunchFailed(proto::JobRunLaunchFailed {
                                reason: reason.clone(),
                                retryable,
                            }),
                        ),
                        self.build.event(
                            &run,
                            Event::JobRunFailed(proto::JobRunFailed {
                                stage: FailureStage::Launch as i32,
                                reason: reason.clone(),
                                retryable,
                            }),
                        ),
                    ];
                    inner.commit(events).await?;
                    self.attempt_failed(task, &run, format!("launch failed: {reason}"), retryable)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn on_update(&mut self, run: String, update: RunUpdate) -> Result<(), BuildError> {
        let Some((task, executor)) = self.runs.get(&run).map(|(t, e)| (*t, Arc::clone(e))) else {
            return Ok(());
        };
        let build = self.build;
        match update {
            RunUpdate::Running { handle } => {
                build
                    .inner
                    .commit(vec![build.event(
                        &run,
                        Event::JobRunRunning(proto::JobRunRunning {
                            executor: executor.info().name,
                            handle,
                        }),
                    )])
                    .await
            }
            // Liveness is tracked in memory; BEL heartbeats are throttled
            // (with liveness, next in issue #3), so none are written here.
            RunUpdate::Heartbeat { .. } => Ok(()),
            RunUpdate::Exited(outcome) => {
                self.runs.remove(&run);
                self.on_exit(task, &run, outcome).await
            }
        }
    }

    async fn on_exit(
        &mut self,
        task: TaskId,
        run: &str,
        outcome: Outcome,
    ) -> Result<(), BuildError> {
        let build = self.build;
        let outputs = self.plan.task(task).config.outputs.clone();
        let exit_of = |exit: Option<ExitStatus>| proto::JobRunTaskFailed {
            exit: exit.map(|e| match e {
                ExitStatus::Code(c) => proto::job_run_task_failed::Exit::ExitCode(c),
                ExitStatus::Signal(s) => proto::job_run_task_failed::Exit::Signal(s),
            }),
        };
        match outcome {
            Outcome::Succeeded { .. } => {
                let mut events = vec![
                    build.event(
                        run,
                        Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {}),
                    ),
                    build.event(
                        run,
                        Event::JobRunSucceeded(proto::JobRunSucceeded {
                            manifest: Some(proto::PartitionManifest {
                                outputs: outputs.iter().map(PartitionRef::to_proto).collect(),
                                task: Some(self.plan.task(task).to_proto()),
                                ..Default::default()
                            }),
                        }),
                    ),
                ];
                events.extend(status_events(
                    build,
                    run,
                    &outputs,
                    PartitionStatus::Available,
                ));
                build.inner.commit(events).await?;
                self.status[task.index()] = TaskStatus::Done;
                let downstream: Vec<TaskId> = self.plan.downstream(task).map(|(t, _)| t).collect();
                for d in downstream {
                    self.waiting_on[d.index()] -= 1;
                    if self.waiting_on[d.index()] == 0
                        && self.status[d.index()] == TaskStatus::Waiting
                    {
                        self.status[d.index()] = TaskStatus::Ready;
                        self.ready.push_back(d);
                    }
                }
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
                    events.push(build.event(
                        run,
                        Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {}),
                    ));
                    events.push(build.event(
                        run,
                        Event::JobRunMetadataFailed(proto::JobRunMetadataFailed {
                            reason: reason.clone(),
                        }),
                    ));
                } else {
                    events.push(build.event(run, Event::JobRunTaskFailed(exit_of(exit))));
                }
                events.push(build.event(
                    run,
                    Event::JobRunFailed(proto::JobRunFailed {
                        stage: stage as i32,
                        reason: reason.clone(),
                        retryable,
                    }),
                ));
                build.inner.commit(events).await?;
                self.attempt_failed(task, run, reason, retryable).await
            }
            Outcome::MissingDeps { missing_deps, .. } => {
                let missing: Vec<String> = missing_deps
                    .iter()
                    .flat_map(|m| m.missing.iter().map(ToString::to_string))
                    .collect();
                build
                    .inner
                    .commit(vec![
                        build.event(
                            run,
                            Event::JobRunMissingDeps(proto::JobRunMissingDeps {
                                missing_deps: missing_deps
                                    .iter()
                                    .map(|m| proto::MissingDeps {
                                        impacted: m
                                            .impacted
                                            .iter()
                                            .map(PartitionRef::to_proto)
                                            .collect(),
                                        missing: m
                                            .missing
                                            .iter()
                                            .map(PartitionRef::to_proto)
                                            .collect(),
                                    })
                                    .collect(),
                            }),
                        ),
                    ])
                    .await?;
                let reason = format!(
                    "missing dependencies {} (building them and rerunning is not supported yet)",
                    missing.join(", ")
                );
                self.task_failed(task, run, reason).await
            }
            Outcome::Canceled { reason } => {
                let mut events = vec![build.event(
                    run,
                    Event::JobRunCanceled(proto::JobRunCanceled {
                        reason: reason.clone(),
                        source: CancelSource::FailFast as i32,
                    }),
                )];
                events.extend(status_events(build, run, &outputs, PartitionStatus::Failed));
                build.inner.commit(events).await?;
                self.status[task.index()] = TaskStatus::NotBuilt(format!("canceled: {reason}"));
                Ok(())
            }
        }
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
        let attempt = self.attempts[task.index()];
        if !retryable || attempt >= policy.max_attempts || self.failing.is_some() {
            let reason = if attempt > 1 {
                format!("{reason} (attempt {attempt} of {})", policy.max_attempts)
            } else {
                reason
            };
            return self.task_failed(task, run, reason).await;
        }
        self.attempts[task.index()] = attempt + 1;
        self.previous[task.index()] = Some(run.to_owned());
        let delay = backoff(&policy, attempt, run);
        self.status[task.index()] = TaskStatus::Waiting;
        self.retries
            .insert((tokio::time::Instant::now() + delay, task.index()));
        Ok(())
    }

    /// A task failed for good: fail fast, cancelling the request's other
    /// runs.
    async fn task_failed(
        &mut self,
        task: TaskId,
        run: &str,
        reason: String,
    ) -> Result<(), BuildError> {
        let build = self.build;
        let outputs = self.plan.task(task).config.outputs.clone();
        let mut events = status_events(build, run, &outputs, PartitionStatus::Failed);
        events.push(build.event(
            "",
            Event::JobFailure(proto::JobFailure {
                job_run_id: run.to_owned(),
            }),
        ));
        self.status[task.index()] = TaskStatus::NotBuilt(reason.clone());
        if self.failing.is_none() {
            self.failing = Some(format!("job {} failed: {reason}", self.plan.task(task).job));
            for (_, waiting) in std::mem::take(&mut self.retries) {
                self.status[waiting] =
                    TaskStatus::NotBuilt("not retried: another job failed".into());
            }
            let mut running: Vec<String> = self.runs.keys().cloned().collect();
            running.sort();
            events.push(build.event(
                "",
                Event::JobCancels(proto::JobCancels {
                    job_run_ids: running.clone(),
                }),
            ));
            for r in &running {
                events.push(build.event(
                    r,
                    Event::JobRunKillRequested(proto::JobRunKillRequested {
                        reason: "fail fast: another job of the build failed".into(),
                        source: CancelSource::FailFast as i32,
                    }),
                ));
            }
            build.inner.commit(events).await?;
            for r in running {
                if let Some((_, executor)) = self.runs.get(&r)
                    && let Err(e) = executor
                        .cancel(&r, "fail fast: another job of the build failed")
                        .await
                {
                    tracing::warn!(job_run_id = %r, error = %e, "cancelling a run failed");
                }
            }
            return Ok(());
        }
        build.inner.commit(events).await
    }

    async fn finish(&mut self) -> Result<BuildOutcome, BuildError> {
        let build = self.build;
        let mut built = Vec::new();
        let mut not_built = Vec::new();
        for (id, task) in self.plan.tasks() {
            match &self.status[id.index()] {
                TaskStatus::Done => built.extend(task.config.outputs.iter().cloned()),
                TaskStatus::NotBuilt(reason) => {
                    not_built.extend(task.config.outputs.iter().map(|p| NotBuilt {
                        partition: p.clone(),
                        reason: reason.clone(),
                    }))
                }
                _ => not_built.extend(task.config.outputs.iter().map(|p| {
                    NotBuilt {
                        partition: p.clone(),
                        reason: self
                            .failing
                            .clone()
                            .map_or_else(|| "not run".to_owned(), |f| format!("not run: {f}")),
                    }
                })),
            }
        }
        let skipped = self.plan.available().to_vec();
        let last = match &self.failing {
            None => Event::BuildSucceeded(proto::BuildSucceeded {
                built: built.iter().map(PartitionRef::to_proto).collect(),
                delegated: Vec::new(),
                skipped: skipped.iter().map(PartitionRef::to_proto).collect(),
            }),
            Some(reason) => Event::BuildFailed(proto::BuildFailed {
                reason: reason.clone(),
            }),
        };
        build.inner.commit(vec![build.event("", last)]).await?;
        Ok(BuildOutcome {
            build_request_id: build.id.clone(),
            built,
            skipped,
            not_built,
        })
    }
}
