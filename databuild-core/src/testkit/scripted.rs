//! A test-driven executor for orchestrator tests (and the simulation).
//!
//! Each launch is either decided at once by an *auto script* (a function of
//! the [`JobRunSpec`]) or handed to the test through
//! [`ScriptedExecutor::next_launch`], whose [`RunControl`] then makes the run
//! beat, succeed, fail, report missing deps, hang or stop beating, exactly
//! when the test wants. Cancels are confirmed at once unless the test asks
//! to confirm them itself. Every launch is recorded, so a test can check
//! that no job run id was launched twice, and so is every run's life
//! ([`ScriptedExecutor::history`]): when it was launched or re-attached and
//! when it ended, in tokio time and in the executor's own order, so a test
//! can tell whether two runs overlapped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::executor::{
    Capabilities, Executor, ExecutorError, ExecutorInfo, ExitStatus, HealthReport, JobRunSpec,
    Outcome, RunUpdate, RunUpdates, SurvivingRun,
};
use crate::job::protocol::MissingDeps;
use crate::partition::PartitionRef;
use crate::proto::FailureStage;

/// What an auto script does with a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Script {
    /// End at once with this outcome.
    Exit(Outcome),
    /// Run for `after` (tokio time: simulated under a paused clock), then
    /// end with `outcome`, unless it was cancelled first.
    ExitAfter {
        /// How long it runs.
        after: Duration,
        /// How it ends.
        outcome: Outcome,
    },
    /// Stay running until cancelled.
    Hang,
    /// Hand the run to the test ([`ScriptedExecutor::next_launch`]).
    Manual,
    /// Refuse the launch with [`ExecutorError::Launch`].
    Refuse {
        /// The launch error's reason.
        reason: String,
        /// Whether a retry can help.
        retryable: bool,
    },
}

impl Script {
    /// End at once, successfully.
    pub fn succeed() -> Self {
        Script::Exit(Outcome::Succeeded {
            manifest: Vec::new(),
        })
    }

    /// End at once with a retryable task failure.
    pub fn fail(reason: impl Into<String>) -> Self {
        Script::Exit(Outcome::task_failed(reason, Some(ExitStatus::Code(1))))
    }
}

type AutoScript = dyn Fn(&JobRunSpec) -> Script + Send + Sync;

/// A point in a [`ScriptedExecutor`]'s life: the tokio time, and a number
/// from one counter for all its runs' starts and ends and its
/// [`mark`](ScriptedExecutor::mark)s, which orders points of one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// The executor's order.
    pub order: u64,
    /// The tokio time.
    pub at: tokio::time::Instant,
}

/// One run as the executor saw it (see [`ScriptedExecutor::history`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunRecord {
    /// Its id.
    pub job_run_id: String,
    /// The outputs of its config; empty for a re-attached run (the
    /// executor was not given its spec).
    pub outputs: Vec<PartitionRef>,
    /// Whether it outlived an earlier orchestrator and was re-attached
    /// rather than launched.
    pub reattached: bool,
    /// When it was launched or re-attached.
    pub started: Mark,
    /// When it ended, and how; `None` while it runs.
    pub ended: Option<(Mark, Outcome)>,
}

/// A run handed to the test.
#[derive(Debug)]
pub struct ScriptedRun {
    /// What the orchestrator asked for.
    pub spec: JobRunSpec,
    /// Drives the run.
    pub control: RunControl,
}

/// Drives one scripted run.
#[derive(Debug, Clone)]
pub struct RunControl {
    job_run_id: String,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Entry {
    /// Dropped when the run exits, which ends its update stream.
    tx: Option<mpsc::UnboundedSender<RunUpdate>>,
    cancel_reason: Option<String>,
    exited: bool,
    /// Its index in the history.
    record: usize,
}

struct Inner {
    runs: Mutex<HashMap<String, Entry>>,
    launched: Mutex<Vec<String>>,
    handoff_tx: mpsc::UnboundedSender<ScriptedRun>,
    handoff_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<ScriptedRun>>,
    auto: Option<Box<AutoScript>>,
    confirm_cancels: bool,
    info: ExecutorInfo,
    /// Runs that outlived an earlier orchestrator: `None` still running,
    /// else how they ended meanwhile.
    survivors: HashMap<String, Option<Outcome>>,
    reattached: Mutex<Vec<String>>,
    health: tokio::sync::broadcast::Sender<HealthReport>,
    history: Mutex<Vec<RunRecord>>,
    order: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedExecutor")
            .field("info", &self.info)
            .field("confirm_cancels", &self.confirm_cancels)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn runs(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn history(&self) -> MutexGuard<'_, Vec<RunRecord>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self) -> Mark {
        Mark {
            order: self.order.fetch_add(1, Ordering::SeqCst),
            at: tokio::time::Instant::now(),
        }
    }

    /// Registers a live run (launched, or re-attached when `outputs` is
    /// `None`) and opens its record.
    fn register(
        &self,
        runs: &mut HashMap<String, Entry>,
        job_run_id: &str,
        outputs: Option<&[PartitionRef]>,
        tx: mpsc::UnboundedSender<RunUpdate>,
    ) {
        let mut history = self.history();
        history.push(RunRecord {
            job_run_id: job_run_id.to_owned(),
            outputs: outputs.map(<[_]>::to_vec).unwrap_or_default(),
            reattached: outputs.is_none(),
            started: self.mark(),
            ended: None,
        });
        runs.insert(
            job_run_id.to_owned(),
            Entry {
                tx: Some(tx),
                cancel_reason: None,
                exited: false,
                record: history.len() - 1,
            },
        );
    }

    /// Sends an update to a live run; an exit ends it.
    fn send(&self, job_run_id: &str, update: RunUpdate) -> bool {
        let mut runs = self.runs();
        let Some(entry) = runs.get_mut(job_run_id) else {
            return false;
        };
        let Some(tx) = &entry.tx else {
            return false;
        };
        let sent = tx.send(update.clone()).is_ok();
        if let RunUpdate::Exited(outcome) = update {
            entry.exited = true;
            entry.tx = None;
            let end = self.mark();
            if let Some(record) = self.history().get_mut(entry.record) {
                record.ended = Some((end, outcome));
            }
        }
        sent
    }
}

/// The scripted executor. Clones share one executor.
#[derive(Debug, Clone)]
pub struct ScriptedExecutor {
    inner: Arc<Inner>,
}

impl Default for ScriptedExecutor {
    fn default() -> Self {
        Self::build(None, true)
    }
}

impl ScriptedExecutor {
    /// An executor that hands every run to the test.
    pub fn new() -> Self {
        Self::default()
    }

    /// An executor whose runs `script` decides; [`Script::Manual`] runs go
    /// to the test.
    pub fn with_script(script: impl Fn(&JobRunSpec) -> Script + Send + Sync + 'static) -> Self {
        Self::build(Some(Box::new(script)), true)
    }

    /// Whether cancels are confirmed at once (the default) or left to the
    /// test ([`RunControl::confirm_cancel`]), to model a kill that takes time
    /// or never lands.
    #[must_use]
    pub fn confirm_cancels(self, yes: bool) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("confirm_cancels must be set before the executor is shared")
        });
        let mut built = Self::build(inner.auto, yes);
        Self::inner_mut(&mut built).info = inner.info;
        built
    }

    /// Whether the executor declares that it reports heartbeats (default
    /// no), which makes the orchestrator watch its runs' liveness: a run
    /// the test leaves silent for the liveness timeout is then Lost.
    #[must_use]
    pub fn reports_heartbeats(mut self, yes: bool) -> Self {
        let inner = Self::inner_mut(&mut self);
        inner.info.capabilities = inner.info.capabilities.with_heartbeats(yes);
        self
    }

    /// Gives the executor labels, and places (engines) with labels of their
    /// own (see [`ExecutorInfo::placements`]).
    #[must_use]
    pub fn labels(mut self, labels: &[(&str, &str)], placements: &[&[(&str, &str)]]) -> Self {
        let map = |l: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            l.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let inner = Self::inner_mut(&mut self);
        inner.info.labels = map(labels);
        inner.info.placements = placements.iter().map(|p| map(p)).collect();
        self
    }

    /// Makes the executor one that recovers runs (`can_recover`), with
    /// `runs` as the runs that outlived an earlier orchestrator: each is
    /// listed by [`Executor::list_runs`] and can be re-attached once, and is
    /// still running (`None`; the test then drives it with
    /// [`control`](Self::control)) or ended meanwhile with the outcome
    /// given. Launching one of their ids is refused, as a launch of a run
    /// already launched.
    #[must_use]
    pub fn survivors(mut self, runs: impl IntoIterator<Item = (String, Option<Outcome>)>) -> Self {
        let inner = Self::inner_mut(&mut self);
        inner.info.capabilities = inner.info.capabilities.with_recover(true);
        inner.survivors.extend(runs);
        self
    }

    /// Reports a change of health to every subscriber of
    /// [`Executor::health`].
    pub fn report_health(&self, report: HealthReport) {
        let _ = self.inner.health.send(report);
    }

    /// Every job run id re-attached, in order.
    pub fn reattached(&self) -> Vec<String> {
        self.inner
            .reattached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn inner_mut(this: &mut Self) -> &mut Inner {
        Arc::get_mut(&mut this.inner)
            .unwrap_or_else(|| panic!("set options before the executor is shared"))
    }

    fn build(auto: Option<Box<AutoScript>>, confirm_cancels: bool) -> Self {
        let (handoff_tx, handoff_rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                runs: Mutex::default(),
                launched: Mutex::default(),
                handoff_tx,
                handoff_rx: tokio::sync::Mutex::new(handoff_rx),
                auto,
                confirm_cancels,
                info: ExecutorInfo::new("scripted", Capabilities::default().with_cancel(true)),
                survivors: HashMap::new(),
                reattached: Mutex::default(),
                health: tokio::sync::broadcast::channel(16).0,
                history: Mutex::default(),
                order: AtomicU64::new(0),
            }),
        }
    }

    /// The next run handed to the test, waiting for it.
    pub async fn next_launch(&self) -> ScriptedRun {
        self.inner
            .handoff_rx
            .lock()
            .await
            .recv()
            .await
            .unwrap_or_else(|| unreachable!("the executor holds the sender"))
    }

    /// Every job run id launched, in order (a repeated launch is refused and
    /// not recorded).
    pub fn launched(&self) -> Vec<String> {
        self.inner
            .launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every run launched or re-attached, in the order they started, with
    /// when each ended (see [`RunRecord`]).
    pub fn history(&self) -> Vec<RunRecord> {
        self.inner.history().clone()
    }

    /// A point in the executor's order now, for a test that relates other
    /// happenings (the log's appends) to its runs' starts and ends.
    pub fn mark(&self) -> Mark {
        self.inner.mark()
    }

    /// Job run ids launched and not yet exited.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .runs()
            .iter()
            .filter(|(_, e)| !e.exited)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Control of a run by id, for runs the auto script kept running.
    pub fn control(&self, job_run_id: &str) -> RunControl {
        RunControl {
            job_run_id: job_run_id.to_owned(),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl RunControl {
    /// The run's id.
    pub fn job_run_id(&self) -> &str {
        &self.job_run_id
    }

    /// Reports a heartbeat. False when the run has ended.
    pub fn heartbeat(&self, cpu_ms: Option<u64>, rss_bytes: Option<u64>) -> bool {
        self.inner
            .send(&self.job_run_id, RunUpdate::Heartbeat { cpu_ms, rss_bytes })
    }

    /// Ends the run with `outcome`. False when it had already ended.
    pub fn exit(&self, outcome: Outcome) -> bool {
        self.inner
            .send(&self.job_run_id, RunUpdate::Exited(outcome))
    }

    /// Ends the run successfully.
    pub fn succeed(&self) -> bool {
        self.exit(Outcome::Succeeded {
            manifest: Vec::new(),
        })
    }

    /// Ends the run with a retryable task failure.
    pub fn fail(&self, reason: impl Into<String>) -> bool {
        self.exit(Outcome::Failed {
            stage: FailureStage::Task,
            reason: reason.into(),
            exit: Some(ExitStatus::Code(1)),
            retryable: true,
        })
    }

    /// Ends the run reporting missing inputs.
    pub fn missing_deps(&self, missing_deps: Vec<MissingDeps>) -> bool {
        self.exit(Outcome::MissingDeps {
            missing_deps,
            exit: Some(ExitStatus::Code(1)),
        })
    }

    /// The reason of a cancel asked of this run, if one was.
    pub fn cancel_requested(&self) -> Option<String> {
        self.inner
            .runs()
            .get(&self.job_run_id)
            .and_then(|e| e.cancel_reason.clone())
    }

    /// Confirms an asked cancel: the run ends `Canceled`.
    pub fn confirm_cancel(&self) -> bool {
        let reason = self.cancel_requested().unwrap_or_default();
        self.exit(Outcome::Canceled { reason })
    }
}

#[async_trait]
impl Executor for ScriptedExecutor {
    fn info(&self) -> ExecutorInfo {
        self.inner.info.clone()
    }

    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
        let script = self
            .inner
            .auto
            .as_ref()
            .map_or(Script::Manual, |auto| auto(&spec));
        if let Script::Refuse { reason, retryable } = script {
            return Err(ExecutorError::Launch {
                job_run_id: spec.job_run_id,
                reason,
                retryable,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut runs = self.inner.runs();
            if runs.contains_key(&spec.job_run_id)
                || self.inner.survivors.contains_key(&spec.job_run_id)
            {
                return Err(ExecutorError::Launch {
                    job_run_id: spec.job_run_id,
                    reason: "this job run was already launched".to_owned(),
                    retryable: false,
                });
            }
            let _ = tx.send(RunUpdate::Running {
                handle: format!("scripted:{}", spec.job_run_id),
            });
            self.inner
                .register(&mut runs, &spec.job_run_id, Some(&spec.config.outputs), tx);
        }
        self.inner
            .launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(spec.job_run_id.clone());
        let control = self.control(&spec.job_run_id);
        match script {
            Script::Exit(outcome) => {
                control.exit(outcome);
            }
            Script::ExitAfter { after, outcome } => {
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    control.exit(outcome);
                });
            }
            Script::Hang | Script::Refuse { .. } => {}
            Script::Manual => {
                let _ = self.inner.handoff_tx.send(ScriptedRun { spec, control });
            }
        }
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }

    fn health(&self) -> Option<futures::stream::BoxStream<'static, HealthReport>> {
        use futures::StreamExt;
        let reports = tokio_stream::wrappers::BroadcastStream::new(self.inner.health.subscribe());
        Some(reports.filter_map(|r| async move { r.ok() }).boxed())
    }

    async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
        if !self.inner.info.capabilities.can_recover {
            return Err(ExecutorError::Unsupported {
                operation: "list_runs",
                backend: self.inner.info.name.clone(),
            });
        }
        let mut runs: Vec<SurvivingRun> = self
            .inner
            .survivors
            .iter()
            .map(|(id, end)| SurvivingRun::new(id.clone(), end.is_none()))
            .collect();
        runs.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
        Ok(runs)
    }

    async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
        let unknown = || ExecutorError::UnknownRun {
            job_run_id: job_run_id.to_owned(),
        };
        let end = self.inner.survivors.get(job_run_id).ok_or_else(unknown)?;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut runs = self.inner.runs();
            if runs.contains_key(job_run_id) {
                return Err(unknown());
            }
            self.inner.register(&mut runs, job_run_id, None, tx);
        }
        self.inner
            .reattached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job_run_id.to_owned());
        match end {
            Some(outcome) => {
                self.control(job_run_id).exit(outcome.clone());
            }
            None => {
                self.inner.send(
                    job_run_id,
                    RunUpdate::Running {
                        handle: format!("scripted:{job_run_id}"),
                    },
                );
            }
        }
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }

    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
        {
            let mut runs = self.inner.runs();
            match runs.get_mut(job_run_id) {
                Some(entry) if !entry.exited => {
                    entry.cancel_reason.get_or_insert_with(|| reason.to_owned());
                }
                _ => {
                    return Err(ExecutorError::UnknownRun {
                        job_run_id: job_run_id.to_owned(),
                    });
                }
            }
        }
        if self.inner.confirm_cancels {
            self.control(job_run_id).confirm_cancel();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use futures::StreamExt;

    use super::*;
    use crate::job::{JobConfig, JobLabel, Launch, ProcessLaunch};
    use crate::partition::PartitionRef;

    fn spec(id: &str) -> JobRunSpec {
        JobRunSpec::new(
            id,
            "req",
            JobLabel::new("//j").unwrap(),
            JobConfig::default(),
            Launch::Process(ProcessLaunch::new(vec!["x".into()])),
            PathBuf::from("/nonexistent"),
        )
    }

    #[tokio::test]
    async fn the_test_drives_manual_runs() {
        let exec = ScriptedExecutor::new();
        let mut updates = exec.launch(spec("r1")).await.unwrap();
        let run = exec.next_launch().await;
        assert_eq!(run.spec.job_run_id, "r1");
        assert!(run.control.heartbeat(Some(5), None));
        let missing = MissingDeps {
            impacted: vec![],
            missing: vec![PartitionRef::new("a/1").unwrap()],
        };
        assert!(run.control.missing_deps(vec![missing]));
        assert!(!run.control.succeed(), "a run ends once");
        let got: Vec<RunUpdate> = (&mut updates).collect().await;
        assert_eq!(got.len(), 3);
        assert!(matches!(
            got[1],
            RunUpdate::Heartbeat {
                cpu_ms: Some(5),
                ..
            }
        ));
        assert!(matches!(
            got[2],
            RunUpdate::Exited(Outcome::MissingDeps { .. })
        ));
        assert_eq!(exec.launched(), ["r1"]);
        assert!(exec.running().is_empty());
        assert!(exec.launch(spec("r1")).await.is_err(), "one launch per id");
    }

    #[tokio::test(start_paused = true)]
    async fn the_history_orders_starts_ends_and_marks() {
        let exec = ScriptedExecutor::with_script(|spec| match spec.job_run_id.as_str() {
            "slow" => Script::ExitAfter {
                after: Duration::from_secs(2),
                outcome: Outcome::Succeeded {
                    manifest: Vec::new(),
                },
            },
            _ => Script::fail("at once"),
        });
        let mut slow = exec.launch(spec("slow")).await.unwrap();
        let mut quick = exec.launch(spec("quick")).await.unwrap();
        let between = exec.mark();
        let history = exec.history();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].ended, None, "still running");
        let (quick_end, outcome) = history[1].ended.clone().unwrap();
        assert!(matches!(outcome, Outcome::Failed { .. }));
        assert!(quick_end < between);
        let got: Vec<RunUpdate> = (&mut slow).collect().await;
        assert!(matches!(
            got.last(),
            Some(RunUpdate::Exited(Outcome::Succeeded { .. }))
        ));
        let _ = (&mut quick).collect::<Vec<_>>().await;
        let history = exec.history();
        let slow = &history[0];
        assert_eq!(slow.job_run_id, "slow");
        assert!(!slow.reattached);
        let (slow_end, _) = slow.ended.clone().unwrap();
        assert!(slow.started < history[1].started);
        assert!(between < slow_end, "it ended after the mark");
    }

    #[tokio::test]
    async fn cancels_can_be_left_unconfirmed() {
        let exec = ScriptedExecutor::with_script(|_| Script::Hang).confirm_cancels(false);
        let mut updates = exec.launch(spec("r1")).await.unwrap();
        assert!(matches!(
            updates.next().await,
            Some(RunUpdate::Running { .. })
        ));
        exec.cancel("r1", "stop").await.unwrap();
        let control = exec.control("r1");
        assert_eq!(control.cancel_requested().as_deref(), Some("stop"));
        assert_eq!(exec.running(), ["r1"], "not gone until confirmed");
        assert!(control.confirm_cancel());
        assert_eq!(
            updates.next().await,
            Some(RunUpdate::Exited(Outcome::Canceled {
                reason: "stop".into()
            }))
        );
        assert!(exec.cancel("r1", "again").await.is_err());
    }
}
