//! Requests that overlap in time on one orchestrator build each partition
//! once: started in the same instant (their `config` calls take time, so
//! they all plan before any queues), resumed together after a stop, or
//! ended early while another waits. The wait-or-build decision is taken
//! when a task would be queued, not from planning's view.

use std::collections::BTreeMap;

use databuild_core::executor::{JobRunSpec, Outcome};
use databuild_core::proto::build_event::Event;
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{BuildOptions, proto};

use super::*;

/// A job whose `config` takes 100 ms (virtual time), as a process job's
/// config call does.
fn slow(job: TestJob) -> TestJob {
    job.config_latency(Duration::from_millis(100))
}

fn orchestrator_of(
    jobs: Vec<TestJob>,
    bel: Arc<dyn BelSink>,
    executor: &ScriptedExecutor,
    dir: &std::path::Path,
) -> Orchestrator {
    let mut g = Graph::builder();
    for j in jobs {
        g = g.job(j);
    }
    Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(bel)
        .executor(Arc::new(executor.clone()))
        .ids(Arc::new(SequentialIds::new("id")))
        .state_dir(dir)
        .parallelism(4)
        .build()
        .unwrap()
}

/// Every launch, recorded.
type Specs = Arc<std::sync::Mutex<Vec<JobRunSpec>>>;

/// An executor whose runs all succeed at once, recording each launch.
fn succeeding() -> (ScriptedExecutor, Specs) {
    holding(|_| false)
}

/// An executor recording each launch whose runs succeed at once, but for
/// those `hold` picks, which go to the test.
fn holding(
    hold: impl Fn(&JobRunSpec) -> bool + Send + Sync + 'static,
) -> (ScriptedExecutor, Specs) {
    let specs = Specs::default();
    let seen = Arc::clone(&specs);
    let executor = ScriptedExecutor::with_script(move |spec| {
        seen.lock().unwrap().push(spec.clone());
        if hold(spec) {
            Script::Manual
        } else {
            Script::succeed()
        }
    });
    (executor, specs)
}

/// Launches per partition.
fn launches(specs: &Specs) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for l in specs.lock().unwrap().iter() {
        for o in &l.config.outputs {
            *n.entry(o.to_string()).or_default() += 1;
        }
    }
    n
}

async fn checked_log(bel: &MemoryBel) -> Vec<BuildEvent> {
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    BuildState::replay(&events).unwrap();
    check_log(&events).unwrap();
    events
}

/// `n` requests, each for its own partition over one shared upstream `a/1`,
/// started back to back: `a/1` is built once, by one of them; every other
/// one waits for that run, and its log says so (the owner's request and
/// run in `PartitionDelegated`, and a `JobRunAttached`).
async fn same_instant(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (executor, specs) = holding(|spec| spec.config.outputs == [r("a/1")]);
    let mut jobs = vec![slow(job("a", &[]))];
    for i in 0..n {
        jobs.push(slow(job(&format!("d{i}"), &["a"])));
    }
    let bel = MemoryBel::new();
    let o = orchestrator_of(jobs, Arc::new(bel.clone()), &executor, dir.path());
    let handles: Vec<_> = (0..n)
        .map(|i| o.start(&[r(&format!("d{i}/1"))], BuildOptions::default()))
        .collect();
    let ids: Vec<String> = handles
        .iter()
        .map(|h| h.build_request_id().to_owned())
        .collect();
    // a/1 runs until every request planned (their configs take 200 ms).
    let a = executor.next_launch().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.control.succeed();
    for h in handles {
        let outcome = h.outcome().await.unwrap();
        assert!(outcome.succeeded(), "{:?}", outcome.not_built);
    }
    let launched = launches(&specs);
    assert_eq!(launched["a/1"], 1, "a/1 is built once: {launched:?}");
    assert!(launched.values().all(|&k| k == 1), "{launched:?}");
    assert_eq!(launched.len(), n + 1);
    let events = checked_log(&bel).await;
    let a_run = specs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.config.outputs == [r("a/1")])
        .cloned()
        .unwrap();
    let owner = a_run.build_request_id.clone();
    let delegated: Vec<&BuildEvent> = events
        .iter()
        .filter(|e| matches!(&e.event, Some(Event::PartitionDelegated(d)) if !d.historical))
        .collect();
    assert_eq!(delegated.len(), n - 1, "every other request waits for a/1");
    for e in delegated {
        let Some(Event::PartitionDelegated(d)) = &e.event else {
            unreachable!()
        };
        assert_eq!(d.partition.as_ref().unwrap().str, "a/1");
        assert_eq!(d.to_build_request_id, owner);
        assert_eq!(d.to_job_run_id, a_run.job_run_id);
        assert_ne!(e.build_request_id, owner);
        assert!(events.iter().any(|x| x.kind() == "job_run_attached"
            && x.build_request_id == e.build_request_id
            && x.job_run_id == a_run.job_run_id));
    }
    assert!(ids.contains(&owner));
}

#[tokio::test(start_paused = true)]
async fn two_requests_started_together_build_a_shared_upstream_once() {
    same_instant(2).await;
}

#[tokio::test(start_paused = true)]
async fn three_requests_started_together_build_a_shared_upstream_once() {
    same_instant(3).await;
}

#[tokio::test(start_paused = true)]
async fn ten_requests_started_together_build_a_shared_upstream_once() {
    same_instant(10).await;
}

#[tokio::test(start_paused = true)]
async fn requests_for_the_same_partition_started_together_build_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (executor, specs) = succeeding();
    let bel = MemoryBel::new();
    let o = orchestrator_of(
        vec![slow(job("a", &[])), slow(job("b", &["a"]))],
        Arc::new(bel.clone()),
        &executor,
        dir.path(),
    );
    let handles: Vec<_> = (0..5)
        .map(|_| o.start(&[r("b/1")], BuildOptions::default()))
        .collect();
    let mut built = 0;
    let mut delegated = 0;
    for h in handles {
        let outcome = h.outcome().await.unwrap();
        assert!(outcome.succeeded(), "{:?}", outcome.not_built);
        built += outcome.built.iter().filter(|p| **p == r("b/1")).count();
        delegated += outcome.delegated.iter().filter(|p| **p == r("b/1")).count();
    }
    assert_eq!((built, delegated), (1, 4));
    assert_eq!(
        launches(&specs),
        BTreeMap::from([("a/1".to_owned(), 1), ("b/1".to_owned(), 1)])
    );
    checked_log(&bel).await;
}

/// The owner of a shared upstream fails fast (another of its jobs fails)
/// while its run of the upstream is queued: it keeps the run for the
/// request waiting on it, which succeeds.
#[tokio::test(start_paused = true)]
async fn an_owner_failing_fast_keeps_the_run_another_waits_on() {
    let dir = tempfile::tempdir().unwrap();
    let executor = ScriptedExecutor::new().confirm_cancels(false);
    let bel = MemoryBel::new();
    let mut g = Graph::builder();
    for j in [job("u", &[]), job("f", &[]), job("c", &["u"])] {
        g = g.job(j);
    }
    let o = Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(Arc::new(bel.clone()))
        .executor(Arc::new(executor.clone()))
        .ids(Arc::new(SequentialIds::new("id")))
        .state_dir(dir.path())
        .parallelism(1)
        .build()
        .unwrap();
    // One slot: f/1 runs, u/1 waits queued.
    let first = o.start(&[r("f/1"), r("u/1")], BuildOptions::default());
    let f = executor.next_launch().await;
    let second = o.start(&[r("c/1")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(f.spec.config.outputs, [r("f/1")]);
    f.control.exit(Outcome::task_failed("broken", None));
    let u = executor.next_launch().await;
    assert_eq!(u.spec.config.outputs, [r("u/1")]);
    assert_eq!(u.spec.build_request_id, first.build_request_id());
    u.control.succeed();
    let c = executor.next_launch().await;
    assert_eq!(c.spec.build_request_id, second.build_request_id());
    c.control.succeed();
    let (first, second) = (
        first.outcome().await.unwrap(),
        second.outcome().await.unwrap(),
    );
    assert!(!first.succeeded());
    assert!(second.succeeded(), "{:?}", second.not_built);
    assert_eq!(executor.launched().len(), 3, "f/1, u/1 and c/1, once each");
    checked_log(&bel).await;
}

/// The owner of a partition still in its job's buffer (no run yet) is
/// cancelled: the request waiting on it builds it, once.
#[tokio::test(start_paused = true)]
async fn an_owner_cancelled_while_buffering_leaves_the_partition_to_its_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let (executor, specs) = succeeding();
    let bel = MemoryBel::new();
    let buffered = job("x", &[]).hints(|h| {
        h.buffering = Some(databuild_core::job::BufferingWindow {
            window: Duration::from_secs(10),
            max_batch: None,
        });
    });
    let o = orchestrator_of(
        vec![slow(buffered)],
        Arc::new(bel.clone()),
        &executor,
        dir.path(),
    );
    let first = o.start(&[r("x/1")], BuildOptions::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = o.start(&[r("x/1")], BuildOptions::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(specs.lock().unwrap().is_empty(), "the window is still open");
    first.cancel("not needed");
    let (first, second) = (
        first.outcome().await.unwrap(),
        second.outcome().await.unwrap(),
    );
    assert!(first.canceled);
    assert!(second.succeeded(), "{:?}", second.not_built);
    let launched = specs.lock().unwrap().clone();
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].build_request_id, second.build_request_id);
    checked_log(&bel).await;
}

/// Three requests a stopped orchestrator left open while they planned, and
/// a new one over the same partitions: resumed together, they build each
/// partition once between them.
#[tokio::test(start_paused = true)]
async fn resumed_requests_and_a_new_one_build_each_partition_once() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = || {
        vec![
            slow(job("a", &[])),
            slow(job("b", &["a"])),
            slow(job("c", &["a"])),
        ]
    };
    let bel = MemoryBel::new();
    let mut open = Vec::new();
    for (i, want) in ["b/1", "b/1", "c/1"].iter().enumerate() {
        let id = format!("stopped-{i}");
        open.push(
            BuildEvent::at(
                1,
                Event::BuildRequestReceived(proto::BuildRequestReceived {
                    requested: vec![r(want).to_proto()],
                    options: Some(proto::BuildOptions::default()),
                }),
            )
            .for_request(&id),
        );
        open.push(
            BuildEvent::at(2, Event::BuildPlanning(proto::BuildPlanning {})).for_request(&id),
        );
    }
    bel.append(open).await.unwrap();
    let (executor, specs) = succeeding();
    let o = orchestrator_of(jobs(), Arc::new(bel.clone()), &executor, dir.path());
    o.load().await.unwrap();
    let resumed = o.resumed();
    assert_eq!(resumed.len(), 3);
    let new = o.start(&[r("b/1"), r("c/1")], BuildOptions::default());
    for h in resumed {
        let outcome = h.outcome().await.unwrap();
        assert!(outcome.succeeded(), "{:?}", outcome.not_built);
    }
    assert!(new.outcome().await.unwrap().succeeded());
    assert_eq!(
        launches(&specs),
        BTreeMap::from([
            ("a/1".to_owned(), 1),
            ("b/1".to_owned(), 1),
            ("c/1".to_owned(), 1)
        ])
    );
    let state = BuildState::replay(&checked_log(&bel).await).unwrap();
    assert!(
        state.requests().all(|r| r.is_terminal()),
        "no request stays open"
    );
}
