use std::time::Duration;

use thiserror::Error;

use super::JobLabel;
use crate::partition::{PartitionRef, PartitionRefError, PatternError};

/// Why a job's `config` call (seed 001's job.config) failed.
///
/// Every variant names the job; variants about job output quote it
/// (truncated), so a bad config can be found without rerunning it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JobConfigError {
    /// `validate_args`: the requested outputs are not valid for this job.
    #[error("job {job}: invalid arguments: {reason}")]
    ArgsInvalid {
        /// The job.
        job: JobLabel,
        /// Why the arguments are invalid.
        reason: String,
    },
    /// An in-process config function returned an error.
    #[error("job {job}: config failed: {reason}")]
    Failed {
        /// The job.
        job: JobLabel,
        /// The error it returned.
        reason: String,
    },
    /// The config program could not be started.
    #[error("job {job}: cannot start config program {program}: {source}")]
    Spawn {
        /// The job.
        job: JobLabel,
        /// The program, quoted.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the config program's output failed.
    #[error("job {job}: reading config output failed: {source}")]
    Io {
        /// The job.
        job: JobLabel,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The config program exited unsuccessfully.
    #[error("job {job}: config exited with {status}; stderr: {stderr}")]
    NonZeroExit {
        /// The job.
        job: JobLabel,
        /// Exit code or signal, as text.
        status: String,
        /// The end of its stderr, quoted.
        stderr: String,
    },
    /// The config output is not the protocol's JSON.
    #[error("job {job}: malformed config output ({reason}): {output}")]
    MalformedOutput {
        /// The job.
        job: JobLabel,
        /// What is wrong with it.
        reason: String,
        /// The start of the output, quoted.
        output: String,
    },
    /// The config output passed the size limit.
    #[error("job {job}: config output passed the limit of {limit} bytes: {output}")]
    OutputTooLarge {
        /// The job.
        job: JobLabel,
        /// The limit in bytes.
        limit: usize,
        /// The start of the output, quoted.
        output: String,
    },
    /// The config call did not finish in time.
    #[error("job {job}: config did not finish within {after:?}")]
    Timeout {
        /// The job.
        job: JobLabel,
        /// The limit.
        after: Duration,
    },
    /// A config named an invalid partition ref.
    #[error("job {job}: config returned an invalid partition ref: {source}")]
    InvalidRef {
        /// The job.
        job: JobLabel,
        /// Why the ref is invalid.
        #[source]
        source: PartitionRefError,
    },
    /// The configs cover outputs nobody asked for.
    #[error(
        "job {job}: config returned outputs that were not asked for: {}",
        list(refs)
    )]
    UnrequestedOutputs {
        /// The job.
        job: JobLabel,
        /// The outputs nobody asked for.
        refs: Vec<PartitionRef>,
    },
    /// Several configs cover the same outputs.
    #[error("job {job}: more than one config covers outputs: {}", list(refs))]
    DuplicateOutputs {
        /// The job.
        job: JobLabel,
        /// The outputs covered more than once.
        refs: Vec<PartitionRef>,
    },
    /// Some requested outputs are covered by no config.
    #[error("job {job}: config did not cover requested outputs: {}", list(refs))]
    MissingOutputs {
        /// The job.
        job: JobLabel,
        /// The requested outputs no config covers.
        refs: Vec<PartitionRef>,
    },
}

impl JobConfigError {
    /// The job whose config failed.
    pub fn job(&self) -> &JobLabel {
        match self {
            JobConfigError::ArgsInvalid { job, .. }
            | JobConfigError::Failed { job, .. }
            | JobConfigError::Spawn { job, .. }
            | JobConfigError::Io { job, .. }
            | JobConfigError::NonZeroExit { job, .. }
            | JobConfigError::MalformedOutput { job, .. }
            | JobConfigError::OutputTooLarge { job, .. }
            | JobConfigError::Timeout { job, .. }
            | JobConfigError::InvalidRef { job, .. }
            | JobConfigError::UnrequestedOutputs { job, .. }
            | JobConfigError::DuplicateOutputs { job, .. }
            | JobConfigError::MissingOutputs { job, .. } => job,
        }
    }
}

/// Lists refs for an error message, at most ten of them.
pub(crate) fn list(refs: &[PartitionRef]) -> String {
    const SHOWN: usize = 10;
    let mut s = refs
        .iter()
        .take(SHOWN)
        .map(|r| format!("{:?}", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if refs.len() > SHOWN {
        s.push_str(&format!(" and {} more", refs.len() - SHOWN));
    }
    s
}

/// Why a job definition is invalid.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JobDefinitionError {
    /// The label is invalid.
    #[error(transparent)]
    Label(#[from] super::JobLabelError),
    /// A pattern is invalid.
    #[error("job {job}: {source}")]
    Pattern {
        /// The job.
        job: String,
        /// The pattern error.
        #[source]
        source: PatternError,
    },
    /// The job declares no output pattern.
    #[error("job {job} declares no output pattern")]
    NoPatterns {
        /// The job.
        job: String,
    },
    /// A required part of the definition is missing.
    #[error("job {job}: {what} is missing")]
    Missing {
        /// The job.
        job: String,
        /// What is missing.
        what: &'static str,
    },
    /// The definition is inconsistent (a subgraph job naming a job its
    /// graph does not have, say).
    #[error("job {job}: {reason}")]
    Invalid {
        /// The job.
        job: String,
        /// What is wrong.
        reason: String,
    },
}
