use thiserror::Error;

use crate::bel::BelError;
use crate::graph::LookupError;
use crate::job::{JobConfigError, JobLabel};
use crate::partition::PartitionRef;

/// Why graph.analyze failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A partition maps to no job, or to several.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// A job's config failed or returned configs that do not cover exactly
    /// what was asked.
    #[error(transparent)]
    Config(#[from] JobConfigError),
    /// The configs form a cycle.
    #[error("cycle detected: {}", describe_cycle(cycle, jobs))]
    Cycle {
        /// The partitions along the cycle, the first repeated at the end:
        /// each is read by the task that produces the next.
        cycle: Vec<PartitionRef>,
        /// The job producing each partition of `cycle` (one fewer entry).
        jobs: Vec<JobLabel>,
    },
    /// A stored or shipped plan is invalid.
    #[error("invalid plan: {reason}")]
    InvalidPlan {
        /// What is wrong with it.
        reason: String,
    },
    /// Recording the analysis in the build event log failed.
    #[error("recording the analysis failed: {0}")]
    Bel(#[from] BelError),
}

fn describe_cycle(cycle: &[PartitionRef], jobs: &[JobLabel]) -> String {
    let mut parts: Vec<String> = cycle
        .iter()
        .zip(jobs)
        .map(|(r, j)| format!("{:?} ({j})", r.as_str()))
        .collect();
    if let Some(first) = cycle.first() {
        parts.push(format!("{:?}", first.as_str()));
    }
    parts.join(" -> ")
}
