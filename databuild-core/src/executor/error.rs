use thiserror::Error;

use crate::job::BoxError;

/// Why an executor operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The backend does not offer this operation.
    #[error("executor {backend} does not support {operation}")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend's name.
        backend: String,
    },
    /// The backend cannot run this kind of job (an in-process job sent to a
    /// process executor, say).
    #[error("executor {backend} cannot run job {job}: {reason}")]
    Incompatible {
        /// The backend's name.
        backend: String,
        /// The job.
        job: String,
        /// Why.
        reason: String,
    },
    /// Launching failed. `retryable` says whether trying again can help
    /// (an engine that is down) or not (an entrypoint that does not exist).
    #[error("launching job run {job_run_id} failed: {reason}")]
    Launch {
        /// The job run.
        job_run_id: String,
        /// What went wrong.
        reason: String,
        /// Whether a retry can help.
        retryable: bool,
    },
    /// No run with this id is known to the executor.
    #[error("executor knows no job run {job_run_id}")]
    UnknownRun {
        /// The job run.
        job_run_id: String,
    },
    /// A backend-specific failure.
    #[error("executor {backend}: {source}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
}
