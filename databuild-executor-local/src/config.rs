use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use databuild_core::executor::LineSplitter;

/// Settings of a [`LocalExecutor`](crate::LocalExecutor).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalConfig {
    /// Where run directories (`runs/<job_run_id>/`, holding the config
    /// file) are made.
    pub state_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL when a run is cancelled.
    pub kill_grace: Duration,
    /// How often a running process's CPU and memory are sampled and
    /// reported as a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long to keep reading a run's pipes after it exited (a daemon it
    /// started may hold them); then what is left of its group is killed.
    pub drain_grace: Duration,
    /// Longest log line; longer lines are logged in pieces.
    pub line_cap: usize,
    /// Labels matched against tasks' label requirements.
    pub labels: BTreeMap<String, String>,
}

impl LocalConfig {
    /// Settings with `state_dir` and defaults: 10 s kill grace, 1 s
    /// heartbeats, 2 s drain grace, 1 MiB lines, labels `os` and `arch` of
    /// this machine.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            kill_grace: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            drain_grace: Duration::from_secs(2),
            line_cap: LineSplitter::DEFAULT_CAP,
            labels: [
                ("os".to_owned(), std::env::consts::OS.to_owned()),
                ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
            ]
            .into(),
        }
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
