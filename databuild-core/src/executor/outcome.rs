use std::fmt;

use crate::job::protocol::{ManifestEntry, MissingDeps};
use crate::proto::FailureStage;

/// How a job run's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

impl ExitStatus {
    /// The proto form, as `JobRunTaskFailed` carries it.
    pub fn to_proto(self) -> crate::proto::job_run_task_failed::Exit {
        use crate::proto::job_run_task_failed::Exit;
        match self {
            ExitStatus::Code(c) => Exit::ExitCode(c),
            ExitStatus::Signal(s) => Exit::Signal(s),
        }
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    /// A process's exit: its code, or the signal that killed it.
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

/// How a job run ended, classified the same way by every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The run succeeded; `manifest` holds what its manifest marker said.
    Succeeded {
        /// Entries of `__DATABUILD_MANIFEST__` lines, if any.
        manifest: Vec<ManifestEntry>,
    },
    /// The run failed.
    Failed {
        /// At which stage of job.exec.
        stage: FailureStage,
        /// Why, quoting what the job printed where that helps.
        reason: String,
        /// How the process ended, when it ran.
        exit: Option<ExitStatus>,
        /// Whether a retry can help.
        retryable: bool,
    },
    /// The run reported missing inputs (whatever its exit code).
    MissingDeps {
        /// What it needs.
        missing_deps: Vec<MissingDeps>,
        /// How the process ended.
        exit: Option<ExitStatus>,
    },
    /// The run was stopped on request and is confirmed gone.
    Canceled {
        /// Why it was stopped.
        reason: String,
    },
}

impl Outcome {
    /// A failure of the task itself.
    pub fn task_failed(reason: impl Into<String>, exit: Option<ExitStatus>) -> Self {
        Outcome::Failed {
            stage: FailureStage::Task,
            reason: reason.into(),
            exit,
            retryable: true,
        }
    }

    /// True for a success.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }
}
