//! JSONL sink (stub; being written).
/// Fsync policy.
#[derive(Debug, Clone, Copy)]
pub enum FsyncPolicy {
    /// Always.
    Always,
}
/// Options.
#[derive(Debug, Clone)]
pub struct JsonlOptions;
/// Report.
#[derive(Debug, Clone)]
pub struct OpenReport;
/// Torn tail.
#[derive(Debug, Clone)]
pub struct TornTail;
/// Sink.
#[derive(Debug)]
pub struct JsonlBel;
