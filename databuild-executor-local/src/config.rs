use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use databuild_core::executor::LineSplitter;

/// Settings of a [`LocalExecutor`](crate::LocalExecutor).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalConfig {
    /// The state directory (the default `runs_dir` falls back to
    /// `<state_dir>/runs`).
    pub state_dir: PathBuf,
    /// Where each run's config file, `<job_run_id>.json`, lives while the
    /// run does. It is created exclusively (the launch key: one job run id
    /// launches once) and removed when the run ends. The default is a
    /// private directory on tmpfs, `/dev/shm/databuild-<uid>/<hash of
    /// state_dir>`, when `/dev/shm` exists (a config file costs no disk
    /// inode: on a busy ext4 volume an inode costs more than a spawn), else
    /// `<state_dir>/runs`.
    pub runs_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL when a run is cancelled.
    pub kill_grace: Duration,
    /// How often a running process's CPU and memory are sampled and
    /// reported as a heartbeat.
    pub heartbeat_interval: Duration,
    /// Whether the job's process is sampled for heartbeats (the default).
    /// Off, the job's own output is its only sign of life: any line, or a
    /// `__DATABUILD_HEARTBEAT__` line (never logged as output); a job
    /// silent for the orchestrator's liveness timeout is then Lost.
    pub process_heartbeats: bool,
    /// How long to keep reading a run's pipes after it exited (a daemon it
    /// started may hold them); then what is left of its group is killed.
    pub drain_grace: Duration,
    /// Longest log line; longer lines are logged in pieces.
    pub line_cap: usize,
    /// Labels matched against tasks' label requirements.
    pub labels: BTreeMap<String, String>,
    /// Runner mode: the argv of the per-run supervisor (the
    /// `databuild-runner` binary, or a host program calling
    /// [`runner_main`](crate::runner_main)), which is started as
    /// `<argv> run <run_dir>`. `None` (the default) is direct mode.
    pub runner: Option<Vec<String>>,
}

impl LocalConfig {
    /// Settings with `state_dir` and defaults: 10 s kill grace, 1 s
    /// heartbeats, 2 s drain grace, 1 MiB lines, labels `os` and `arch` of
    /// this machine.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let state_dir = state_dir.into();
        Self {
            runs_dir: default_runs_dir(&state_dir),
            state_dir,
            kill_grace: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            process_heartbeats: true,
            drain_grace: Duration::from_secs(2),
            line_cap: LineSplitter::DEFAULT_CAP,
            labels: [
                ("os".to_owned(), std::env::consts::OS.to_owned()),
                ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
            ]
            .into(),
            runner: None,
        }
    }

    /// Runner mode, with `argv` starting the supervisor.
    #[must_use]
    pub fn runner(mut self, argv: Vec<String>) -> Self {
        self.runner = Some(argv);
        self
    }

    /// Sets where run config files go.
    #[must_use]
    pub fn runs_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runs_dir = dir.into();
        self
    }

    /// Sets the kill grace.
    #[must_use]
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Sets the heartbeat interval.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Applies shared [`Settings`](databuild_core::settings::Settings): the
    /// heartbeat interval and the labels (over this machine's `os` and
    /// `arch`).
    #[must_use]
    pub fn settings(mut self, settings: &databuild_core::settings::Settings) -> Self {
        self.heartbeat_interval = settings.heartbeat_interval;
        self.labels
            .extend(settings.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// Samples the job's process for heartbeats (`true`, the default), or
    /// leaves the job's output lines as its only signs of life.
    #[must_use]
    pub fn process_heartbeats(mut self, yes: bool) -> Self {
        self.process_heartbeats = yes;
        self
    }

    /// Sets the drain grace.
    #[must_use]
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// Sets the log line cap.
    #[must_use]
    pub fn line_cap(mut self, cap: usize) -> Self {
        self.line_cap = cap;
        self
    }
}

/// `/dev/shm/databuild-<uid>/<hash of state_dir>` when `/dev/shm` is a
/// directory, else `<state_dir>/runs`.
fn default_runs_dir(state_dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return state_dir.join("runs");
    }
    let absolute = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let mut h = std::hash::DefaultHasher::new();
    absolute.hash(&mut h);
    shm.join(format!("databuild-{}", nix::unistd::getuid()))
        .join(format!("{:016x}", h.finish()))
}
