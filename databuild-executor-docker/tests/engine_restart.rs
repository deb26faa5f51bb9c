//! An engine stopped and started again in the middle of a build: the run
//! in it is held as unknown, re-attached when the engine is back, and ends
//! as it would have; the orchestrator records the engine going down and
//! coming back (`executor_health`). (A test binary of its own: it restarts
//! an engine other tests use.)
//!
//! Needs `DATABUILD_TEST_DOCKER_DIR`, the directory `.ci/docker-engines`
//! started the engines in (CI sets it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, Event, EventFilter};
use databuild_core::testkit::jobs::TestJob;
use databuild_core::{BuildOptions, Graph, MemoryBel, Orchestrator, PartitionRef};
use databuild_executor_docker::DockerExecutor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_survives_its_engine_restarting() {
    let Some(engines) = common::engines("a_build_survives_its_engine_restarting", 1).await else {
        return;
    };
    let Some(engines_dir) = std::env::var_os("DATABUILD_TEST_DOCKER_DIR") else {
        assert!(
            std::env::var("DATABUILD_TEST_DOCKER").as_deref() != Ok("1"),
            "DATABUILD_TEST_DOCKER=1 needs DATABUILD_TEST_DOCKER_DIR"
        );
        println!(
            "skipping a_build_survives_its_engine_restarting: DATABUILD_TEST_DOCKER_DIR is not set"
        );
        return;
    };
    let number = engines[0]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("engine"))
        .expect("a socket named engine<N>.sock")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&engines[..1], dir.path())
        .keepalive_interval(Duration::from_millis(200))
        .engine_down_grace(Duration::from_secs(60));
    let executor = Arc::new(DockerExecutor::connect(config).await.unwrap());
    let bel = MemoryBel::new();
    let o = Orchestrator::builder()
        .graph(
            Graph::builder()
                .job(TestJob::sh("slow", "echo before; sleep 4; echo after"))
                .build()
                .unwrap(),
        )
        .bel(Arc::new(bel.clone()))
        .executor(executor)
        .state_dir(dir.path())
        .build()
        .unwrap();
    let handle = o.start(
        &[PartitionRef::new("slow/1").unwrap()],
        BuildOptions::default(),
    );
    let events = || async { bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap() };
    for _ in 0..600 {
        if events().await.iter().any(|e| e.kind() == "job_run_running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/docker-engines");
    let status = std::process::Command::new("bash")
        .args([script, "restart"])
        .arg(&engines_dir)
        .arg(&number)
        .status()
        .unwrap();
    assert!(status.success());
    let outcome = tokio::time::timeout(Duration::from_secs(120), handle.outcome())
        .await
        .expect("the build ended")
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    // The run's log has what it printed before and after the restart.
    let logs = walk(dir.path());
    assert!(
        logs.iter()
            .any(|t| t.contains("before") && t.contains("after")),
        "{logs:?}"
    );
    // The engine's health, as the orchestrator recorded it: down, then up.
    let mut health = Vec::new();
    for _ in 0..200 {
        health = events()
            .await
            .into_iter()
            .filter_map(|e| match e.event {
                Some(Event::ExecutorHealth(h)) => Some(h.up),
                _ => None,
            })
            .collect();
        if health.contains(&true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health.first(), Some(&false), "{health:?}");
    assert!(health.contains(&true), "{health:?}");
    check_log(&events().await).unwrap();
}

/// The text of every `.jsonl` file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            found.push(std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    found
}
