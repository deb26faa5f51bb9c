//! Memory sink (stub; being written).
/// Sink.
#[derive(Debug, Default)]
pub struct MemoryBel;
