//! Why the executor could not start.

use thiserror::Error;

/// Why a [`DockerExecutor`](crate::DockerExecutor) could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No engine is configured.
    #[error("no Docker engine is configured")]
    NoEngine,
    /// An engine did not answer (not running, wrong socket, refused).
    #[error("Docker engine {engine} at {endpoint} is unreachable: {reason}")]
    Unreachable {
        /// The engine's name.
        engine: String,
        /// Where it was looked for.
        endpoint: String,
        /// What the connection said.
        reason: String,
    },
    /// A setting is not valid.
    #[error("invalid Docker executor setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}
