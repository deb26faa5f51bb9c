//! Planner (stub; being written).
use thiserror::Error;
/// Plan error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Lookup.
    #[error(transparent)]
    Lookup(#[from] crate::graph::LookupError),
}
/// Availability.
pub trait Availability: Send + Sync + std::fmt::Debug {}
/// Planner.
#[derive(Debug)]
pub struct Planner;
