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
//! ## Node agents
//!
//! A [`SubgraphJob`](databuild_core::SubgraphJob)'s task is a whole part of
//! a plan (one date's tasks, say) for one `databuild agent` container
//! (seed 003's node executor): the image is the environment, the saved
//! subplan goes in as a read-only file (`/databuild/plan.pb`, uploaded to
//! an engine over TCP), and the graph file the subplan was made from as
//! `/databuild/databuild.toml`. The agent's JSON lines come back as run
//! updates: its events as
//! [`RunUpdate::NodeEvents`](databuild_core::executor::RunUpdate::NodeEvents)
//! (tagged with their origin: the run, and the agent's own seq; the
//! orchestrator records each once, also after a re-attach, which reads the
//! container's output from its start), its keep-alives as heartbeats (the
//! only signs of life of an agent: a paused one is Lost after the liveness
//! timeout), and its result's combined log (every task's stdout and stderr
//! and the agent's own entries, by time, each line prefixed with its source)
//! into the run's log. An agent that ends without a result (killed, or its
//! engine gone) is a lost node: a retryable failure; the orchestrator
//! closes the runs the node left open in its record (Lost, or Canceled
//! before launch), and the retry's subplan leaves out the partitions the
//! lost agent reported built. A retry of any run goes to another engine
//! than its previous attempt when one can take it.
//!
//! Heartbeats: a running container's stats are sampled every 5 s (keep
//! the orchestrator's `liveness_timeout` well above that); an agent's are
//! its keep-alives (`DATABUILD_KEEPALIVE_INTERVAL` in its environment).
//! The agent keeps its tasks' logs and run files on the container's
//! `/dev/shm` (64 MiB unless the engine is told otherwise).
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
