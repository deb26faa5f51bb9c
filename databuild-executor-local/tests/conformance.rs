//! The executor conformance suite on the local executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use databuild_core::job::ProcessLaunch;
use databuild_core::testkit::executor::{self, Behaviour, ExecutorHarness};
use databuild_core::{Executor, Launch};
use databuild_executor_local::{LocalConfig, LocalExecutor};

struct Local {
    executor: Arc<LocalExecutor>,
    dir: tempfile::TempDir,
}

impl ExecutorHarness for Local {
    fn name(&self) -> &str {
        "local"
    }
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::clone(&self.executor) as Arc<dyn Executor>
    }
    fn launch_for(&self, behaviour: &Behaviour) -> Option<Launch> {
        let script = executor::sh_script(behaviour)?;
        Some(Launch::Process(ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
        ])))
    }
    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    fn captures_logs(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_executor_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalConfig::new(dir.path().join("state")).kill_grace(Duration::from_secs(2));
    let harness = Local {
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
    let harness = Local {
        executor: Arc::new(LocalExecutor::new(config)),
        dir,
    };
    executor::run_all(&harness).await;
}
