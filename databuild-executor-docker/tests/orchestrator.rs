//! The orchestrator on the Docker executor: a timeout, a build spread over
//! two engines, and a container that outlives its orchestrator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, Event, EventFilter};
use databuild_core::state::BuildState;
use databuild_core::testkit::jobs::TestJob;
use databuild_core::{BuildOptions, Executor, Graph, MemoryBel, Orchestrator, PartitionRef};
use databuild_executor_docker::DockerExecutor;

/// `<name>/<key>` made by `script` in the test image.
fn job(name: &str, script: &str) -> TestJob {
    TestJob::sh(name, script).image(common::IMAGE)
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

fn orchestrator(
    job: TestJob,
    executor: &Arc<DockerExecutor>,
    bel: &MemoryBel,
    dir: &std::path::Path,
) -> Orchestrator {
    Orchestrator::builder()
        .graph(Graph::builder().job(job).build().unwrap())
        .bel(Arc::new(bel.clone()))
        .executor(Arc::clone(executor) as Arc<dyn databuild_core::Executor>)
        .state_dir(dir)
        .parallelism(4)
        .build()
        .unwrap()
}

async fn log(bel: &MemoryBel) -> Vec<databuild_core::BuildEvent> {
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    check_log(&events).unwrap();
    BuildState::replay(&events).unwrap();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_stopped_and_fails_as_a_timeout() {
    let Some(engines) = common::engines("a_run_past_its_timeout_is_stopped", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let executor = Arc::new(
        DockerExecutor::connect(common::config(&engines[..1], dir.path()))
            .await
            .unwrap(),
    );
    let slow = job("slow", "exec sleep 300").hints(|h| h.timeout = Some(Duration::from_secs(1)));
    let bel = MemoryBel::new();
    let o = orchestrator(slow, &executor, &bel, dir.path());
    let outcome = o.build(&[r("slow/1")]).await.unwrap();
    assert!(!outcome.succeeded());
    assert!(
        outcome.not_built[0].reason.contains("timeout"),
        "{:?}",
        outcome.not_built
    );
    let events = log(&bel).await;
    let failed = events.iter().find_map(|e| match &e.event {
        Some(Event::JobRunFailed(f)) => Some(f.stage),
        _ => None,
    });
    assert_eq!(
        failed,
        Some(databuild_core::proto::FailureStage::Timeout as i32)
    );
    // Its outcome recorded, the container is gone.
    assert!(executor.list_runs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_is_spread_over_two_engines() {
    let Some(engines) = common::engines("a_build_is_spread_over_two_engines", 2).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let executor = Arc::new(
        DockerExecutor::connect(common::config(&engines[..2], dir.path()))
            .await
            .unwrap(),
    );
    let bel = MemoryBel::new();
    let o = orchestrator(
        job("spread", "sleep 1; echo \"built $DATABUILD_OUTPUTS\""),
        &executor,
        &bel,
        dir.path(),
    );
    let wanted: Vec<PartitionRef> = (0..6).map(|i| r(&format!("spread/{i}"))).collect();
    let outcome = o.build(&wanted).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.built.len(), 6);
    let events = log(&bel).await;
    let handles: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::JobRunRunning(r)) => Some(r.handle.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(handles.len(), 6);
    for engine in ["engine1/", "engine2/"] {
        assert!(
            handles.iter().any(|h| h.contains(engine)),
            "no run on {engine}: {handles:?}"
        );
    }
    assert!(executor.list_runs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_outlives_its_orchestrator_is_reattached_not_run_again() {
    let Some(engines) = common::engines("a_container_that_outlives_its_orchestrator", 1).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let config = common::config(&engines[..1], dir.path())
        .allow_mounts_under(&shared)
        .mount(&shared, "/databuild-test", true);
    let marker = shared.join("go");
    let first = Arc::new(DockerExecutor::connect(config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    // The job waits until the test lets it finish.
    let script = "while [ ! -e /databuild-test/go ]; do sleep 0.1; done; echo finished";
    let o = orchestrator(job("long", script), &first, &bel, dir.path());
    let _crashed = o.start(&[r("long/1")], BuildOptions::default());
    for _ in 0..600 {
        if bel
            .read(0, &EventFilter::all(), usize::MAX)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind() == "job_run_running")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The orchestrator stops here: a new one starts on the log as it is.
    let prefix = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    let run = prefix
        .iter()
        .find(|e| e.kind() == "job_run_running")
        .expect("the run started")
        .job_run_id
        .clone();
    let copy = MemoryBel::new();
    copy.append(prefix.clone()).await.unwrap();
    let second = Arc::new(DockerExecutor::connect(config).await.unwrap());
    let o2 = orchestrator(job("long", script), &second, &copy, dir.path());
    o2.load().await.unwrap();
    let resumed = o2.resumed();
    assert_eq!(resumed.len(), 1);
    std::fs::write(&marker, b"").unwrap();
    let outcome = resumed.into_iter().next().unwrap().outcome().await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let events = log(&copy).await;
    // The same run finished; nothing was launched again.
    let after = &events[prefix.len()..];
    assert!(
        !after.iter().any(|e| e.kind() == "job_scheduled"),
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .any(|e| e.kind() == "job_run_succeeded" && e.job_run_id == run)
    );
}

/// Engine labels: with engine1 in zone a and engine2 in zone b, a job that
/// requires zone b runs only on engine2; one that requires a label no
/// engine has is unschedulable before anything runs, naming the label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_go_only_to_engines_with_the_required_labels() {
    let Some(engines) =
        common::engines("runs_go_only_to_engines_with_the_required_labels", 2).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&engines[..2], dir.path());
    config.engines[0].labels.insert("zone".into(), "a".into());
    config.engines[1].labels.insert("zone".into(), "b".into());
    let executor = Arc::new(DockerExecutor::connect(config).await.unwrap());
    let info = executor.info();
    assert_eq!(
        info.labels.get("os").map(String::as_str),
        Some("linux"),
        "{info:?}"
    );
    assert!(
        !info.labels.contains_key("zone"),
        "zone differs per engine: {info:?}"
    );
    assert_eq!(info.placements.len(), 2);

    let bel = MemoryBel::new();
    let o = orchestrator(
        job("zoned", "echo built").hints(|h| {
            h.label_requirements.insert("zone".into(), "b".into());
        }),
        &executor,
        &bel,
        dir.path(),
    );
    let wanted: Vec<PartitionRef> = (0..4).map(|i| r(&format!("zoned/{i}"))).collect();
    let outcome = o.build(&wanted).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let handles: Vec<String> = log(&bel)
        .await
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::JobRunRunning(r)) => Some(r.handle.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(handles.len(), 4);
    assert!(
        handles.iter().all(|h| h.contains("engine2/")),
        "{handles:?}"
    );

    let bel = MemoryBel::new();
    let o = orchestrator(
        job("gpu", "echo built").hints(|h| {
            h.label_requirements.insert("gpu".into(), "true".into());
        }),
        &executor,
        &bel,
        dir.path(),
    );
    let err = o.build(&[r("gpu/0")]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no executor or engine has label gpu=true"),
        "{err}"
    );
}
