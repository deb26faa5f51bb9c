//! The build state as rows, for sinks that keep it materialized next to the
//! log (DESIGN.md "Storage": startup reads the rows instead of replaying the
//! whole log).

/// Rows of the build state: a whole state ([`BelSink::save_state`],
/// [`BelSink::load_state`]) or what one batch changed
/// ([`BelSink::append_with_state`]).
///
/// [`BuildState`](crate::state::BuildState) makes and reads them; a sink
/// stores them as they are, keyed by id, replacing earlier rows.
///
/// [`BelSink::save_state`]: crate::bel::BelSink::save_state
/// [`BelSink::load_state`]: crate::bel::BelSink::load_state
/// [`BelSink::append_with_state`]: crate::bel::BelSink::append_with_state
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateRows {
    /// Job runs.
    pub runs: Vec<RunRow>,
    /// Build requests.
    pub requests: Vec<RequestRow>,
    /// Catalog entries.
    pub partitions: Vec<PartitionRow>,
}

impl StateRows {
    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.requests.is_empty() && self.partitions.is_empty()
    }
}

/// One job run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Its id.
    pub job_run_id: String,
    /// Whether it ended (for queries of the open runs).
    pub ended: bool,
    /// A `JobRunRecord` (protobuf).
    pub record: Vec<u8>,
}

/// One build request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Its id.
    pub build_request_id: String,
    /// Whether it ended.
    pub ended: bool,
    /// A `BuildRequestRecord` (protobuf).
    pub record: Vec<u8>,
}

/// One partition of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    /// The partition's ref.
    pub partition: String,
    /// Its status (a `PartitionStatus` code).
    pub status: i32,
    /// The job run that last changed it.
    pub job_run_id: String,
    /// The seq of the event that set the status. In the rows of one batch
    /// (`append_with_state`) it is that event's index in the batch, and the
    /// sink adds the seq the batch starts at.
    pub seq: u64,
}
