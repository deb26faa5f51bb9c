use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use databuild_core::executor::{
    Capabilities, Executor, ExecutorError, ExecutorInfo, ExitStatus, JobRunSpec, LineKind,
    LineSplitter, Outcome, OutputScanner, RunLog, RunUpdate, RunUpdates, Stream, SurvivingRun,
};
use databuild_core::job::protocol::encode_config;
use databuild_core::proto::FailureStage;
use databuild_core::{JobConfig, Launch};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::LocalConfig;
use crate::proc_stats;

/// At most one sign of life from a run's output per this long.
pub(crate) const OUTPUT_SIGN_EVERY: Duration = Duration::from_millis(250);

/// Runs job runs as local processes (direct mode: each run is a child of
/// this process, in a process group of its own).
///
/// A run is `<entrypoint> exec <config.args...>` with the config JSON on
/// stdin and in `DATABUILD_CONFIG_FILE` (`<runs_dir>/<job_run_id>.json`, see
/// [`LocalConfig::runs_dir`], created exclusively: launching one job run id
/// twice is refused, and removed when the run ends), the
/// job's and the config's environment plus the `DATABUILD_*` variables.
/// Stdout and stderr are read line by line (capped) into the run's log;
/// stdout goes through the shared [`OutputScanner`], so marker lines decide
/// the outcome and stay out of the log. While it runs, CPU time and
/// resident memory of the process are reported as heartbeats.
///
/// A run ends when its process exits; its pipes are then drained for
/// [`LocalConfig::drain_grace`] and whatever is left of its process group
/// (a daemon it started) is killed. Cancel sends SIGTERM to the group and
/// SIGKILL after [`LocalConfig::kill_grace`]; `Canceled` is reported once
/// the process is reaped.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    config: Arc<LocalConfig>,
    runs: Arc<Mutex<HashMap<String, Arc<CancelRequest>>>>,
    /// The shared lock on the runs directory, held for the executor's life.
    _runs_lock: Option<Arc<std::fs::File>>,
    /// Launch keys of every run launched here.
    launched: Arc<Mutex<std::collections::HashSet<u64>>>,
    /// Whether the runs directory is known to exist.
    runs_dir_made: Arc<AtomicBool>,
}

/// A cancellation asked of one run.
#[derive(Debug, Default)]
struct CancelRequest {
    reason: Mutex<Option<String>>,
    notify: Notify,
}

impl LocalExecutor {
    /// The executor's name in events and errors.
    pub const NAME: &'static str = "local";

    /// An executor with these settings.
    pub fn new(config: LocalConfig) -> Self {
        // Process groups a crashed executor left on this runs directory are
        // killed first (when no other live executor uses it).
        let sweep = match crate::leftovers::sweep(&config.runs_dir) {
            Ok((lock, killed)) => {
                if killed > 0 {
                    tracing::warn!(killed, runs_dir = %config.runs_dir.display(), "killed runs a dead executor left");
                }
                Some(Arc::new(lock))
            }
            Err(e) => {
                tracing::warn!(runs_dir = %config.runs_dir.display(), error = %e, "cannot check the runs directory for leftovers");
                None
            }
        };
        Self {
            _runs_lock: sweep,
            config: Arc::new(config),
            runs: Arc::default(),
            runs_dir_made: Arc::new(AtomicBool::new(false)),
            launched: Arc::default(),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CancelRequest>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run directories of runner mode.
    fn run_dirs(&self) -> PathBuf {
        self.config.state_dir.join("runs")
    }

    /// Records `job_run_id` as launched by this executor: false when it
    /// already was.
    fn remember_launch(&self, job_run_id: &str) -> bool {
        use std::hash::{Hash, Hasher};
        // As a 64-bit hash: 8 bytes per run for the executor's life.
        let mut h = std::hash::DefaultHasher::new();
        job_run_id.hash(&mut h);
        self.launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(h.finish())
    }

    /// Runner mode: the run directory, published whole (made aside as
    /// `.launch-<id>`, then renamed into place: the launch key that
    /// survives this process, and never seen half-written), then the
    /// runner, which outlives us.
    async fn launch_with_runner(
        &self,
        runner: &[String],
        spec: &JobRunSpec,
        launch: &databuild_core::job::ProcessLaunch,
    ) -> Result<RunUpdates, ExecutorError> {
        let runs = self.run_dirs();
        let dir = runs.join(&spec.job_run_id);
        let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
        let already =
            || Self::launch_error(spec, "this job run was already launched".into(), false);
        if !self.remember_launch(&spec.job_run_id) || dir.exists() {
            return Err(already());
        }
        std::fs::create_dir_all(&runs).map_err(|e| Self::launch_error(spec, io(&runs, e), true))?;
        // What a launch that died half-way left.
        let staging = runs.join(format!(".launch-{}", spec.job_run_id));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| Self::launch_error(spec, io(&staging, e), true))?;
        let config_file = dir.join("config.json");
        let mut env: BTreeMap<String, String> = std::env::vars().collect();
        env.extend(launch.env.clone());
        env.extend(spec.config.env.clone());
        env.extend(spec.databuild_env());
        env.insert(
            "DATABUILD_CONFIG_FILE".into(),
            config_file.to_string_lossy().into_owned(),
        );
        let mut argv = launch.argv.clone();
        argv.push("exec".into());
        argv.extend(spec.config.args.iter().cloned());
        let plan = crate::runner::RunnerLaunch {
            argv,
            env: env.into_iter().collect(),
            working_dir: launch.working_dir.clone(),
            log_path: spec.log_path.clone(),
            line_cap: self.config.line_cap,
            drain_grace_ms: u64::try_from(self.config.drain_grace.as_millis()).unwrap_or(u64::MAX),
        };
        let written = std::fs::write(staging.join("config.json"), encode_config(&spec.config))
            .and_then(|()| {
                std::fs::write(
                    staging.join("launch.json"),
                    serde_json::to_vec(&plan).map_err(std::io::Error::other)?,
                )
            });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Self::launch_error(spec, io(&staging, e), true));
        }
        // A directory is renamed onto a missing or empty path only; ours are
        // never empty, so a run directory that exists refuses the rename.
        if let Err(e) = std::fs::rename(&staging, &dir) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(if dir.exists() {
                already()
            } else {
                Self::launch_error(spec, io(&dir, e), true)
            });
        }
        let (child, pid) = self
            .start_runner(runner, &dir)
            .map_err(|reason| Self::launch_error(spec, reason, true))?;
        Ok(self.watch_runner(
            spec.job_run_id.clone(),
            dir,
            Some(child),
            format!("runner:{pid}"),
        ))
    }

    /// Starts the runner of a published run directory.
    fn start_runner(&self, runner: &[String], dir: &Path) -> Result<(Child, u32), String> {
        let mut command = Command::new(&runner[0]);
        command
            .args(&runner[1..])
            .arg("run")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("runner.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .process_group(0)
            .kill_on_drop(false);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start the runner {:?}: {e}", runner[0]))?;
        let pid = child.id().unwrap_or_default();
        crate::runner::record_runner(dir, pid).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok((child, pid))
    }

    /// Follows a runner-mode run to its end: heartbeats from the job's
    /// process, cancel (SIGTERM to the job's group, SIGKILL after the
    /// grace), and the outcome from the run directory once the runner is
    /// done (a runner we started is waited for; one we re-attached to is
    /// looked at every 50 ms).
    fn watch_runner(
        &self,
        job_run_id: String,
        dir: PathBuf,
        child: Option<Child>,
        handle: String,
    ) -> RunUpdates {
        let cancel = Arc::new(CancelRequest::default());
        self.runs().insert(job_run_id.clone(), Arc::clone(&cancel));
        let (tx, rx) = mpsc::channel(64);
        let runs = Arc::clone(&self.runs);
        let config = Arc::clone(&self.config);
        tokio::spawn(async move {
            let _ = tx.send(RunUpdate::Running { handle }).await;
            let every = config.heartbeat_interval;
            let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut poll = tokio::time::interval(Duration::from_millis(50));
            let mut signs = tokio::time::interval(OUTPUT_SIGN_EVERY);
            let mut last_sign = None;
            let mut child = child;
            let mut canceled: Option<String> = None;
            let mut kill_at: Option<Instant> = None;
            let mut unknown = 0u32;
            let signal = |signal: Signal| {
                if let Some(pid) = crate::runner::job_pid(&dir).and_then(|p| i32::try_from(p).ok())
                {
                    let _ = killpg(Pid::from_raw(pid), signal);
                }
            };
            loop {
                tokio::select! {
                    _ = async { child.as_mut().map(|c| c.wait()).unwrap_or_else(|| unreachable!()).await }, if child.is_some() => break,
                    _ = poll.tick(), if child.is_none() => {
                        if dir.join("status").exists() {
                            break;
                        }
                        if crate::runner::runner_alive(&dir) {
                            unknown = 0;
                            continue;
                        }
                        // No live runner on record: either it never started
                        // (then the claim is ours and the job never will), or
                        // it is starting and has not recorded itself yet
                        // (wait a little), or it died.
                        if !dir.join("claim").exists() || unknown >= 40 {
                            break;
                        }
                        unknown += 1;
                    }
                    _ = ticker.tick(), if config.process_heartbeats => {
                        let sample = crate::runner::job_pid(&dir).and_then(proc_stats::sample);
                        let (cpu_ms, rss_bytes) = sample.map_or((None, None), |(c, r)| (Some(c), Some(r)));
                        let _ = tx.send(RunUpdate::Heartbeat { cpu_ms, rss_bytes }).await;
                    }
                    _ = signs.tick(), if !config.process_heartbeats => {
                        // The runner touches `alive` on the job's output
                        // lines: each change is a sign of life.
                        let seen = crate::runner::last_sign(&dir);
                        if seen.is_some() && seen != last_sign {
                            last_sign = seen;
                            let _ = tx.send(RunUpdate::Heartbeat { cpu_ms: None, rss_bytes: None }).await;
                        }
                    }
                    () = cancel.notify.notified(), if canceled.is_none() => {
                        let reason = cancel.reason.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
                        // A runner that has not started the job yet sees
                        // this and never does.
                        let _ = std::fs::write(dir.join("cancel"), &reason);
                        signal(Signal::SIGTERM);
                        kill_at = Some(Instant::now() + config.kill_grace);
                        canceled = Some(reason);
                    }
                    () = sleep_until_some(kill_at) => {
                        signal(Signal::SIGKILL);
                        kill_at = None;
                    }
                }
            }
            let outcome = match (canceled, crate::runner::collect(&dir)) {
                // A job that finished its work before the cancel reached it
                // succeeded: saying otherwise would have it run again.
                (Some(_), Some(done @ Outcome::Succeeded { .. })) => done,
                (Some(reason), _) => Outcome::Canceled { reason },
                (None, Some(outcome)) => outcome,
                // No status and no runner: if the runner never claimed the
                // run, claiming it here makes sure the job never starts.
                (None, None) => match crate::runner::claim(&dir) {
                    Ok(true) => Outcome::Failed {
                        stage: FailureStage::Launch,
                        reason: "the run never started (its runner did not)".into(),
                        exit: None,
                        retryable: true,
                    },
                    _ => Outcome::Failed {
                        stage: FailureStage::Task,
                        reason: "the runner ended without recording the job's exit".into(),
                        exit: None,
                        retryable: true,
                    },
                },
            };
            runs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job_run_id);
            let _ = tx.send(RunUpdate::Exited(outcome)).await;
        });
        Box::pin(ReceiverStream::new(rx))
    }

    fn launch_error(spec: &JobRunSpec, reason: String, retryable: bool) -> ExecutorError {
        ExecutorError::Launch {
            job_run_id: spec.job_run_id.clone(),
            reason,
            retryable,
        }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn info(&self) -> ExecutorInfo {
        let mut info = ExecutorInfo::new(
            Self::NAME,
            Capabilities::default()
                .with_cancel(true)
                .with_heartbeats(self.config.process_heartbeats)
                .with_output_signs_of_life(true)
                .with_recover(self.config.runner.is_some()),
        );
        info.labels = self.config.labels.clone();
        info
    }

    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
        let Launch::Process(launch) = &spec.launch else {
            return Err(ExecutorError::Incompatible {
                backend: Self::NAME.to_owned(),
                job: spec.job.to_string(),
                reason: "only process jobs run here".to_owned(),
            });
        };
        let Some(program) = launch.argv.first() else {
            return Err(Self::launch_error(
                &spec,
                "the job has no entrypoint".into(),
                false,
            ));
        };
        if let Some(runner) = &self.config.runner {
            return self.launch_with_runner(runner, &spec, launch).await;
        }

        // The launch key: a run directory made exclusively.
        // File system calls here are small metadata operations, done in
        // place: handing each to a blocking thread costs more than the call.
        let runs_dir = &self.config.runs_dir;
        let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
        if !self.runs_dir_made.load(Ordering::Relaxed) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(runs_dir)
                .map_err(|e| Self::launch_error(&spec, io(runs_dir, e), true))?;
            self.runs_dir_made.store(true, Ordering::Relaxed);
        }
        // The launch key: the run's id, recorded before anything starts,
        // then its config file, made exclusively.
        if !self.remember_launch(&spec.job_run_id) {
            return Err(Self::launch_error(
                &spec,
                "this job run was already launched".into(),
                false,
            ));
        }
        let config_file = runs_dir.join(format!("{}.json", spec.job_run_id));
        let config_json = encode_config(&spec.config);
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&config_file);
        match created {
            Ok(mut file) => {
                if let Err(e) = file.write_all(config_json.as_bytes()) {
                    let _ = std::fs::remove_file(&config_file);
                    return Err(Self::launch_error(&spec, io(&config_file, e), true));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Self::launch_error(
                    &spec,
                    "this job run was already launched".into(),
                    false,
                ));
            }
            Err(e) => return Err(Self::launch_error(&spec, io(&config_file, e), true)),
        }
        let config_file = ConfigFile(config_file);

        let mut command = command(program, &launch.argv[1..], &spec.config);
        command
            .envs(&launch.env)
            .envs(&spec.config.env)
            .envs(spec.databuild_env())
            .env("DATABUILD_CONFIG_FILE", &config_file.0);
        // A directory the process is in already is not set again: with one
        // set, the standard library cannot spawn with `posix_spawn` in a
        // statically linked glibc binary (the node agent in its image) and
        // forks instead, which costs more the larger the process.
        if let Some(dir) = &launch.working_dir
            && std::env::current_dir().ok().as_deref() != Some(dir.as_path())
        {
            command.current_dir(dir);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let reason = format!("cannot start {program:?}: {e}");
                if let Ok(mut log) = RunLog::create(&spec.log_path) {
                    let _ = log.note(&reason);
                    let _ = log.flush();
                }
                let retryable = !matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                );
                return Err(Self::launch_error(&spec, reason, retryable));
            }
        };
        let pid = child.id().unwrap_or_default();
        crate::leftovers::record(runs_dir, &spec.job_run_id, pid);
        let launched = format!("launched pid {pid}: {:?}", launch.argv);
        let log_path = spec.log_path.clone();
        let cancel = Arc::new(CancelRequest::default());
        self.runs()
            .insert(spec.job_run_id.clone(), Arc::clone(&cancel));

        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                // A job that does not read its stdin closes it early: fine.
                let _ = stdin.write_all(config_json.as_bytes()).await;
            });
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (tx, rx) = mpsc::channel(64);
        let _ = tx
            .send(RunUpdate::Running {
                handle: format!("pid:{pid}"),
            })
            .await;
        let runs = Arc::clone(&self.runs);
        let config = Arc::clone(&self.config);
        let job_run_id = spec.job_run_id.clone();
        tokio::spawn(async move {
            // The log is made once the job is started, off the launch path
            // (on a busy disk a new file costs more than the spawn).
            let outcome = match RunLog::create(&log_path) {
                Ok(mut log) => {
                    let _ = log.note(&launched);
                    let run = Supervisor {
                        _config_file: config_file,
                        child,
                        pid,
                        log,
                        tx: tx.clone(),
                        cancel,
                        config,
                    };
                    run.supervise(stdout, stderr).await
                }
                Err(e) => {
                    // No log, no run: stop it before it does anything.
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    drop(config_file);
                    Outcome::Failed {
                        stage: FailureStage::Launch,
                        reason: format!("cannot write the run's log {}: {e}", log_path.display()),
                        exit: None,
                        retryable: false,
                    }
                }
            };
            runs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job_run_id);
            let _ = tx.send(RunUpdate::Exited(outcome)).await;
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
        let cancel =
            self.runs()
                .get(job_run_id)
                .cloned()
                .ok_or_else(|| ExecutorError::UnknownRun {
                    job_run_id: job_run_id.to_owned(),
                })?;
        cancel
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| reason.to_owned());
        cancel.notify.notify_one();
        Ok(())
    }

    async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
        if self.config.runner.is_none() {
            return Err(ExecutorError::Unsupported {
                operation: "list_runs",
                backend: format!("{} (direct mode)", Self::NAME),
            });
        }
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.run_dirs()) else {
            return Ok(found);
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.join("launch.json").exists() {
                continue;
            }
            let Some(id) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let running = !dir.join("status").exists() && crate::runner::runner_alive(&dir);
            found.push(SurvivingRun::new(id, running));
        }
        found.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
        Ok(found)
    }

    async fn forget(&self, job_run_id: &str) -> Result<(), ExecutorError> {
        if self.config.runner.is_none() {
            return Ok(());
        }
        let dir = self.run_dirs().join(job_run_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExecutorError::Launch {
                job_run_id: job_run_id.to_owned(),
                reason: format!("removing {}: {e}", dir.display()),
                retryable: true,
            }),
        }
    }

    async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
        if self.config.runner.is_none() {
            return Err(ExecutorError::Unsupported {
                operation: "reattach",
                backend: format!("{} (direct mode)", Self::NAME),
            });
        }
        let dir = self.run_dirs().join(job_run_id);
        if !dir.join("launch.json").exists() {
            return Err(ExecutorError::UnknownRun {
                job_run_id: job_run_id.to_owned(),
            });
        }
        // Published, but the orchestrator that launched it died before its
        // runner started: it is started now, under the same id (the runner's
        // claim keeps it to one start).
        let never_started = !dir.join("claim").exists()
            && !dir.join("runner").exists()
            && !dir.join("status").exists();
        if let Some(runner) = self.config.runner.as_deref()
            && never_started
            && self.remember_launch(job_run_id)
        {
            let (child, pid) =
                self.start_runner(runner, &dir)
                    .map_err(|reason| ExecutorError::Launch {
                        job_run_id: job_run_id.to_owned(),
                        reason,
                        retryable: true,
                    })?;
            return Ok(self.watch_runner(
                job_run_id.to_owned(),
                dir,
                Some(child),
                format!("runner:{pid}"),
            ));
        }
        let handle = format!("run-dir:{}", dir.display());
        Ok(self.watch_runner(job_run_id.to_owned(), dir, None, handle))
    }
}

/// `<program> <args...> exec <config.args...>`, stdin and output piped, in a
/// process group of its own.
fn command(program: &str, args: &[String], config: &JobConfig) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .arg("exec")
        .args(&config.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    command
}

/// A run's config file, removed when the run is over.
struct ConfigFile(PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.with_extension("pid"));
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "removing a run's config file failed");
        }
    }
}

/// Watches one run until it is gone.
struct Supervisor {
    _config_file: ConfigFile,
    child: Child,
    pid: u32,
    log: RunLog,
    tx: mpsc::Sender<RunUpdate>,
    cancel: Arc<CancelRequest>,
    config: Arc<LocalConfig>,
}

/// Waits until `at`, or forever without a deadline.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// The job printed: a sign of life, when its process is not sampled
    /// (at most one per [`OUTPUT_SIGN_EVERY`]).
    async fn output_sign(&self, last: &mut Option<Instant>) {
        if self.config.process_heartbeats || last.is_some_and(|at| at.elapsed() < OUTPUT_SIGN_EVERY)
        {
            return;
        }
        *last = Some(Instant::now());
        let _ = self
            .tx
            .send(RunUpdate::Heartbeat {
                cpu_ms: None,
                rss_bytes: None,
            })
            .await;
    }

    fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // ESRCH: the group is already gone.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    async fn supervise(
        mut self,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) -> Outcome {
        let cap = self.config.line_cap;
        let (mut out_split, mut err_split) = (LineSplitter::new(cap), LineSplitter::new(cap));
        let mut scanner = OutputScanner::new();
        let (mut out_open, mut err_open) = (stdout.is_some(), stderr.is_some());
        let (mut stdout, mut stderr) = (stdout, stderr);
        let mut out_buf = vec![0u8; 64 << 10];
        let mut err_buf = vec![0u8; 16 << 10];
        let mut lines: Vec<(Vec<u8>, bool)> = Vec::new();
        // The first heartbeat comes one interval in: `Running` already said
        // the run is alive.
        let every = self.config.heartbeat_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut status: Option<std::process::ExitStatus> = None;
        let mut drain_until: Option<Instant> = None;
        let mut kill_at: Option<Instant> = None;
        let mut canceled: Option<String> = None;
        let mut last_sign: Option<Instant> = None;

        while status.is_none() || out_open || err_open {
            tokio::select! {
                read = read_some(&mut stdout, &mut out_buf), if out_open => {
                    let n = read;
                    if n == 0 {
                        out_open = false;
                        out_split.finish(|l, p| lines.push((l.to_vec(), p)));
                    } else {
                        out_split.push(&out_buf[..n], |l, p| lines.push((l.to_vec(), p)));
                    }
                    let signs = !lines.is_empty();
                    for (line, partial) in lines.drain(..) {
                        let kind = if partial { LineKind::Output } else { scanner.line(&line) };
                        if kind == LineKind::Output {
                            let _ = self.log.write(Stream::Stdout, &line, partial);
                        }
                    }
                    if signs {
                        self.output_sign(&mut last_sign).await;
                    }
                }
                read = read_some(&mut stderr, &mut err_buf), if err_open => {
                    let n = read;
                    if n == 0 {
                        err_open = false;
                        err_split.finish(|l, p| lines.push((l.to_vec(), p)));
                    } else {
                        err_split.push(&err_buf[..n], |l, p| lines.push((l.to_vec(), p)));
                    }
                    let signs = !lines.is_empty();
                    for (line, partial) in lines.drain(..) {
                        let _ = self.log.write(Stream::Stderr, &line, partial);
                    }
                    if signs {
                        self.output_sign(&mut last_sign).await;
                    }
                }
                exited = self.child.wait(), if status.is_none() => {
                    status = Some(exited.unwrap_or_else(|e| {
                        // Nothing left to wait for: report it as a failure.
                        tracing::warn!(pid = self.pid, error = %e, "waiting for a job run failed");
                        std::os::unix::process::ExitStatusExt::from_raw(255 << 8)
                    }));
                    drain_until = Some(Instant::now() + self.config.drain_grace);
                }
                _ = ticker.tick(), if status.is_none() && self.config.process_heartbeats => {
                    let (cpu_ms, rss_bytes) = match proc_stats::sample(self.pid) {
                        Some((cpu, rss)) => (Some(cpu), Some(rss)),
                        None => (None, None),
                    };
                    let _ = self.tx.send(RunUpdate::Heartbeat { cpu_ms, rss_bytes }).await;
                }
                () = self.cancel.notify.notified(), if canceled.is_none() && status.is_none() => {
                    let reason = self.cancel.reason.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
                    let _ = self.log.note(&format!("cancel requested ({reason}): SIGTERM to the process group"));
                    self.signal_group(Signal::SIGTERM);
                    kill_at = Some(Instant::now() + self.config.kill_grace);
                    canceled = Some(reason);
                }
                () = sleep_until_some(kill_at), if status.is_none() => {
                    let _ = self.log.note("still running after the kill grace: SIGKILL to the process group");
                    self.signal_group(Signal::SIGKILL);
                    kill_at = None;
                }
                () = sleep_until_some(drain_until) => {
                    let _ = self.log.note("pipes still open after the process exited: killing the rest of its group");
                    break;
                }
            }
        }
        // Whatever the job left behind in its group goes with it.
        self.signal_group(Signal::SIGKILL);
        let exit = status.map_or(ExitStatus::Code(255), ExitStatus::from);
        let outcome = match (canceled, scanner.finish(exit)) {
            // Finished its work before the cancel reached it: a success.
            (Some(_), done @ Outcome::Succeeded { .. }) => done,
            (Some(reason), _) => Outcome::Canceled { reason },
            (None, outcome) => outcome,
        };
        let _ = self.log.note(&format!("exited with {exit}"));
        let _ = self.log.flush();
        outcome
    }
}

/// Reads from a pipe; 0 at its end or on an error (the pipe is done).
async fn read_some<R: AsyncReadExt + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> usize {
    match pipe {
        Some(p) => p.read(buf).await.unwrap_or(0),
        None => 0,
    }
}
