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
    /// The request's scratch directory could not be created.
    #[error("creating the scratch directory {path} failed: {source}")]
    Scratch {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No live build request (or job run) has this id.
    #[error("no live build request or job run has id {id:?}")]
    NotLive {
        /// The id asked for.
        id: String,
    },
    /// A setting is out of range.
    #[error("invalid setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The graph cannot do this (for example `build` on a planner).
    #[error("{operation} is not supported by {by}")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// What was asked.
        by: &'static str,
    },
    /// The state could not be rebuilt from the BEL at start.
    #[error("loading the build state from the BEL failed: {0}")]
    Load(#[from] crate::state::LoadError),
    /// The task running the build panicked or was aborted.
    #[error("the build task ended abnormally: {0}")]
    Aborted(String),
    /// The orchestrator produced an event its own state diagrams refuse (a
    /// bug, reported rather than written).
    #[error("refused an event that breaks the state diagrams: {0}")]
    Violation(Violation),
}
