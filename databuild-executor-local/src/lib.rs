//! A [databuild](databuild_core) executor that runs job runs as local
//! processes.
//!
//! - [`LocalExecutor`]: the backend; hold it as `Arc<dyn Executor>`.
//! - [`LocalConfig`]: its settings (state directory, kill grace, heartbeat
//!   interval, drain grace, line cap, labels).
//!
//! Each run is `<entrypoint> exec <args>...` in a process group of its own,
//! with its config on stdin and in `DATABUILD_CONFIG_FILE`, its stdout and
//! stderr streamed line by line into its log file, its CPU and memory
//! reported as heartbeats, and its end classified by the shared
//! [`OutputScanner`](databuild_core::executor::OutputScanner) (so a
//! missing-deps marker decides the outcome whatever the exit code).
//! Cancelling sends SIGTERM to the group, then SIGKILL after the grace, so
//! grandchildren die too.
//!
//! This is *direct mode*: runs are children of the orchestrator's process
//! and do not survive it as runs: after a crash, the next executor on the
//! same runs directory kills the process groups the dead one left (each
//! run's pid and start time are recorded), and the restarted orchestrator
//! declares those runs lost and runs them again. Runner mode (a supervisor
//! process that outlives orchestrators, so runs are re-attached instead)
//! comes with the orchestrator's re-entrance work.
//!
//! ```no_run
//! use std::sync::Arc;
//! use databuild_core::Executor;
//! use databuild_executor_local::{LocalConfig, LocalExecutor};
//!
//! let executor: Arc<dyn Executor> = Arc::new(LocalExecutor::new(LocalConfig::new(".databuild")));
//! assert_eq!(executor.info().name, "local");
//! ```
//!
//! Supported Rust versions: the workspace's `rust-version`.

mod config;
mod executor;
mod leftovers;
mod proc_stats;
mod runner;

pub use config::LocalConfig;
pub use executor::LocalExecutor;
pub use runner::runner_main;
