//! `WorkerPool`: a complete executor backend written only against the public
//! API of `databuild-core`, as a template for your own.
//!
//! A fixed number of worker tasks take launches from one queue. Each job run
//! becomes a process, `<wrapper...> <entrypoint...> exec <config.args...>`,
//! where the wrapper is a remote-shell style argv prefix (`ssh build-host`,
//! `nice -n 10`, `env`; none by default). Its stdout and stderr are read
//! line by line into the run's log, stdout through the shared marker
//! scanner, so a job that prints the `__DATABUILD_ERROR__` missing-deps line
//! ends `MissingDeps` here exactly as on the built-in backends.
//!
//! # What a backend does, and what it does not
//!
//! An executor only *runs* job runs and *reports* what happened to them. The
//! orchestrator does everything around that, the same way for every backend,
//! so none of it belongs in yours:
//!
//! - **Limits.** How many runs go at once (`parallelism`), named pools and
//!   slots, and which executor gets a task (its label requirements against
//!   [`ExecutorInfo::labels`]) are decided before `launch` is called. A
//!   backend may have a limit of its own (here, the number of workers: a
//!   launch waits in the queue for one), but it never needs to.
//! - **Retries.** A retryable failure (`Outcome::Failed { retryable: true }`,
//!   `ExecutorError::Launch { retryable: true }`) is retried per the job's
//!   retry policy, with backoff, as a *new* job run with a new id. A backend
//!   never retries on its own: it says whether trying again could help.
//! - **Timeouts.** When a run passes its job's timeout the orchestrator calls
//!   [`Executor::cancel`] and records the `Canceled` the run ends with as a
//!   timeout failure. A backend has no timer of its own for this.
//! - **Liveness.** With [`Capabilities::reports_heartbeats`], a run that sends
//!   no update for `liveness_timeout` (60 s by default) is declared Lost,
//!   cancelled and retried; any update counts as a sign of life.
//! - **Missing deps.** The orchestrator builds what a `MissingDeps` outcome
//!   names and runs the task again. The backend only reports the outcome.
//! - **The record.** Every event in the build event log (`JobScheduled`
//!   before the launch, `JobRunRunning` when `Running` arrives, the end of
//!   the run) is written by the orchestrator from the updates you send.
//!
//! What is left, and what this file shows: start the work, report
//! [`RunUpdate::Running`], heartbeats and exactly one [`RunUpdate::Exited`];
//! pass the job protocol's config, args and environment; write the run's
//! log; classify the end with [`OutputScanner`]; stop a run on request; and
//! say honestly, in [`Executor::info`], what the backend can and cannot do.
//!
//! # What a launch receives
//!
//! A [`JobRunSpec`]: the run's id (the launch key; log and config file
//! names come from it, never from partition refs), the job's label, the
//! [`Launch`] to run (here only [`Launch::Process`]: in-process jobs run
//! inside the orchestrator), the config (outputs, inputs, args, env), the
//! attempt number, the log path the orchestrator chose, and the request's
//! scratch directory. [`JobRunSpec::databuild_env`] gives the protocol's
//! `DATABUILD_*` variables; the backend adds `DATABUILD_CONFIG_FILE`.
//!
//! # Testing a backend
//!
//! `databuild_core::testkit::executor::run_all` (feature `testkit`) is the
//! conformance suite every backend passes: success, failure, missing deps,
//! args and env, cancel, unknown runs. `tests/custom_executor.rs` runs it on
//! this pool with `ShellHarness`, which makes the jobs `sh -c` scripts.
//!
//! # From `env` to `ssh`
//!
//! The wrapper runs locally, so this backend hands the environment and the
//! config file over the local process. A wrapper that crosses to another
//! machine carries neither: a real remote backend puts the variables on the
//! remote command line (`env K=V ...`, quoted for the remote shell), copies
//! the config file over (or relies on stdin alone), declares `isolated_fs`,
//! and stops a run with a remote kill, since killing the local `ssh` client
//! does not reliably stop the remote process.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use databuild_core::executor::{
    Capabilities, ExecutorInfo, ExitStatus, HealthReport, LineKind, LineSplitter, OutputScanner,
    RunLog, RunUpdates, Stream, SurvivingRun,
};
use databuild_core::job::ProcessLaunch;
use databuild_core::job::protocol::encode_config;
use databuild_core::{Executor, ExecutorError, JobRunSpec, Launch, Outcome, RunUpdate};
use futures::stream::BoxStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Settings of a [`WorkerPool`]. Set the fields you need and take the rest
/// from [`PoolConfig::new`]: `PoolConfig { workers: 4, ..PoolConfig::new(dir) }`.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    /// Where each run's config file is written (`<state_dir>/pool/<job_run_id>.json`).
    pub(crate) state_dir: PathBuf,
    /// How many runs execute at once (at least 1).
    pub(crate) workers: usize,
    /// Argv put before every run's command line; empty runs the job directly.
    pub(crate) wrapper: Vec<String>,
    /// How long a run asked to stop has between SIGTERM and SIGKILL.
    pub(crate) kill_grace: Duration,
    /// How often a running run reports a heartbeat (keep it well under the
    /// orchestrator's `liveness_timeout`).
    pub(crate) heartbeat_interval: Duration,
    /// How long the pipes of an exited run are read before whatever still
    /// holds them (a daemon the job started) is killed.
    pub(crate) drain_grace: Duration,
}

impl PoolConfig {
    /// Two workers, no wrapper, a 5 s kill grace, a heartbeat every 10 s, a
    /// 1 s drain grace.
    pub(crate) fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            workers: 2,
            wrapper: Vec::new(),
            kill_grace: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(10),
            drain_grace: Duration::from_secs(1),
        }
    }
}

/// Runs job runs as processes on a fixed number of workers. Clones share
/// one pool; the workers stop once every clone is dropped and their runs
/// have ended.
#[derive(Debug, Clone)]
pub(crate) struct WorkerPool {
    config: Arc<PoolConfig>,
    /// Where launches wait for a worker.
    queue: mpsc::UnboundedSender<Queued>,
    /// Every job run id launched here: the launch key (see `launch`).
    launched: Arc<Mutex<HashSet<String>>>,
    /// The stop switch of every run that is running, by job run id.
    running: Running,
}

/// Stop switches by job run id: `Some(reason)` once a stop is asked.
type Running = Arc<Mutex<HashMap<String, watch::Sender<Option<String>>>>>;

/// A launch waiting for a worker.
struct Queued {
    spec: JobRunSpec,
    launch: ProcessLaunch,
    config_json: String,
    config_file: ConfigFile,
    /// Answers `launch`: the run's updates once its process started, or why
    /// it could not start.
    started: oneshot::Sender<Result<RunUpdates, ExecutorError>>,
}

impl WorkerPool {
    /// The backend's name, in events (`JobRunRunning.executor`) and errors.
    pub(crate) const NAME: &'static str = "worker-pool";

    /// Starts the workers. Call it inside a tokio runtime.
    pub(crate) fn new(config: PoolConfig) -> Self {
        let config = Arc::new(config);
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let running = Running::default();
        for index in 0..config.workers.max(1) {
            tokio::spawn(worker(
                index,
                Arc::clone(&receiver),
                Arc::clone(&config),
                Arc::clone(&running),
            ));
        }
        Self {
            config,
            queue,
            launched: Arc::default(),
            running,
        }
    }
}

#[async_trait]
impl Executor for WorkerPool {
    /// The backend's name, what it can do, and its labels. The orchestrator
    /// reads this to route tasks and to decide what it may ask; declare
    /// only what the backend really does.
    fn info(&self) -> ExecutorInfo {
        let capabilities = Capabilities::default()
            // `cancel` stops a run (SIGTERM to its process group, SIGKILL
            // after `kill_grace`) and the run then ends `Canceled`.
            .with_cancel(true)
            // A heartbeat every `heartbeat_interval` while the process
            // lives, so the orchestrator watches these runs for liveness
            // and declares a silent one Lost. Without this flag, nothing
            // watches a hung run but its job's timeout.
            .with_heartbeats(true)
            // Runs are children of this process and die with it: after a
            // restart there is nothing to list or re-attach to. The
            // orchestrator then records the runs the last one left as Lost
            // and retries their tasks; it never calls `list_runs` or
            // `reattach` here.
            .with_recover(false)
            // Jobs see this machine's file system (an `ssh` wrapper would
            // make this `true`: the job could not read local paths).
            .with_isolated_fs(false);
        let mut info = ExecutorInfo::new(Self::NAME, capabilities);
        // Matched against tasks' `label_requirements` (`os=linux`): a task
        // that needs a label no executor has fails before anything runs.
        // These are the labels of the machine the jobs run on.
        info.labels.insert("os".into(), std::env::consts::OS.into());
        info.labels
            .insert("arch".into(), std::env::consts::ARCH.into());
        info
    }

    /// Starts a run and returns its updates: `Running` first, then any
    /// heartbeats, then exactly one `Exited`, after which the stream ends.
    ///
    /// Guarantees a backend must keep:
    /// - **One start per job run id, ever.** The orchestrator commits
    ///   `JobScheduled` before it calls `launch`, and a job run must never
    ///   run twice, so a second launch of an id is refused (not retryable).
    ///   A backend that can recover records this key durably (a run
    ///   directory made with `O_EXCL`, a container named after the id);
    ///   this one keeps it in memory, since its runs die with it anyway.
    /// - **Errors are typed.** A job this backend cannot run is
    ///   `Incompatible`; a start that failed is `Launch`, with `retryable`
    ///   saying whether trying again could help (a missing program: no).
    /// - **Once `launch` returns `Ok`, the run is known to `cancel`**, and
    ///   the stream ends with `Exited` whatever happens, since the
    ///   orchestrator waits for it.
    ///
    /// Here `launch` returns once a worker has started the process, so a
    /// queued launch takes no part in the run's timeout. A launch given up
    /// while queued (its future dropped) is skipped by the worker: nobody
    /// waits for it.
    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
        let Launch::Process(launch) = &spec.launch else {
            return Err(ExecutorError::Incompatible {
                backend: Self::NAME.into(),
                job: spec.job.to_string(),
                reason: "only process jobs run here (in-process jobs run in the orchestrator)"
                    .into(),
            });
        };
        let launch = launch.clone();
        if launch.argv.is_empty() {
            return Err(launch_error(&spec, "the job has no entrypoint", false));
        }
        // The launch key, taken before anything can start.
        let first = lock(&self.launched).insert(spec.job_run_id.clone());
        if !first {
            return Err(launch_error(
                &spec,
                "this job run was already launched",
                false,
            ));
        }
        // The job protocol: the config as JSON, on stdin and in the file
        // named by `DATABUILD_CONFIG_FILE`.
        let config_json = encode_config(&spec.config);
        let dir = self.config.state_dir.join("pool");
        let config_file = ConfigFile::create(&dir, &spec.job_run_id, &config_json)
            .map_err(|e| launch_error(&spec, format!("{}: {e}", dir.display()), true))?;
        let (started, answer) = oneshot::channel();
        let queued = Queued {
            spec,
            launch,
            config_json,
            config_file,
            started,
        };
        if let Err(mpsc::error::SendError(queued)) = self.queue.send(queued) {
            return Err(launch_error(&queued.spec, "the pool has stopped", true));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ExecutorError::Backend {
                backend: Self::NAME.into(),
                source: "a worker stopped before starting the run".into(),
            })
        })
    }

    /// Asks a run to stop. Returns at once; the run's stream then ends with
    /// `Outcome::Canceled { reason }` once the process is confirmed gone
    /// (reaped), never before: the orchestrator frees the run's slots when
    /// it arrives. An id this backend is not running is `UnknownRun`: one
    /// that already ended, and one still queued (the orchestrator stops only
    /// runs whose launch has returned, keeping an earlier stop until then).
    /// Cancelling twice is harmless; the first reason stands.
    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
        let running = lock(&self.running);
        let Some(stop) = running.get(job_run_id) else {
            return Err(ExecutorError::UnknownRun {
                job_run_id: job_run_id.into(),
            });
        };
        stop.send_if_modified(|asked| {
            let first = asked.is_none();
            if first {
                *asked = Some(reason.into());
            }
            first
        });
        Ok(())
    }

    /// Runs that outlived an orchestrator. Only for backends that declare
    /// `can_recover`: after a restart the orchestrator lists them, then
    /// calls `reattach` for each one its log says was started, and
    /// launches again (same id) those that never were. Without that
    /// capability it is never called; the default answer, written out here,
    /// is `Unsupported`.
    async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
        Err(ExecutorError::Unsupported {
            operation: "list_runs",
            backend: Self::NAME.into(),
        })
    }

    /// Re-attaches to a run that outlived an orchestrator: the same update
    /// stream `launch` gives, from where the run is now (`Exited` at once
    /// if it ended meanwhile, with the outcome the backend recorded). Not
    /// offered here, like `list_runs`.
    async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
        let _ = job_run_id;
        Err(ExecutorError::Unsupported {
            operation: "reattach",
            backend: Self::NAME.into(),
        })
    }

    /// Called once the orchestrator has recorded a run's end: a recovering
    /// backend may now delete what it kept so the run could be re-attached
    /// (a run directory, a stopped container). This one keeps nothing past
    /// the run's end.
    async fn forget(&self, job_run_id: &str) -> Result<(), ExecutorError> {
        let _ = job_run_id;
        Ok(())
    }

    /// Changes in the health of the backend's engines, recorded as
    /// `ExecutorHealth` events: a backend that talks to a remote engine (a
    /// Docker daemon, an ssh host) pings it and reports when it stops
    /// answering and when it is back. Processes on this machine have no
    /// engine to lose.
    fn health(&self) -> Option<BoxStream<'static, HealthReport>> {
        None
    }
}

/// One worker: takes queued launches one at a time and runs each to its
/// end. Stops when the pool is dropped and the queue is empty.
async fn worker(
    index: usize,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>>,
    config: Arc<PoolConfig>,
    running: Running,
) {
    loop {
        let next = queue.lock().await.recv().await;
        let Some(queued) = next else {
            return;
        };
        if queued.started.is_closed() {
            // Given up while queued: it never starts.
            continue;
        }
        run(index, queued, &config, &running).await;
    }
}

/// Starts one run's process, answers `launch`, and follows the run to its
/// end.
async fn run(worker: usize, queued: Queued, config: &PoolConfig, running: &Running) {
    let Queued {
        spec,
        launch,
        config_json,
        config_file,
        started,
    } = queued;
    let argv: Vec<&String> = config.wrapper.iter().chain(&launch.argv).collect();
    let mut command = Command::new(argv[0]);
    command
        .args(&argv[1..])
        .arg("exec")
        .args(&spec.config.args)
        // The job's environment, the config's, then the protocol's
        // `DATABUILD_*` variables (`JobRunSpec::databuild_env`).
        .envs(&launch.env)
        .envs(&spec.config.env)
        .envs(spec.databuild_env())
        .env("DATABUILD_CONFIG_FILE", &config_file.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A process group of its own, so that a stop reaches whatever the
        // job started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &launch.working_dir {
        command.current_dir(dir);
    }
    // The run's log, at the path the orchestrator chose
    // (`<state_dir>/logs/<date>/<job_run_id>.jsonl`).
    let mut log = match RunLog::create(&spec.log_path) {
        Ok(log) => log,
        Err(e) => {
            let reason = format!(
                "cannot write the run's log {}: {e}",
                spec.log_path.display()
            );
            let _ = started.send(Err(launch_error(&spec, reason, false)));
            return;
        }
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let reason = format!("cannot start {:?}: {e}", argv[0]);
            let _ = log.note(&reason);
            let _ = log.flush();
            // A program that is missing or not executable stays so.
            let retryable = !matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            );
            let _ = started.send(Err(launch_error(&spec, reason, retryable)));
            return;
        }
    };
    let pid = child.id().unwrap_or_default();
    let _ = log.note(&format!("worker {worker} started pid {pid}: {argv:?}"));
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            // A job that does not read its stdin closes it early: fine.
            let _ = stdin.write_all(config_json.as_bytes()).await;
        });
    }

    // Known to `cancel` before `launch` returns.
    let (stop, stop_asked) = watch::channel(None);
    lock(running).insert(spec.job_run_id.clone(), stop);
    let (updates, receiver) = mpsc::channel(16);
    let _ = updates
        .send(RunUpdate::Running {
            handle: format!("worker-{worker}/pid-{pid}"),
        })
        .await;
    let outcome = if started
        .send(Ok(Box::pin(ReceiverStream::new(receiver))))
        .is_ok()
    {
        follow(&mut child, pid, &mut log, &updates, stop_asked, config).await
    } else {
        // The launch was given up while the process started: nobody will
        // read its updates, so it must not go on.
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
        Outcome::Canceled {
            reason: "the launch was given up".into(),
        }
    };
    let _ = log.flush();
    // Unknown to `cancel` before the stream ends, then the one `Exited`.
    lock(running).remove(&spec.job_run_id);
    drop(config_file);
    let _ = updates.send(RunUpdate::Exited(outcome)).await;
}

/// One line of a run's output.
struct Line {
    stream: Stream,
    text: Vec<u8>,
    /// A piece of a line longer than the cap.
    partial: bool,
}

/// Follows a started run until its process is gone and its output read;
/// returns how it ended.
async fn follow(
    child: &mut Child,
    pid: u32,
    log: &mut RunLog,
    updates: &mpsc::Sender<RunUpdate>,
    mut stop_asked: watch::Receiver<Option<String>>,
    config: &PoolConfig,
) -> Outcome {
    let (lines_tx, mut lines) = mpsc::channel(64);
    tokio::spawn(pump(child.stdout.take(), Stream::Stdout, lines_tx.clone()));
    tokio::spawn(pump(child.stderr.take(), Stream::Stderr, lines_tx));
    // The shared classifier: marker lines decide the outcome (missing deps
    // whatever the exit code; a malformed marker fails the run quoting it),
    // otherwise exit code 0 succeeds.
    let mut scanner = OutputScanner::new();
    let every = config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut status: Option<ExitStatus> = None;
    let mut output_open = true;
    let mut stopping: Option<String> = None;
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;

    while status.is_none() || output_open {
        tokio::select! {
            line = lines.recv(), if output_open => match line {
                None => output_open = false,
                Some(Line { stream: Stream::Stdout, text, partial: false }) => {
                    match scanner.line(&text) {
                        LineKind::Output => {
                            let _ = log.write(Stream::Stdout, &text, false);
                        }
                        // `__DATABUILD_HEARTBEAT__`: a sign of life, not output.
                        LineKind::Heartbeat => {
                            let _ = updates.send(sign_of_life()).await;
                        }
                        // Missing deps or a manifest: kept by the scanner
                        // for the outcome, out of the log.
                        LineKind::Marker => {}
                    }
                }
                Some(Line { stream, text, partial }) => {
                    let _ = log.write(stream, &text, partial);
                }
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited.map_or(ExitStatus::Code(255), ExitStatus::from));
                drain_until = Some(Instant::now() + config.drain_grace);
            }
            _ = heartbeat.tick(), if status.is_none() => {
                // The process is alive.
                let _ = updates.send(sign_of_life()).await;
            }
            // `changed` cannot fail: the switch stays in `running` until the
            // run has ended.
            Ok(()) = stop_asked.changed(), if stopping.is_none() && status.is_none() => {
                let reason = stop_asked.borrow_and_update().clone().unwrap_or_default();
                let _ = log.note(&format!("stop asked ({reason}): SIGTERM to the group"));
                signal_group(pid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + config.kill_grace);
                stopping = Some(reason);
            }
            () = sleep_until_some(kill_at), if status.is_none() => {
                let _ = log.note("still running after the kill grace: SIGKILL to the group");
                signal_group(pid, Signal::SIGKILL);
                kill_at = None;
            }
            () = sleep_until_some(drain_until) => {
                let _ = log.note("output still open after the exit: killing the rest of the group");
                break;
            }
        }
    }
    // Whatever the job left behind in its group goes with it.
    signal_group(pid, Signal::SIGKILL);
    let exit = status.unwrap_or(ExitStatus::Code(255));
    let _ = log.note(&format!("exited with {exit}"));
    match (stopping, scanner.finish(exit)) {
        // It finished its work before the stop reached it: a success (saying
        // otherwise would have the work done again).
        (Some(_), done @ Outcome::Succeeded { .. }) => done,
        (Some(reason), _) => Outcome::Canceled { reason },
        (None, outcome) => outcome,
    }
}

/// Reads a pipe to its end, split into lines of at most 1 MiB (the shared
/// `LineSplitter`: an endless line is never held whole).
async fn pump(pipe: Option<impl AsyncRead + Unpin>, stream: Stream, lines: mpsc::Sender<Line>) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut splitter = LineSplitter::new(LineSplitter::DEFAULT_CAP);
    let mut buf = vec![0u8; 64 << 10];
    let mut batch = Vec::new();
    loop {
        let n = pipe.read(&mut buf).await.unwrap_or(0);
        let mut take = |text: &[u8], partial: bool| {
            batch.push(Line {
                stream,
                text: text.to_vec(),
                partial,
            });
        };
        if n == 0 {
            splitter.finish(take);
        } else {
            splitter.push(&buf[..n], &mut take);
        }
        for line in batch.drain(..) {
            if lines.send(line).await.is_err() {
                return;
            }
        }
        if n == 0 {
            return;
        }
    }
}

/// A heartbeat. A backend that can measure them fills in the run's CPU time
/// and memory (the local executor reads `/proc`); through a wrapper, this
/// one cannot.
fn sign_of_life() -> RunUpdate {
    RunUpdate::Heartbeat {
        cpu_ms: None,
        rss_bytes: None,
    }
}

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: u32, signal: Signal) {
    // Never pid 0: `killpg(0)` is our own group.
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        // ESRCH: the group is already gone.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Waits until `at`, or forever without a deadline.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A run's config file, removed when dropped (the run ended, or never
/// started).
struct ConfigFile(PathBuf);

impl ConfigFile {
    /// Writes `<dir>/<job_run_id>.json`, refusing a file that exists.
    fn create(dir: &Path, job_run_id: &str, json: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{job_run_id}.json"));
        let mut file = std::fs::File::create_new(&path)?;
        // From here on, an error removes the file.
        let config_file = Self(path);
        std::io::Write::write_all(&mut file, json.as_bytes())?;
        Ok(config_file)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A launch failure of `spec`'s run.
fn launch_error(spec: &JobRunSpec, reason: impl Into<String>, retryable: bool) -> ExecutorError {
    ExecutorError::Launch {
        job_run_id: spec.job_run_id.clone(),
        reason: reason.into(),
        retryable,
    }
}

/// Locks a mutex, whether or not a panic poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
