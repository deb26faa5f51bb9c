//! Runs databuild job runs as containers on one or several Docker engines.
//!
//! The image is the job's environment (seed 003): reproducible and
//! isolated, with run information passed in environment variables. A
//! [`DockerExecutor`] connects to its engines through the Engine API
//! ([bollard], version negotiated, so Debian's API 1.41 engine works),
//! and implements [`Executor`](databuild_core::Executor): launch (a
//! container named after the job run id, labelled for recovery), output
//! into the run's log through the shared marker scanner, heartbeats from
//! stats, cancel (stop with a grace period, then kill), an out-of-memory
//! kill reported as such, and re-entrance (containers are listed by label
//! and re-attached after an orchestrator restart). Runs are spread over
//! engines by free slots; each engine is pinged on an interval.
//!
//! ```no_run
//! use std::sync::Arc;
//! use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let config = DockerConfig::new(
//!     EngineConfig::unix("local", "/var/run/docker.sock", 4),
//!     ".databuild",
//! )
//! .default_image("busybox:latest")
//! .memory_bytes(512 << 20);
//! let executor = Arc::new(DockerExecutor::connect(config).await?);
//! // Orchestrator::builder().executor(executor)...
//! # let _ = executor;
//! # Ok(())
//! # }
//! ```
//!
//! Images are never pulled by default ([`PullPolicy::Never`]): a missing
//! image is a launch error naming it. An engine that does not answer at
//! start is [`ConnectError::Unreachable`], naming it.

mod agent;
mod config;
mod engine;
mod error;
mod executor;
mod watch;

pub use config::{DockerConfig, Endpoint, EngineConfig, Mount, PullPolicy};
pub use error::ConnectError;
pub use executor::DockerExecutor;
