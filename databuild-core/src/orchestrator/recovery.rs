//! What an orchestrator finds open in the log when it starts: the runs and
//! requests of a previous orchestrator that stopped (seed 000's job
//! re-entrance, DESIGN.md "Exactly-once launch, re-entrance").
//!
//! Open requests go on: each is resumed under its id with its options,
//! planned again against the catalog, and takes over its open runs. A run
//! only queued goes back to the queue under the slot limits (a restart
//! never launches a burst). A scheduled run the executor never launched is
//! launched under the same id. A started run the executor can recover (the
//! local executor's runner mode, where runs outlive the orchestrator) is
//! re-attached, running or already ended. A run nobody can follow is Lost,
//! its `Building` partitions become `Failed`, and its task runs again as the
//! next attempt. Unconfirmed kills are sent again.
//!
//! A request that had begun to end (fail fast or a cancel: `JobCancels`) is
//! closed: its queued runs are cancelled, its started runs re-attached and
//! followed to their end (and stopped, when a kill was asked), and the
//! request fails. No job run id is launched twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::claims::{Claim, release};
use super::run::Build;
use super::{BuildError, Inner, TaskEnd};
use crate::bel::{BuildEvent, Event};
use crate::executor::{Executor, ExitStatus, Outcome, RunUpdate, RunUpdates};
use crate::job::Launch;
use crate::job::protocol::MissingDeps;
use crate::partition::PartitionRef;
use crate::proto::{self, CancelSource, FailureStage, PartitionStatus};
use crate::state::{BuildRequest, JobRun, RunState};
use futures::StreamExt;

const WHY: &str = "the orchestrator that ran it stopped before it ended";

/// An open run a resumed request takes over.
pub(super) struct Takeover {
    pub(super) run: JobRun,
    pub(super) how: Resume,
    /// The claim on the run's outputs, registered for other requests that
    /// wait on them.
    pub(super) claim: Arc<Claim>,
}

/// How a resumed request takes over a run.
pub(super) enum Resume {
    /// Only queued: back to the queue.
    Queue,
    /// Scheduled and never launched: launch it under the same id.
    Launch,
    /// Started, and known to the executor: its updates from now on.
    Attach(RunUpdates),
}

/// An open request to resume, and what it takes over.
pub(super) struct Resumption {
    pub(super) request: BuildRequest,
    pub(super) takeovers: Vec<Takeover>,
    /// Its runs that were lost: their tasks' next runs follow them.
    pub(super) lost: Vec<JobRun>,
}

impl Inner {
    /// Closes, resumes or adopts what a previous orchestrator left open.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<(), BuildError> {
        let (open, requests): (Vec<JobRun>, Vec<BuildRequest>) = {
            let state = self.lock_state();
            let mut runs: Vec<JobRun> = state
                .runs()
                .filter(|r| !r.state.is_terminal())
                .cloned()
                .collect();
            runs.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
            let requests = state
                .requests()
                .filter(|r| !r.is_terminal())
                .cloned()
                .collect();
            (runs, requests)
        };
        // Runs the executor still knows, running or ended meanwhile (`None`
        // when it cannot say).
        let known = self.surviving_runs(&open).await;
        let mut resumptions: HashMap<String, Resumption> = requests
            .iter()
            .filter(|r| !r.stopping)
            .map(|r| {
                (
                    r.build_request_id.clone(),
                    Resumption {
                        request: r.clone(),
                        takeovers: Vec::new(),
                        lost: Vec::new(),
                    },
                )
            })
            .collect();
        let now = self.clock.now_ns();
        let mut events = Vec::new();
        let mut adopt: Vec<(JobRun, RunUpdates)> = Vec::new();
        for run in open {
            let ev = |event| {
                BuildEvent::at(now, event)
                    .for_request(&run.started_by)
                    .for_job_run(&run.job_run_id)
            };
            let executor = self.executor_of(&run);
            let resumed = resumptions.get_mut(&run.started_by);
            match run.state {
                RunState::Queued => match resumed {
                    Some(r) => {
                        r.takeovers.push(Takeover::new(run, Resume::Queue));
                        continue;
                    }
                    None => events.push(ev(Event::JobRunCanceled(proto::JobRunCanceled {
                        reason: WHY.into(),
                        source: CancelSource::Shutdown as i32,
                    }))),
                },
                RunState::Scheduled | RunState::Running => {
                    let listed = known
                        .as_ref()
                        .map(|k| k.contains(&run.job_run_id))
                        .filter(|_| executor.is_some());
                    match (listed, executor, resumed) {
                        (Some(true), Some(executor), resumed) => {
                            match executor.reattach(&run.job_run_id).await {
                                Ok(updates) => {
                                    if run.kill_requested {
                                        let _ = executor.cancel(&run.job_run_id, WHY).await;
                                    }
                                    match resumed {
                                        Some(r) => r
                                            .takeovers
                                            .push(Takeover::new(run, Resume::Attach(updates))),
                                        None => adopt.push((run, updates)),
                                    }
                                    continue;
                                }
                                Err(e) => {
                                    tracing::warn!(job_run_id = %run.job_run_id, error = %e, "re-attaching failed");
                                }
                            }
                        }
                        // Written ahead, never launched: launched now, same id.
                        (Some(false), Some(_), Some(r))
                            if run.state == RunState::Scheduled && !run.kill_requested =>
                        {
                            r.takeovers.push(Takeover::new(run, Resume::Launch));
                            continue;
                        }
                        _ => {}
                    }
                    events.push(ev(Event::JobRunLost(proto::JobRunLost {
                        last_seen_ns: run.last_seen_ns,
                    })));
                    if let Some(r) = resumptions.get_mut(&run.started_by) {
                        r.lost.push(run.clone());
                    }
                }
                RunState::TaskSucceeded => {
                    events.push(ev(Event::JobRunMetadataFailed(
                        proto::JobRunMetadataFailed { reason: WHY.into() },
                    )));
                    events.push(ev(Event::JobRunFailed(proto::JobRunFailed {
                        stage: FailureStage::Metadata as i32,
                        reason: WHY.into(),
                        retryable: true,
                    })));
                }
                _ => events.push(ev(Event::JobRunFailed(proto::JobRunFailed {
                    stage: FailureStage::Unspecified as i32,
                    reason: WHY.into(),
                    retryable: true,
                }))),
            }
            events.extend(self.failed_outputs(&run, now));
        }
        let mut closed: Vec<&BuildRequest> = requests.iter().filter(|r| r.stopping).collect();
        closed.sort_by(|a, b| a.build_request_id.cmp(&b.build_request_id));
        for r in closed {
            let id = &r.build_request_id;
            events.push(
                BuildEvent::at(
                    now,
                    Event::BuildFailed(proto::BuildFailed {
                        reason: format!("{WHY} while the request was ending (request {id})"),
                    }),
                )
                .for_request(id),
            );
        }
        let resumed = resumptions
            .values()
            .filter(|r| !r.takeovers.is_empty())
            .count();
        if !events.is_empty() || !adopt.is_empty() || !resumptions.is_empty() {
            tracing::warn!(
                closed = events.len(),
                adopted = adopt.len(),
                requests = resumptions.len(),
                with_runs = resumed,
                "recovering what the last orchestrator left open"
            );
        }
        self.commit(events).await?;
        // What resumed requests take over is being built: other requests
        // (resumed ones too) wait on it from now on.
        {
            let mut building = self.building();
            for r in resumptions.values() {
                for t in &r.takeovers {
                    for o in outputs(&t.run) {
                        building.insert(o, Arc::clone(&t.claim));
                    }
                }
            }
        }
        for (run, updates) in adopt {
            let claim = Claim::new(run.started_by.clone(), Some(run.job_run_id.clone()));
            {
                let mut building = self.building();
                for o in outputs(&run) {
                    building.insert(o, Arc::clone(&claim));
                }
            }
            tokio::spawn(Arc::clone(self).follow(run, updates, claim));
        }
        let mut resumptions: Vec<Resumption> = resumptions.into_values().collect();
        resumptions.sort_by(|a, b| a.request.build_request_id.cmp(&b.request.build_request_id));
        for r in resumptions {
            let build = Build::resume(Arc::clone(self), r);
            let id = build.id.clone();
            let task = build.spawn();
            self.resumed().push((id, task));
        }
        Ok(())
    }

    /// Lets go of takeovers a resumed request does not take: queued and
    /// never-launched runs are cancelled (the events to commit are
    /// returned), re-attached ones followed to their end apart.
    pub(super) fn release_takeovers(
        self: &Arc<Self>,
        takeovers: Vec<Takeover>,
        why: &str,
    ) -> Vec<BuildEvent> {
        let now = self.clock.now_ns();
        let mut events = Vec::new();
        for Takeover { run, how, claim } in takeovers {
            match how {
                Resume::Attach(updates) => {
                    tokio::spawn(Arc::clone(self).follow(run, updates, claim));
                }
                Resume::Queue | Resume::Launch => {
                    events.push(
                        BuildEvent::at(
                            now,
                            Event::JobRunCanceled(proto::JobRunCanceled {
                                reason: why.to_owned(),
                                source: CancelSource::Shutdown as i32,
                            }),
                        )
                        .for_request(&run.started_by)
                        .for_job_run(&run.job_run_id),
                    );
                    events.extend(self.failed_outputs(&run, now));
                    release(&mut self.building(), &claim, &outputs(&run));
                    claim.finish(TaskEnd::Failed(why.to_owned()));
                }
            }
        }
        events
    }

    /// The runs the executor still knows among `open`'s started ones, or
    /// `None` when it cannot say (it cannot recover runs, or listing failed).
    async fn surviving_runs(&self, open: &[JobRun]) -> Option<HashSet<String>> {
        let executor = self.executor.as_ref()?;
        if !executor.info().capabilities.can_recover {
            return None;
        }
        if !open
            .iter()
            .any(|r| matches!(r.state, RunState::Scheduled | RunState::Running))
        {
            return Some(HashSet::new());
        }
        match executor.list_runs().await {
            Ok(runs) => {
                // Runs the log already ended were recorded before the last
                // orchestrator could say so: let them go.
                let ended: Vec<String> = {
                    let state = self.lock_state();
                    runs.iter()
                        .filter(|r| {
                            state
                                .run(&r.job_run_id)
                                .is_some_and(|s| s.state.is_terminal())
                        })
                        .map(|r| r.job_run_id.clone())
                        .collect()
                };
                for id in ended {
                    let _ = executor.forget(&id).await;
                }
                Some(runs.into_iter().map(|r| r.job_run_id).collect())
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the runs that outlived the last orchestrator failed");
                None
            }
        }
    }

    /// The executor that can recover `run`: the configured one, for a
    /// process job it can recover (in-process runs die with their
    /// orchestrator).
    fn executor_of(&self, run: &JobRun) -> Option<&Arc<dyn Executor>> {
        let job = run.task.job.as_ref()?;
        let in_process = matches!(self.graph.job(&job.label)?.launch(), Launch::InProcess(_));
        self.executor
            .as_ref()
            .filter(|e| !in_process && e.info().capabilities.can_recover)
    }

    /// `Failed` for each output the run was building.
    fn failed_outputs(&self, run: &JobRun, now: i64) -> Vec<BuildEvent> {
        let state = self.lock_state();
        outputs(run)
            .into_iter()
            .filter(|r| {
                state.partition(r).is_some_and(|e| {
                    e.status == PartitionStatus::Building && e.job_run_id == run.job_run_id
                })
            })
            .map(|r| {
                BuildEvent::at(
                    now,
                    Event::PartitionStatusChanged(proto::PartitionStatusChanged {
                        partition: Some(r.to_proto()),
                        status: PartitionStatus::Failed as i32,
                        job_run_id: run.job_run_id.clone(),
                    }),
                )
                .for_request(&run.started_by)
                .for_job_run(&run.job_run_id)
            })
            .collect()
    }

    /// Records an adopted run's events until it ends, then tells whoever
    /// waits on its outputs.
    pub(super) async fn follow(
        self: Arc<Self>,
        run: JobRun,
        mut updates: RunUpdates,
        claim: Arc<Claim>,
    ) {
        let id = run.job_run_id.clone();
        let ev = |event| {
            BuildEvent::at(self.clock.now_ns(), event)
                .for_request(&run.started_by)
                .for_job_run(&id)
        };
        let name = self
            .executor
            .as_ref()
            .map(|e| e.info().name)
            .unwrap_or_default();
        let mut running = run.state == RunState::Running;
        let outs = outputs(&run);
        let statuses = |status: PartitionStatus| -> Vec<BuildEvent> {
            outs.iter()
                .map(|o| {
                    ev(Event::PartitionStatusChanged(
                        proto::PartitionStatusChanged {
                            partition: Some(o.to_proto()),
                            status: status as i32,
                            job_run_id: id.clone(),
                        },
                    ))
                })
                .collect()
        };
        let mut result = TaskEnd::Failed("its run's updates ended without an exit".into());
        let mut ended_run = false;
        while let Some(update) = updates.next().await {
            let mut events = Vec::new();
            let outcome = match update {
                RunUpdate::Running { handle } => {
                    if !running {
                        running = true;
                        events.push(ev(Event::JobRunRunning(proto::JobRunRunning {
                            executor: name.clone(),
                            handle,
                        })));
                    }
                    None
                }
                RunUpdate::Heartbeat { .. } => None,
                RunUpdate::NodeEvents(relayed) => {
                    events.extend(self.fresh_node_events(&id, relayed));
                    None
                }
                RunUpdate::Exited(outcome) => Some(outcome),
            };
            if let Some(outcome) = outcome {
                if !running {
                    events.push(ev(Event::JobRunRunning(proto::JobRunRunning {
                        executor: name.clone(),
                        handle: "re-attached".into(),
                    })));
                }
                let (mut terminal, status, ended) = match outcome {
                    Outcome::Succeeded { .. } => (
                        vec![
                            ev(Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {})),
                            ev(Event::JobRunSucceeded(proto::JobRunSucceeded {
                                manifest: Some(Box::new(proto::PartitionManifest {
                                    outputs: outs.iter().map(PartitionRef::to_proto).collect(),
                                    task: Some((*run.task).clone()),
                                    ..Default::default()
                                })),
                            })),
                        ],
                        PartitionStatus::Available,
                        TaskEnd::Built,
                    ),
                    Outcome::Failed {
                        stage,
                        reason,
                        exit,
                        retryable,
                    } => {
                        let mut v = if stage == FailureStage::Metadata {
                            vec![
                                ev(Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {})),
                                ev(Event::JobRunMetadataFailed(proto::JobRunMetadataFailed {
                                    reason: reason.clone(),
                                })),
                            ]
                        } else {
                            vec![ev(Event::JobRunTaskFailed(proto::JobRunTaskFailed {
                                exit: exit.map(ExitStatus::to_proto),
                            }))]
                        };
                        v.push(ev(Event::JobRunFailed(proto::JobRunFailed {
                            stage: stage as i32,
                            reason: reason.clone(),
                            retryable,
                        })));
                        (v, PartitionStatus::Failed, TaskEnd::Failed(reason))
                    }
                    Outcome::MissingDeps { missing_deps, .. } => (
                        vec![ev(Event::JobRunMissingDeps(proto::JobRunMissingDeps {
                            missing_deps: missing_deps.iter().map(MissingDeps::to_proto).collect(),
                        }))],
                        PartitionStatus::Failed,
                        TaskEnd::Failed(
                            "it reported missing dependencies; the next request plans them".into(),
                        ),
                    ),
                    Outcome::Canceled { reason } => (
                        vec![ev(Event::JobRunCanceled(proto::JobRunCanceled {
                            reason: reason.clone(),
                            source: CancelSource::Unspecified as i32,
                        }))],
                        PartitionStatus::Failed,
                        TaskEnd::Failed(format!("canceled: {reason}")),
                    ),
                };
                events.append(&mut terminal);
                events.extend(statuses(status));
                result = ended;
                ended_run = true;
            }
            if let Err(e) = self.commit(events).await {
                tracing::error!(job_run_id = %id, error = %e, "recording an adopted run failed");
                result = TaskEnd::Failed(format!("recording it failed: {e}"));
                break;
            }
            if ended_run {
                if let Some(executor) = &self.executor
                    && let Err(e) = executor.forget(&id).await
                {
                    tracing::warn!(job_run_id = %id, error = %e, "the executor could not forget an ended run");
                }
                break;
            }
        }
        release(&mut self.building(), &claim, &outs);
        claim.finish(result);
    }
}

impl Takeover {
    fn new(run: JobRun, how: Resume) -> Self {
        let claim = Claim::new(run.started_by.clone(), Some(run.job_run_id.clone()));
        Self { run, how, claim }
    }
}

/// The outputs of a run's task.
pub(super) fn outputs(run: &JobRun) -> Vec<PartitionRef> {
    run.task
        .config
        .as_ref()
        .map(|c| {
            c.outputs
                .iter()
                .filter_map(|o| PartitionRef::try_from(o).ok())
                .collect()
        })
        .unwrap_or_default()
}
