//! Buffering (seed 000, "collecting other wants"; DESIGN.md "Buffering"):
//! the ready partitions of a job with a buffering window wait, across
//! build requests, until the window closes or the batch is full, and then
//! go out as one `config` call whose configs each become one job run.
//!
//! The request whose partition opened a job's buffer owns it: it flushes
//! it (on its window timer, or when a joiner fills the batch and sends it
//! [`Control::FlushBuffer`](super::execution::Control)), runs the runs, and
//! answers each joining request with the runs that cover its partitions,
//! which the joiner then attaches to and waits for, as for any partition
//! another request builds.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::claims::Claim;
use crate::partition::PartitionRef;

/// One job's open buffer.
#[derive(Debug)]
pub(crate) struct Buffer {
    /// Its id, in `JobRunBuffering` events.
    pub(crate) id: String,
    /// The request that flushes it.
    pub(crate) owner: String,
    /// Every partition in it, in arrival order.
    pub(crate) partitions: Vec<PartitionRef>,
    /// When the window closes (unix ns).
    pub(crate) deadline_ns: i64,
    /// The batch size that flushes it early.
    pub(crate) max_batch: Option<u32>,
    /// Other requests' partitions, each with where to send the runs.
    pub(crate) joiners: Vec<Joiner>,
}

impl Buffer {
    /// Whether the batch is full.
    pub(crate) fn full(&self) -> bool {
        self.max_batch
            .is_some_and(|m| self.partitions.len() >= m as usize)
    }
}

/// A request that put partitions into another request's buffer.
#[derive(Debug)]
pub(crate) struct Joiner {
    /// The joining request.
    pub(crate) request: String,
    /// Its partitions.
    pub(crate) partitions: Vec<PartitionRef>,
    /// The runs covering them, or why there are none.
    pub(crate) reply: oneshot::Sender<Result<Vec<Covered>, String>>,
}

/// A joiner's partition and the owner's run that builds it.
#[derive(Debug)]
pub(crate) struct Covered {
    /// The partition.
    pub(crate) partition: PartitionRef,
    /// The run.
    pub(crate) run: String,
    /// The request that runs it.
    pub(crate) owner: String,
    /// The claim of the run's task: the joiner waits on it.
    pub(crate) claim: Arc<Claim>,
}
