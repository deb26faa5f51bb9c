use thiserror::Error;

use crate::job::JobLabel;
use crate::partition::PartitionRef;

/// Why a graph definition is invalid.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Two jobs share a label.
    #[error("two jobs are labelled {label}")]
    DuplicateLabel {
        /// The label.
        label: JobLabel,
    },
    /// A job declares no output pattern.
    #[error("job {job} declares no output pattern")]
    NoPatterns {
        /// The job.
        job: JobLabel,
    },
    /// The patterns cannot be compiled together (too large, say).
    #[error("the graph's patterns cannot be compiled together: {reason}")]
    Patterns {
        /// What the regex compiler said.
        reason: String,
    },
}

/// Why a partition ref maps to no single job.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No job's pattern matches the ref.
    #[error(
        "no job produces partition {:?}; closest of {total_patterns} patterns: {}",
        partition.as_str(),
        closest.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
    )]
    NoJob {
        /// The ref.
        partition: PartitionRef,
        /// The patterns most like the ref, best first.
        closest: Vec<String>,
        /// How many patterns the graph has.
        total_patterns: usize,
    },
    /// Patterns of several jobs match the ref.
    #[error(
        "partition {:?} is produced by more than one job: {}",
        partition.as_str(),
        jobs.iter().map(JobLabel::as_str).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The ref.
        partition: PartitionRef,
        /// The jobs whose patterns match it.
        jobs: Vec<JobLabel>,
    },
}

impl LookupError {
    /// The ref that could not be mapped.
    pub fn partition(&self) -> &PartitionRef {
        match self {
            LookupError::NoJob { partition, .. } | LookupError::Ambiguous { partition, .. } => {
                partition
            }
        }
    }
}
