use thiserror::Error;

use crate::bel::BuildEvent;

/// An event the state diagrams do not allow where it stands in the log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event seq {seq} ({kind}, job run {job_run_id:?}, request {build_request_id:?}): {reason}")]
pub struct Violation {
    /// The event's sequence number.
    pub seq: u64,
    /// Its kind.
    pub kind: &'static str,
    /// Its job run, if any.
    pub job_run_id: String,
    /// Its build request, if any.
    pub build_request_id: String,
    /// What is wrong.
    pub reason: String,
}

impl Violation {
    pub(crate) fn new(e: &BuildEvent, reason: impl Into<String>) -> Self {
        Self {
            seq: e.seq,
            kind: e.kind(),
            job_run_id: e.job_run_id.clone(),
            build_request_id: e.build_request_id.clone(),
            reason: reason.into(),
        }
    }
}
