//! The build event log (BEL): every state transition of build requests,
//! analyses, job configs and job runs, in order.
//!
//! The log is the single source of truth; views (the partition catalog, run
//! states) are reductions over it. A [`BelSink`] stores events, assigning
//! each a gap-free sequence number, and serves them back by sequence number
//! and filter, live through [`BelSink::subscribe`]. Sinks here: [`MemoryBel`]
//! and [`JsonlBel`] (one JSON event per line with a CRC32C checksum); the
//! SQLite store lives in its own crate.

pub mod check;
mod error;
mod event;
mod filter;
mod jsonl;
mod memory;
mod rows;
mod sink;
mod subscription;

pub use error::BelError;
pub use event::now_ns;
pub use filter::EventFilter;
pub use jsonl::{
    FsyncPolicy, JsonlBel, JsonlOptions, OpenReport, TornTail, decode_line, encode_event_line,
};
pub use memory::MemoryBel;
pub use rows::{PartitionRow, RequestRow, RunRow, StateRows};
pub use sink::{BelSink, BlobDigest, SeqRange};
pub use subscription::{BlockingPages, HeadWatch, PageReader, Wake, subscribe_via_reads};

/// The event type stored in the log.
pub use crate::proto::BuildEvent;
/// The members of [`BuildEvent`]'s `event` oneof.
pub use crate::proto::build_event::Event;

/// Runs a sink's blocking storage work on tokio's blocking pool; a task
/// that panics or is cancelled is a [`BelError::Backend`] of `backend`.
pub async fn run_blocking<T: Send + 'static>(
    backend: &'static str,
    f: impl FnOnce() -> Result<T, BelError> + Send + 'static,
) -> Result<T, BelError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BelError::Backend {
            backend,
            source: Box::new(e),
        })?
}
