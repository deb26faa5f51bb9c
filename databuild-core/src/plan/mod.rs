//! Plans (stub; being written).
/// A plan.
#[derive(Debug, Clone, Default)]
pub struct JobGraph;
/// A task.
#[derive(Debug, Clone, Default)]
pub struct Task;
