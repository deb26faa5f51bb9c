//! The orchestrator's timeouts and intervals, with their defaults in one
//! place.

use std::time::Duration;

use super::BuildError;

/// Timeouts and intervals of an [`Orchestrator`](super::Orchestrator).
///
/// | setting | default | what it does |
/// |---|---|---|
/// | `liveness_timeout` | 60 s | a run with no sign of life (any update) for this long is Lost; applies to executors that report heartbeats |
/// | `bel_heartbeat_interval` | 30 s | at most one `JobRunHeartbeat` per run in the BEL per interval (liveness itself is tracked in memory at every update) |
/// | `build_heartbeat_interval` | 30 s | a `BuildHeartbeat` with run counts per request per interval |
/// | `kill_grace` | 30 s | how long a request waits for its cancels to be confirmed before ending without them (backends have their own grace before a forced kill) |
/// | `max_missing_deps_reruns` | 10 | reruns of one task after missing deps before it fails |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrchestratorSettings {
    /// See the table.
    pub liveness_timeout: Duration,
    /// See the table.
    pub bel_heartbeat_interval: Duration,
    /// See the table.
    pub build_heartbeat_interval: Duration,
    /// See the table.
    pub kill_grace: Duration,
    /// See the table.
    pub max_missing_deps_reruns: u32,
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        Self {
            liveness_timeout: Duration::from_secs(60),
            bel_heartbeat_interval: Duration::from_secs(30),
            build_heartbeat_interval: Duration::from_secs(30),
            kill_grace: Duration::from_secs(30),
            max_missing_deps_reruns: 10,
        }
    }
}

impl OrchestratorSettings {
    /// Sets `liveness_timeout`.
    #[must_use]
    pub fn liveness_timeout(mut self, d: Duration) -> Self {
        self.liveness_timeout = d;
        self
    }

    /// Sets `bel_heartbeat_interval`.
    #[must_use]
    pub fn bel_heartbeat_interval(mut self, d: Duration) -> Self {
        self.bel_heartbeat_interval = d;
        self
    }

    /// Sets `build_heartbeat_interval`.
    #[must_use]
    pub fn build_heartbeat_interval(mut self, d: Duration) -> Self {
        self.build_heartbeat_interval = d;
        self
    }

    /// Sets `kill_grace`.
    #[must_use]
    pub fn kill_grace(mut self, d: Duration) -> Self {
        self.kill_grace = d;
        self
    }

    /// Sets `max_missing_deps_reruns`.
    #[must_use]
    pub fn max_missing_deps_reruns(mut self, n: u32) -> Self {
        self.max_missing_deps_reruns = n;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        for (setting, d) in [
            ("liveness_timeout", self.liveness_timeout),
            ("bel_heartbeat_interval", self.bel_heartbeat_interval),
            ("build_heartbeat_interval", self.build_heartbeat_interval),
            ("kill_grace", self.kill_grace),
        ] {
            if d.is_zero() {
                return Err(BuildError::InvalidSetting {
                    setting,
                    reason: "must be longer than zero".into(),
                });
            }
        }
        Ok(())
    }
}
