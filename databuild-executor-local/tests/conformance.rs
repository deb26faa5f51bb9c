//! The executor conformance suite on the local executor.

use std::sync::Arc;
use std::time::Duration;

use databuild_core::testkit::executor::{self};
use databuild_executor_local::{LocalConfig, LocalExecutor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_executor_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalConfig::new(dir.path().join("state")).kill_grace(Duration::from_secs(2));
    let harness = executor::ShellHarness {
        name: "local",
        executor: Arc::new(LocalExecutor::new(config)),
        dir,
    };
    executor::run_all(&harness).await;
}

/// The same suite in runner mode: each run under its own supervisor
/// process (`databuild-runner`), outcome read back from the run directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_executor_conforms_in_runner_mode() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalConfig::new(dir.path().join("state"))
        .kill_grace(Duration::from_secs(2))
        .runner(vec![env!("CARGO_BIN_EXE_databuild-runner").into()]);
    let harness = executor::ShellHarness {
        name: "local",
        executor: Arc::new(LocalExecutor::new(config)),
        dir,
    };
    executor::run_all(&harness).await;
}
