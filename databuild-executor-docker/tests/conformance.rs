//! The executor conformance suite against a real Docker engine.

mod common;

use std::sync::Arc;

use databuild_core::testkit::executor;
use databuild_executor_docker::DockerExecutor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_executor_conforms() {
    let Some(engines) = common::engines("docker_executor_conforms", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&engines[..1], &dir.path().join("state"));
    let harness = executor::ShellHarness {
        name: "docker",
        executor: Arc::new(DockerExecutor::connect(config).await.unwrap()),
        dir,
    };
    executor::run_all(&harness).await;
}
