//! An engine reached over TCP with TLS (client certificates): it shares no
//! file system with the orchestrator, so the config file goes in by upload.
//! The conformance suite runs against it, and a job reads its config file.
//!
//! Needs `DATABUILD_TEST_DOCKER_TLS` (`host:port`) and
//! `DATABUILD_TEST_DOCKER_TLS_DIR` (holding `ca.pem`, `cert.pem`,
//! `key.pem`); `.ci/docker-engines up-tls DIR PORT` starts such an engine
//! and CI sets both.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use databuild_core::executor::{JobRunSpec, Outcome, RunUpdate};
use databuild_core::job::ProcessLaunch;
use databuild_core::testkit::executor;
use databuild_core::{Executor, JobConfig, JobLabel, Launch, PartitionRef};
use databuild_executor_docker::{DockerConfig, DockerExecutor, Endpoint, EngineConfig};
use futures::StreamExt;

async fn tls_executor(test: &str, state: &std::path::Path) -> Option<DockerExecutor> {
    let (Ok(addr), Some(dir)) = (
        std::env::var("DATABUILD_TEST_DOCKER_TLS"),
        std::env::var_os("DATABUILD_TEST_DOCKER_TLS_DIR").map(PathBuf::from),
    ) else {
        assert!(
            std::env::var("DATABUILD_TEST_DOCKER").as_deref() != Ok("1"),
            "{test}: DATABUILD_TEST_DOCKER=1 needs DATABUILD_TEST_DOCKER_TLS and DATABUILD_TEST_DOCKER_TLS_DIR"
        );
        println!("skipping {test}: no TLS engine (DATABUILD_TEST_DOCKER_TLS is not set)");
        return None;
    };
    let engine = EngineConfig {
        name: "tls".into(),
        endpoint: Endpoint::Tls {
            addr,
            key: dir.join("key.pem"),
            cert: dir.join("cert.pem"),
            ca: dir.join("ca.pem"),
        },
        slots: 2,
        labels: Default::default(),
    };
    let config = DockerConfig::new(engine, state)
        .default_image(common::IMAGE)
        .store(format!("tls-{}", common::uuid_like()))
        .kill_grace(Duration::from_secs(2));
    Some(DockerExecutor::connect(config).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_executor_over_tls_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let Some(executor) = tls_executor("docker_executor_over_tls_conforms", dir.path()).await else {
        return;
    };
    let harness = executor::ShellHarness {
        name: "docker over TLS",
        executor: Arc::new(executor),
        dir,
    };
    executor::run_all(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_is_uploaded_to_a_remote_engine() {
    let dir = tempfile::tempdir().unwrap();
    let Some(executor) =
        tls_executor("the_config_file_is_uploaded_to_a_remote_engine", dir.path()).await
    else {
        return;
    };
    let log = dir.path().join("run.jsonl");
    let spec = JobRunSpec::new(
        format!("tls-{}", common::uuid_like()),
        "tls",
        JobLabel::new("//tls").unwrap(),
        JobConfig::new([PartitionRef::new("tls/uploaded").unwrap()]),
        Launch::Process(ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            "cat \"$DATABUILD_CONFIG_FILE\"; echo".into(),
            "sh".into(),
        ])),
        log.clone(),
    );
    let updates: Vec<RunUpdate> = executor.launch(spec).await.unwrap().collect().await;
    assert!(
        matches!(
            updates.last(),
            Some(RunUpdate::Exited(Outcome::Succeeded { .. }))
        ),
        "{updates:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("tls/uploaded"), "{text}");
}
