//! What the command reports when it cannot do what it was asked.

use std::path::PathBuf;

use databuild_core::{BelError, BuildError, PartitionRefError, PatternError, PlanError};

use crate::graph_file::GraphFileError;

/// Why a command failed. Each says what to do next where there is
/// something to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The graph definition file is missing or wrong.
    #[error(transparent)]
    GraphFile(#[from] GraphFileError),
    /// A setting (file or `DATABUILD_*` variable) is not valid.
    #[error(transparent)]
    Settings(#[from] databuild_core::settings::SettingsError),
    /// A partition ref given on the command line is not valid.
    #[error(transparent)]
    Ref(#[from] PartitionRefError),
    /// A `--pattern` is not a valid regex.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A saved plan cannot be used: not a plan, cut short, or made for
    /// other job definitions.
    #[error("{}: {reason}", path.display())]
    SavedPlan {
        /// The plan file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// There is no store at the home directory.
    #[error(
        "no build event log at {}: run `databuild build` first, or point --home (DATABUILD_HOME) at one",
        path.display()
    )]
    NoStore {
        /// The path looked at.
        path: PathBuf,
    },
    /// No build request has this id.
    #[error("no build request {id:?} in {}", home.display())]
    UnknownBuildRequest {
        /// The id given.
        id: String,
        /// The home looked in.
        home: PathBuf,
    },
    /// No job run has this id.
    #[error("no job run {id:?} in {}", home.display())]
    UnknownJobRun {
        /// The id given.
        id: String,
        /// The home looked in.
        home: PathBuf,
    },
    /// The request already ended.
    #[error("build request {id} already ended ({state})")]
    AlreadyEnded {
        /// The request.
        id: String,
        /// How it ended.
        state: String,
    },
    /// The plan could not be made (an unmatched or ambiguous ref, a cycle,
    /// a failing `config`).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A build could not run.
    #[error(transparent)]
    Build(BuildError),
    /// The event log failed.
    #[error(transparent)]
    Bel(#[from] BelError),
    /// The running build's control socket did not answer, or refused.
    #[error("the running build (control socket {}): {reason}", socket.display())]
    Control {
        /// The socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The store is held by another process whose control socket did not
    /// answer in time: it is starting, stopping (it finishes the requests
    /// submitted to it before it lets the store go) or stuck.
    #[error(
        "the store in {} is held by another databuild process{} whose control socket {} did not answer within {} s ({reason}): it may be stopping after the requests submitted to it; try again when it ends",
        home.display(),
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        socket.display(),
        waited.as_secs()
    )]
    HolderUnreachable {
        /// The home.
        home: PathBuf,
        /// The socket tried.
        socket: PathBuf,
        /// The holder's pid, when known.
        holder: Option<u32>,
        /// How long it was tried.
        waited: std::time::Duration,
        /// The last failure.
        reason: String,
    },
    /// A build was handed to the build holding the store, which builds
    /// another graph: one store runs one graph's jobs at a time.
    #[error(
        "the build holding {} runs graph file {}, and {} defines other jobs (entrypoints, environments, images, outputs or working directories differ): wait for that build to end, or give this one its own --home",
        home.display(),
        holders.display(),
        ours.display()
    )]
    GraphMismatch {
        /// The home.
        home: PathBuf,
        /// The graph file of this command.
        ours: PathBuf,
        /// The graph file of the build holding the store.
        holders: PathBuf,
    },
    /// An executor could not start (a Docker engine that does not answer).
    #[error("the {executor} executor cannot start: {reason}")]
    Executor {
        /// Which.
        executor: &'static str,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<BuildError> for CliError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Plan(p) => CliError::Plan(p),
            other => CliError::Build(other),
        }
    }
}

impl CliError {
    /// The process exit code: 2 for usage and configuration errors, 1 for
    /// the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::GraphFile(_)
            | CliError::Settings(_)
            | CliError::SavedPlan { .. }
            | CliError::Ref(_)
            | CliError::Pattern(_)
            | CliError::NoStore { .. }
            | CliError::UnknownBuildRequest { .. }
            | CliError::UnknownJobRun { .. }
            | CliError::GraphMismatch { .. }
            | CliError::Plan(_) => 2,
            _ => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
        let path = path.into();
        move |source| CliError::Io { path, source }
    }
}
