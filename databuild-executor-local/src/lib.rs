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
//! reported as heartbeats (or, with
//! [`LocalConfig::process_heartbeats`] off, its output lines and
//! `__DATABUILD_HEARTBEAT__` lines as its only signs of life, as for a
//! backend that cannot observe its runs), and its end classified by the shared
//! [`OutputScanner`](databuild_core::executor::OutputScanner) (so a
//! missing-deps marker decides the outcome whatever the exit code).
//! Cancelling sends SIGTERM to the group, then SIGKILL after the grace, so
//! grandchildren die too.
//!
//! In *direct mode* (the default) runs are children of the orchestrator's
//! process and do not survive it as runs: after a crash, the next executor
//! on the same runs directory kills the process groups the dead one left
//! (each run's pid and start time are recorded), and the restarted
//! orchestrator declares those runs lost and runs them again.
//!
//! In *runner mode* ([`LocalConfig::runner`]) each run has a supervisor
//! process (the `databuild-runner` binary, or a host calling
//! [`runner_main`]) that outlives the orchestrator and records the run's
//! exit status and marker lines in its run directory; a later executor lists
//! the surviving runs and re-attaches to them (`Executor::list_runs`,
//! `Executor::reattach`), which the orchestrator does when it starts.
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
pub use runner::{runner_main, runner_main_with};
