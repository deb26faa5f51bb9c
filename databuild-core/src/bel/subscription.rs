//! Subscriptions (stub; being written).
/// Head watch.
#[derive(Debug)]
pub struct HeadWatch;
/// Subscribe.
pub fn subscribe_via_reads() {}
