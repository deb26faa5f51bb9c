use thiserror::Error;

use crate::bel::BelError;
use crate::planner::PlanError;
use crate::state::Violation;

/// Why a build could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The orchestrator builder lacks a required setting.
    #[error("the orchestrator needs a {setting}")]
    MissingSetting {
        /// The setting.
        setting: &'static str,
    },
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Tasks no executor can take.
    #[error("jobs unschedulable: {}", tasks.iter().map(|(job, why)| format!("{job} ({why})")).collect::<Vec<_>>().join(", "))]
    Unschedulable {
        /// Each job and why.
        tasks: Vec<(String, String)>,
    },
    /// Recording the build failed.
    #[error("recording the build failed: {0}")]
    Bel(#[from] BelError),
    /// The orchestrator produced an event its own state diagrams refuse (a
    /// bug, reported rather than written).
    #[error("refused an event that breaks the state diagrams: {0}")]
    Violation(Violation),
}
