use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::BuildHasher;

use crate::partition::PartitionRef;

/// What the catalog knows of a partition, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionStatusView {
    /// Never built, or its last build failed: plan it.
    Missing,
    /// Built and valid: do not plan it.
    Available,
    /// A job run is building it now: do not plan it; wait on that run.
    Building {
        /// The job run building it.
        job_run_id: String,
    },
    /// Built but marked invalid: plan it again.
    Tainted,
}

/// The planner's view of which partitions already exist.
///
/// The orchestrator's partition catalog implements it; a plain set of refs
/// does too (every ref in the set is available).
pub trait Availability: Send + Sync + fmt::Debug {
    /// The status of `partition`.
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView;
}

/// An availability view in which nothing exists yet: every partition is
/// planned.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingAvailable;

impl Availability for NothingAvailable {
    fn status(&self, _: &PartitionRef) -> PartitionStatusView {
        PartitionStatusView::Missing
    }
}

impl<S: BuildHasher + Send + Sync> Availability for HashSet<PartitionRef, S> {
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView {
        if self.contains(partition) {
            PartitionStatusView::Available
        } else {
            PartitionStatusView::Missing
        }
    }
}

impl Availability for BTreeSet<PartitionRef> {
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView {
        if self.contains(partition) {
            PartitionStatusView::Available
        } else {
            PartitionStatusView::Missing
        }
    }
}
