//! What an orchestrator finds open in the log when it starts: the runs and
//! requests of a previous orchestrator that stopped (seed 000's job
//! re-entrance).
//!
//! Open requests fail: their callers are gone. Queued runs are cancelled.
//! Started runs are asked of the executor: one that can recover them (the
//! local executor's runner mode, where runs outlive the orchestrator) lists
//! them, and each is re-attached, running or already ended, and adopted: its
//! remaining events are recorded as it goes, and a new request that needs
//! its outputs waits for it instead of building them again. A run the
//! executor does not know never started, or cannot be followed: it is Lost,
//! its `Building` partitions become `Failed`, and the next request builds
//! them with a new run. No job run id is launched twice.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch;

use super::{BuildError, Inner, TaskEnd};
use crate::bel::{BuildEvent, Event};
use crate::executor::{ExitStatus, Outcome, RunUpdate, RunUpdates};
use crate::job::protocol::MissingDeps;
use crate::partition::PartitionRef;
use crate::proto::{self, CancelSource, FailureStage, PartitionStatus};
use crate::state::{JobRun, RequestState, RunState};

const WHY: &str = "the orchestrator that ran it stopped before it ended";

impl Inner {
    /// Closes or adopts what a previous orchestrator left open.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<(), BuildError> {
        let open: Vec<JobRun> = {
            let state = self.lock_state();
            let mut runs: Vec<JobRun> = state
                .runs()
                .filter(|r| !r.state.is_terminal())
                .cloned()
                .collect();
            runs.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
            runs
        };
        // Runs the executor still knows, running or ended meanwhile.
        let mut known: HashMap<String, bool> = HashMap::new();
        if let Some(executor) = &self.executor
            && executor.info().capabilities.can_recover
            && open
                .iter()
                .any(|r| matches!(r.state, RunState::Scheduled | RunState::Running))
        {
            match executor.list_runs().await {
                Ok(runs) => {
                    // Runs the log already ended were recorded before the
                    // last orchestrator could say so: let them go.
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
                    known.extend(runs.into_iter().map(|r| (r.job_run_id, r.running)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listing the runs that outlived the last orchestrator failed")
                }
            }
        }
        let now = self.clock.now_ns();
        let mut events = Vec::new();
        let mut adopt: Vec<(JobRun, RunUpdates)> = Vec::new();
        for run in open {
            let ev = |event| {
                BuildEvent::at(now, event)
                    .for_request(&run.started_by)
                    .for_job_run(&run.job_run_id)
            };
            match run.state {
                RunState::Queued => events.push(ev(Event::JobRunCanceled(proto::JobRunCanceled {
                    reason: WHY.into(),
                    source: CancelSource::Shutdown as i32,
                }))),
                RunState::Scheduled | RunState::Running => {
                    if known.contains_key(&run.job_run_id)
                        && let Some(executor) = &self.executor
                    {
                        match executor.reattach(&run.job_run_id).await {
                            Ok(updates) => {
                                adopt.push((run, updates));
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(job_run_id = %run.job_run_id, error = %e, "re-attaching failed");
                            }
                        }
                    }
                    events.push(ev(Event::JobRunLost(proto::JobRunLost {
                        last_seen_ns: run.last_seen_ns,
                    })));
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
        let open_requests: Vec<String> = {
            let state = self.lock_state();
            let mut ids: Vec<String> = state
                .requests()
                .filter(|r| {
                    !matches!(
                        r.state,
                        RequestState::Succeeded | RequestState::Failed | RequestState::Canceled
                    )
                })
                .map(|r| r.build_request_id.clone())
                .collect();
            ids.sort_unstable();
            ids
        };
        for id in open_requests {
            events.push(
                BuildEvent::at(
                    now,
                    Event::BuildFailed(proto::BuildFailed {
                        reason: format!("{WHY} (request {id})"),
                    }),
                )
                .for_request(&id),
            );
        }
        if !events.is_empty() || !adopt.is_empty() {
            tracing::warn!(
                closed = events.len(),
                adopted = adopt.len(),
                "recovering what the last orchestrator left open"
            );
        }
        self.commit(events).await?;
        for (run, updates) in adopt {
            let end = Arc::new(watch::channel(TaskEnd::Pending).0);
            {
                let mut building = self.building();
                for o in outputs(&run) {
                    building.insert(o, Arc::clone(&end));
                }
            }
            tokio::spawn(Arc::clone(self).follow(run, updates, end));
        }
        Ok(())
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
    async fn follow(
        self: Arc<Self>,
        run: JobRun,
        mut updates: RunUpdates,
        end: Arc<watch::Sender<TaskEnd>>,
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
        {
            let mut building = self.building();
            for o in &outs {
                if building.get(o).is_some_and(|s| Arc::ptr_eq(s, &end)) {
                    building.remove(o);
                }
            }
        }
        end.send_replace(result);
    }
}

/// The outputs of a run's task.
fn outputs(run: &JobRun) -> Vec<PartitionRef> {
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
