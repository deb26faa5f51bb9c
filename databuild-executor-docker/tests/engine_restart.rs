//! An engine stopped and started again while a run is in it: the run is
//! held as unknown, re-attached when the engine is back, and ends as it
//! would have; the executor reports the engine down, then up. (A test
//! binary of its own: it restarts an engine other tests use.)
//!
//! Needs `DATABUILD_TEST_DOCKER_DIR`, the directory `.ci/docker-engines`
//! started the engines in (CI sets it).

mod common;

use std::time::Duration;

use databuild_core::executor::{HealthReport, JobRunSpec, Outcome, RunUpdate};
use databuild_core::job::ProcessLaunch;
use databuild_core::{Executor, JobConfig, JobLabel, Launch, PartitionRef};
use databuild_executor_docker::DockerExecutor;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_its_engine_restarting() {
    let Some(engines) = common::engines("a_run_survives_its_engine_restarting", 1).await else {
        return;
    };
    let Some(engines_dir) = std::env::var_os("DATABUILD_TEST_DOCKER_DIR") else {
        assert!(
            std::env::var("DATABUILD_TEST_DOCKER").as_deref() != Ok("1"),
            "DATABUILD_TEST_DOCKER=1 needs DATABUILD_TEST_DOCKER_DIR"
        );
        println!(
            "skipping a_run_survives_its_engine_restarting: DATABUILD_TEST_DOCKER_DIR is not set"
        );
        return;
    };
    let engine = engines[0].clone();
    let number = engine
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("engine"))
        .expect("a socket named engine<N>.sock")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&engines[..1], dir.path())
        .keepalive_interval(Duration::from_millis(200))
        .engine_down_grace(Duration::from_secs(60));
    let executor = DockerExecutor::connect(config).await.unwrap();
    let mut health = executor
        .health()
        .expect("the Docker executor reports health");
    let log = dir.path().join("run.jsonl");
    let spec = JobRunSpec::new(
        format!("restart-{}", common::uuid_like()),
        "engine-restart",
        JobLabel::new("//restart").unwrap(),
        JobConfig::new([PartitionRef::new("restart/1").unwrap()]),
        Launch::Process(ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            "echo before; sleep 4; echo after".into(),
            "sh".into(),
        ])),
        log.clone(),
    );
    let mut updates = executor.launch(spec).await.unwrap();
    assert!(matches!(
        updates.next().await,
        Some(RunUpdate::Running { .. })
    ));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/docker-engines");
    let status = std::process::Command::new("bash")
        .args([script, "restart"])
        .arg(&engines_dir)
        .arg(&number)
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<RunUpdate> = tokio::time::timeout(Duration::from_secs(120), updates.collect())
        .await
        .expect("the run ended");
    assert!(
        matches!(
            rest.last(),
            Some(RunUpdate::Exited(Outcome::Succeeded { .. }))
        ),
        "{rest:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("before") && text.contains("after"), "{text}");
    let mut seen: Vec<HealthReport> = Vec::new();
    while !seen.iter().any(|r| r.up) {
        match tokio::time::timeout(Duration::from_secs(30), health.next()).await {
            Ok(Some(report)) => seen.push(report),
            other => panic!("no health report: {other:?} after {seen:?}"),
        }
    }
    assert!(!seen[0].up, "down first: {seen:?}");
}
