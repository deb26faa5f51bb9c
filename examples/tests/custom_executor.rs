//! The custom executor example's backend: the executor conformance suite on
//! real processes (run directly and through a wrapper), its queue and launch
//! key, and the example's graph built end to end through the orchestrator.

#[path = "../custom_executor/graph.rs"]
mod graph;
#[path = "../custom_executor/pool.rs"]
mod pool;

use std::sync::Arc;
use std::time::Duration;

use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, EventFilter};
use databuild_core::job::{JobLabel, ProcessLaunch};
use databuild_core::state::RunState;
use databuild_core::testkit::executor::{self, Behaviour, ShellHarness};
use databuild_core::{
    Executor, ExecutorError, JobConfig, JobRunSpec, Launch, MemoryBel, Orchestrator, Outcome,
    PartitionRef, RunUpdate,
};
use futures::StreamExt;
use pool::{PoolConfig, WorkerPool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_pool_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let pool = WorkerPool::new(PoolConfig::new(dir.path().join("state")));
    let harness = ShellHarness {
        name: "worker-pool",
        executor: Arc::new(pool),
        dir,
    };
    executor::run_all(&harness).await;
}

/// The same suite with every run started through `env`, the way an
/// `ssh host` prefix would go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_pool_conforms_through_a_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let pool = WorkerPool::new(PoolConfig {
        wrapper: vec!["env".into()],
        ..PoolConfig::new(dir.path().join("state"))
    });
    let harness = ShellHarness {
        name: "worker-pool (env)",
        executor: Arc::new(pool),
        dir,
    };
    executor::run_all(&harness).await;
}

fn hang_spec(dir: &std::path::Path, id: &str) -> JobRunSpec {
    let script = executor::sh_script(&Behaviour::Hang).unwrap();
    let argv = ["sh", "-c", &script, "sh"].map(String::from).to_vec();
    JobRunSpec::new(
        id,
        "request",
        JobLabel::new("//hang").unwrap(),
        JobConfig::new([PartitionRef::new("hang/1").unwrap()]),
        Launch::Process(ProcessLaunch::new(argv)),
        dir.join("logs").join(format!("{id}.jsonl")),
    )
}

/// With one worker, a second launch waits until the first run ends; a job
/// run id is launched once only; a run can be stopped at any time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_wait_for_a_free_worker_and_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(WorkerPool::new(PoolConfig {
        workers: 1,
        ..PoolConfig::new(dir.path().join("state"))
    }));
    let mut first = pool.launch(hang_spec(dir.path(), "run-1")).await.unwrap();
    assert!(matches!(
        first.next().await,
        Some(RunUpdate::Running { .. })
    ));

    let again = pool.launch(hang_spec(dir.path(), "run-1")).await;
    assert!(
        matches!(
            again,
            Err(ExecutorError::Launch {
                retryable: false,
                ..
            })
        ),
        "a second launch of one id: {:?}",
        again.err()
    );

    let second = tokio::spawn({
        let pool = Arc::clone(&pool);
        let spec = hang_spec(dir.path(), "run-2");
        async move { pool.launch(spec).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second launch waits for a worker"
    );
    // Queued, not running: nothing to stop yet.
    assert!(matches!(
        pool.cancel("run-2", "too early").await,
        Err(ExecutorError::UnknownRun { .. })
    ));

    pool.cancel("run-1", "make room").await.unwrap();
    let rest: Vec<RunUpdate> = first.collect().await;
    assert_eq!(
        rest.last(),
        Some(&RunUpdate::Exited(Outcome::Canceled {
            reason: "make room".into()
        }))
    );
    let mut second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second launch starts once the worker is free")
        .unwrap()
        .unwrap();
    assert!(matches!(
        second.next().await,
        Some(RunUpdate::Running { .. })
    ));
    pool.cancel("run-2", "done").await.unwrap();
    let rest: Vec<RunUpdate> = second.collect().await;
    assert!(matches!(
        rest.last(),
        Some(RunUpdate::Exited(Outcome::Canceled { .. }))
    ));
    // Config files go once their runs end.
    let left = std::fs::read_dir(dir.path().join("state/pool"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "config files left behind");
}

/// The example's graph, built through the orchestrator on the pool: every
/// partition built, the stopwords discovered at run time, a valid log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_the_example_graph() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bel = MemoryBel::new();
    let orchestrator = Orchestrator::builder()
        .graph(graph::graph(&data).unwrap())
        .executor(Arc::new(WorkerPool::new(PoolConfig::new(dir.path()))))
        .bel(Arc::new(bel.clone()))
        .state_dir(dir.path())
        .parallelism(4)
        .build()
        .unwrap();
    let requested = graph::requested().unwrap();
    let outcome = orchestrator.build(&requested).await.unwrap();
    assert!(outcome.succeeded(), "{:?}", outcome.not_built);

    let mut built: Vec<&str> = outcome.built.iter().map(PartitionRef::as_str).collect();
    built.sort_unstable();
    let mut expected = Vec::new();
    for name in ["counts", "report", "stopwords", "words"] {
        for day in graph::DAYS {
            expected.push(format!("{name}/{day}"));
        }
    }
    assert_eq!(built, expected);
    let reports: Vec<String> = requested
        .iter()
        .map(|r| std::fs::read_to_string(data.join(r.as_str())).unwrap())
        .collect();
    assert_eq!(
        reports,
        [
            "9 words, 6 without stopwords\n",
            "5 words, 3 without stopwords\n",
            "9 words, 4 without stopwords\n"
        ]
    );

    let state = orchestrator.state();
    let ended = |s: RunState| state.runs().filter(|r| r.state == s).count();
    assert_eq!(ended(RunState::MissingDeps), 3, "each report asked once");
    assert_eq!(ended(RunState::Succeeded), 12);
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    check_log(&events).unwrap();
    let running = events.iter().filter(|e| e.kind() == "job_run_running");
    assert_eq!(running.count(), 15, "one JobRunRunning per run");
}
