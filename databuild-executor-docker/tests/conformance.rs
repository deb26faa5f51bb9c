//! The executor conformance suite against a real Docker engine.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use databuild_core::job::ProcessLaunch;
use databuild_core::testkit::executor::{self, Behaviour, ExecutorHarness};
use databuild_core::{Executor, Launch};
use databuild_executor_docker::DockerExecutor;

struct Docker {
    executor: Arc<DockerExecutor>,
    dir: tempfile::TempDir,
}

impl ExecutorHarness for Docker {
    fn name(&self) -> &str {
        "docker"
    }
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::clone(&self.executor) as Arc<dyn Executor>
    }
    fn launch_for(&self, behaviour: &Behaviour) -> Option<Launch> {
        let script = executor::sh_script(behaviour)?;
        Some(Launch::Process(
            ProcessLaunch::new(vec!["sh".into(), "-c".into(), script, "sh".into()])
                .image(common::IMAGE),
        ))
    }
    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    fn captures_logs(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_executor_conforms() {
    let Some(engines) = common::engines("docker_executor_conforms", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&engines[..1], &dir.path().join("state"));
    let harness = Docker {
        executor: Arc::new(DockerExecutor::connect(config).await.unwrap()),
        dir,
    };
    executor::run_all(&harness).await;
}
