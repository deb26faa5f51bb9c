//! One build request, from receipt to its plan and routes; the run of the
//! plan is [`super::execution`].

use crate::plan::JobGraph;
use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::execution::{Control, Execution};
use super::recovery::Resumption;
use super::slots::Grant;
use super::{BuildError, BuildOptions, BuildOutcome, Inner, Orchestrator};
use crate::bel::{BuildEvent, Event};
use crate::executor::{Executor, ExecutorInfo};
use crate::job::Launch;
use crate::partition::PartitionRef;
use crate::plan::Task;
use crate::planner::AnalyzeRequest;
use crate::proto::{self, PartitionStatus};
use crate::state::RequestState;

/// Where a task runs and what it holds while it does.
#[derive(Debug, Clone)]
pub(super) struct Routed {
    pub(super) executor: Arc<dyn Executor>,
    /// The executor's name, for `JobRunRunning`.
    pub(super) name: Arc<str>,
    /// Whether the executor reports heartbeats (so liveness is watched).
    pub(super) heartbeats: bool,
    pub(super) grant: Grant,
}

/// A task's route, or why it has none.
pub(super) type Route = Result<Routed, String>;

pub(super) struct Build {
    pub(super) inner: Arc<Inner>,
    pub(super) requested: Vec<PartitionRef>,
    pub(super) options: BuildOptions,
    pub(super) id: String,
    control: Option<mpsc::UnboundedReceiver<Control>>,
    /// The executors' descriptions, asked once per request.
    process_info: Option<ExecutorInfo>,
    in_process_info: ExecutorInfo,
    /// What a request resumed after a restart takes over (in a mutex so
    /// that `&Build` is `Send`: run updates are not `Sync`).
    resumption: std::sync::Mutex<Option<Resumption>>,
    /// A plan made earlier (a saved plan) to run instead of analysing.
    given: Option<JobGraph>,
}

impl Drop for Build {
    fn drop(&mut self) {
        self.inner.controls().remove(&self.id);
    }
}

impl Build {
    /// A request with a fresh id, registered so that it can be cancelled.
    pub(super) fn new(
        inner: Arc<Inner>,
        requested: Vec<PartitionRef>,
        options: BuildOptions,
    ) -> Self {
        let id = inner.ids.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        inner.controls().insert(id.clone(), tx);
        Self {
            process_info: inner.executor.as_ref().map(|e| e.info()),
            in_process_info: inner.in_process.info(),
            inner,
            requested,
            options,
            id,
            control: Some(rx),
            resumption: std::sync::Mutex::new(None),
            given: None,
        }
    }

    /// A request that runs `plan` (made earlier) instead of analysing.
    pub(super) fn with_plan(inner: Arc<Inner>, plan: JobGraph, options: BuildOptions) -> Self {
        let mut build = Self::new(inner, plan.requested().to_vec(), options);
        build.given = Some(plan);
        build
    }

    /// A request a previous orchestrator left open, under its id and
    /// options, registered so that it can be cancelled.
    pub(super) fn resume(inner: Arc<Inner>, resumption: Resumption) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = resumption.request.build_request_id.clone();
        inner.controls().insert(id.clone(), tx);
        Self {
            process_info: inner.executor.as_ref().map(|e| e.info()),
            in_process_info: inner.in_process.info(),
            requested: resumption.request.requested.clone(),
            options: resumption.request.options,
            inner,
            id,
            control: Some(rx),
            resumption: std::sync::Mutex::new(Some(resumption)),
            given: None,
        }
    }

    pub(super) fn event(&self, job_run_id: &str, event: Event) -> BuildEvent {
        self.inner.event(&self.id, job_run_id, event)
    }

    async fn fail(&self, reason: String) -> Result<(), BuildError> {
        self.inner
            .commit(vec![
                self.event("", Event::BuildFailed(proto::BuildFailed { reason })),
            ])
            .await
    }

    /// Runs the request on a task of its own. (A plain function, so the
    /// orchestrator's load, which resumes requests, need not know the
    /// type of [`run`](Self::run)'s future.)
    pub(super) fn spawn(self) -> super::BuildTask {
        tokio::spawn(self.run())
    }

    async fn run(mut self) -> Result<BuildOutcome, BuildError> {
        self.inner.ensure_loaded().await?;
        let resumption = self
            .resumption
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let from = resumption.as_ref().map(|r| r.request.state);
        let mut events = Vec::new();
        if from.is_none() {
            let refs: Vec<proto::PartitionRef> =
                self.requested.iter().map(PartitionRef::to_proto).collect();
            events.push(self.event(
                "",
                Event::BuildRequestReceived(proto::BuildRequestReceived {
                    requested: refs,
                    options: Some(proto::BuildOptions {
                        force: self.options.force,
                        keep_going: self.options.keep_going,
                    }),
                }),
            ));
        }
        if resumption.as_ref().is_some_and(|r| r.request.analyzing) {
            events.push(self.event(
                "",
                Event::AnalyzeFailed(proto::AnalyzeFailed {
                    reason: "abandoned: the orchestrator stopped during the analysis".into(),
                }),
            ));
        }
        if matches!(from, None | Some(RequestState::Received)) {
            events.push(self.event("", Event::BuildPlanning(proto::BuildPlanning {})));
        }
        self.inner.commit(events).await?;
        // What is built from here on was built while this request planned.
        let planned_from = self.inner.lock_state().last_seq();
        // A resumed request plans again: what it already built is skipped
        // (even when forced), and the outputs of the runs it takes over are
        // planned as its own tasks.
        let (own, requested) = match &resumption {
            None => (HashSet::new(), self.requested.clone()),
            Some(r) => {
                let own: HashSet<PartitionRef> = r
                    .takeovers
                    .iter()
                    .flat_map(|t| super::recovery::outputs(&t.run))
                    .collect();
                let state = self.inner.lock_state();
                let requested = self
                    .requested
                    .iter()
                    .filter(|p| {
                        !self.options.force
                            || !state.partition(p).is_some_and(|e| {
                                e.status == PartitionStatus::Available
                                    && state
                                        .run(&e.job_run_id)
                                        .is_some_and(|run| run.started_by == self.id)
                            })
                    })
                    .cloned()
                    .collect();
                (own, requested)
            }
        };
        let request = AnalyzeRequest::new(requested)
            .with_build_request_id(self.id.clone())
            .force(self.options.force);
        let planned = match self.given.take() {
            Some(given) => self.given_plan(given).await,
            None => {
                Orchestrator::planner_with(&self.inner, own)
                    .analyze_request(&request)
                    .await
            }
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                if let Some(r) = resumption {
                    let events = self
                        .inner
                        .release_takeovers(r.takeovers, "the resumed request could not be planned");
                    self.inner.commit(events).await?;
                }
                self.fail(format!("analysis failed: {e}")).await?;
                return Err(e.into());
            }
        };
        let routes: Vec<Route> = plan.tasks().map(|(_, t)| self.route(t)).collect();
        let unschedulable: Vec<(&Task, &String)> = plan
            .tasks()
            .zip(&routes)
            .filter_map(|((_, t), r)| r.as_ref().err().map(|why| (t, why)))
            .collect();
        if !unschedulable.is_empty() {
            let tasks = unschedulable
                .iter()
                .map(|(task, reason)| proto::UnschedulableTask {
                    task: Some(task.to_proto()),
                    reason: (*reason).clone(),
                })
                .collect();
            let listed: Vec<(String, String)> = unschedulable
                .iter()
                .map(|(task, reason)| (task.job.to_string(), (*reason).clone()))
                .collect();
            self.inner
                .commit(vec![self.event(
                    "",
                    Event::JobsUnschedulable(proto::JobsUnschedulable { tasks }),
                )])
                .await?;
            if !self.options.keep_going {
                if let Some(r) = resumption {
                    let events = self
                        .inner
                        .release_takeovers(r.takeovers, "the resumed request is unschedulable");
                    self.inner.commit(events).await?;
                }
                let err = BuildError::Unschedulable { tasks: listed };
                self.fail(err.to_string()).await?;
                return Err(err);
            }
        }
        if from != Some(RequestState::Executing) {
            self.inner
                .commit(vec![self.event(
                    "",
                    Event::BuildExecuting(proto::BuildExecuting {
                        plan_digest: plan.digest(),
                    }),
                )])
                .await?;
        }
        let control = self.control.take();
        let mut execution = Execution::new(&self, plan, routes, control, planned_from);
        if let Some(r) = resumption {
            execution.take_over(r.takeovers, r.lost);
        }
        execution.run().await
    }

    /// A saved plan, as this request's analysis: what was built since it
    /// was made is dropped from it (unless forced), and it is recorded as
    /// an analysis that found the plan at once (`analyze_started`,
    /// `job_graph_emitted`, the plan stored as a blob).
    async fn given_plan(&self, given: JobGraph) -> Result<JobGraph, crate::planner::PlanError> {
        let plan = if self.options.force {
            given
        } else {
            let state = self.inner.lock_state();
            given.without_available(|p| {
                state
                    .partition(p)
                    .is_some_and(|e| e.status == PartitionStatus::Available)
            })?
        };
        let digest = self
            .inner
            .bel
            .put_blob(plan.encode())
            .await
            .map_err(crate::planner::PlanError::from)?;
        let requested: Vec<proto::PartitionRef> = plan
            .requested()
            .iter()
            .map(PartitionRef::to_proto)
            .collect();
        self.inner
            .commit(vec![
                self.event(
                    "",
                    Event::AnalyzeStarted(proto::AnalyzeStarted {
                        requested: requested.clone(),
                        missing: Vec::new(),
                    }),
                ),
                self.event(
                    "",
                    Event::JobGraphEmitted(proto::JobGraphEmitted {
                        plan_digest: digest.to_string(),
                        tasks: plan.len() as u64,
                        edges: plan.edge_count() as u64,
                    }),
                ),
            ])
            .await
            .map_err(|e| crate::planner::PlanError::InvalidPlan {
                reason: format!("recording the plan failed: {e}"),
            })?;
        Ok(plan)
    }

    /// Where `task` runs: in-process jobs on the built-in executor, others
    /// on the configured one when its labels match; and the pool slots it
    /// takes.
    pub(super) fn route(&self, task: &Task) -> Route {
        let job = self.inner.graph.job(task.job.as_str());
        let (executor, info) = match job.map(|j| j.launch()) {
            None => return Err("the job is not in the graph".to_owned()),
            Some(Launch::InProcess(_)) => (&self.inner.in_process, &self.in_process_info),
            Some(_) => match (&self.inner.executor, &self.process_info) {
                (Some(executor), Some(info)) => {
                    if let Err((k, v)) = info.can_take(&task.config.hints.label_requirements) {
                        return Err(if info.placements.is_empty() {
                            format!("no executor has label {k}={v}")
                        } else {
                            format!("no executor or engine has label {k}={v}")
                        });
                    }
                    (executor, info)
                }
                _ => return Err("no executor for process jobs is configured".to_owned()),
            },
        };
        let hints = &task.config.hints;
        let grant = self
            .inner
            .slots
            .resolve(hints.pool.as_deref(), hints.effective_slots())?;
        Ok(Routed {
            executor: Arc::clone(executor),
            name: Arc::from(info.name.as_str()),
            heartbeats: info.capabilities.watches_liveness(),
            grant,
        })
    }
}

/// The wait before attempt `failed + 1`: the initial backoff doubled per
/// attempt, capped, times a jitter in [0.5, 1) drawn from the failed run's
/// id (so injected ids make it reproducible).
pub(super) fn backoff(
    policy: &crate::job::RetryPolicy,
    failed: u32,
    run: &str,
) -> std::time::Duration {
    use std::hash::BuildHasher;
    let doubled = policy
        .initial_backoff
        .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    let capped = doubled.min(policy.max_backoff);
    let h = foldhash::fast::FixedState::with_seed(7).hash_one(run);
    let jitter = 0.5 + (h % 1000) as f64 / 2000.0;
    capped.mul_f64(jitter)
}

/// One `PartitionStatusChanged` per output.
pub(super) fn status_events(
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
