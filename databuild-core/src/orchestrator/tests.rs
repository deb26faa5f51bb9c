use std::sync::Arc;

use super::*;
use crate::bel::{EventFilter, MemoryBel};
use crate::clock::SequentialIds;
use crate::job::{FnJob, JobConfig, ProcessLaunch};
use crate::state::BuildState;
use crate::testkit::scripted::{Script, ScriptedExecutor};

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

/// A job planned in process whose runs are processes (for the scripted
/// executor): produces `<name>/...`, one config per output, no inputs.
#[derive(Debug)]
struct ScriptedJob {
    label: crate::JobLabel,
    patterns: Vec<crate::PartitionPattern>,
    argv: Vec<String>,
}

#[async_trait::async_trait]
impl crate::DataBuildJob for ScriptedJob {
    fn label(&self) -> &crate::JobLabel {
        &self.label
    }
    fn patterns(&self) -> &[crate::PartitionPattern] {
        &self.patterns
    }
    async fn config(
        &self,
        outputs: &[PartitionRef],
    ) -> Result<Vec<JobConfig>, crate::JobConfigError> {
        Ok(outputs
            .iter()
            .map(|o| JobConfig::new([o.clone()]))
            .collect())
    }
    fn launch(&self) -> crate::Launch {
        crate::Launch::Process(ProcessLaunch::new(self.argv.clone()))
    }
}

fn job(name: &str) -> ScriptedJob {
    ScriptedJob {
        label: crate::JobLabel::new(format!("//{name}")).unwrap(),
        patterns: vec![crate::PartitionPattern::new(&format!("{name}/.*")).unwrap()],
        argv: vec![format!("/bin/{name}")],
    }
}

/// An in-process graph: `c/x` needs `b/x`, which needs `a/x`.
fn fn_graph(fail: Option<&'static str>) -> Graph {
    let mut g = Graph::builder();
    for (name, input) in [("a", None), ("b", Some("a")), ("c", Some("b"))] {
        let input: Option<&'static str> = input;
        g = g.job(
            FnJob::builder(format!("//{name}"))
                .pattern(format!("{name}/.*"))
                .config(move |outs: &[PartitionRef]| {
                    outs.iter()
                        .map(|o| {
                            let mut c = JobConfig::new([o.clone()]);
                            if let Some(i) = input {
                                let suffix = &o.as_str()[2..];
                                c = c.materialize(PartitionRef::new(format!("{i}/{suffix}"))?);
                            }
                            Ok(c)
                        })
                        .collect()
                })
                .exec(move |ctx| async move {
                    if Some(ctx.config.outputs[0].as_str()) == fail {
                        Err("boom".into())
                    } else {
                        Ok(())
                    }
                })
                .build()
                .unwrap(),
        );
    }
    g.build().unwrap()
}

async fn log(bel: &MemoryBel) -> Vec<crate::BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

fn run_kinds(events: &[crate::BuildEvent], run: &str) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| e.job_run_id == run)
        .map(|e| e.kind())
        .collect()
}

fn orchestrator(graph: Graph, bel: &MemoryBel) -> Orchestrator {
    Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(bel.clone()))
        .ids(Arc::new(SequentialIds::new("id")))
        .state_dir(std::env::temp_dir().join("databuild-orchestrator-tests"))
        .parallelism(2)
        .build()
        .unwrap()
}

#[tokio::test]
async fn builds_an_in_process_chain() {
    let bel = MemoryBel::new();
    let o = orchestrator(fn_graph(None), &bel);
    let outcome = o.build(&[r("c/1"), r("c/2")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.built.len(), 6);
    let events = log(&bel).await;
    // The log obeys the diagrams, and replaying it gives the live state.
    crate::bel::check::check_log(&events).unwrap();
    assert_eq!(BuildState::replay(&events).unwrap(), o.state());
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds[..2], ["build_request_received", "build_planning"]);
    assert_eq!(*kinds.last().unwrap(), "build_succeeded");
    assert!(kinds.contains(&"build_executing"));
    // Each run follows job.exec exactly.
    let run = events
        .iter()
        .find(|e| e.kind() == "job_run_queued")
        .unwrap()
        .job_run_id
        .clone();
    assert_eq!(
        run_kinds(&events, &run),
        [
            "job_run_queued",
            "job_scheduled",
            "partition_status_changed",
            "job_run_config_validated",
            "job_run_running",
            "job_run_task_succeeded",
            "job_run_succeeded",
            "partition_status_changed",
        ]
    );
    // Everything is available now: a second build runs nothing.
    let again = o.build(&[r("c/1")]).await.unwrap();
    assert!(again.succeeded());
    assert!(again.built.is_empty());
    assert_eq!(again.skipped, [r("c/1")]);
}

#[tokio::test]
async fn a_failure_fails_fast_and_names_the_job() {
    let bel = MemoryBel::new();
    let o = orchestrator(fn_graph(Some("a/2")), &bel);
    let outcome = o.build(&[r("c/1"), r("c/2")]).await.unwrap();
    assert!(!outcome.succeeded());
    let failed: Vec<&str> = outcome
        .not_built
        .iter()
        .map(|n| n.partition.as_str())
        .collect();
    assert!(
        failed.contains(&"a/2") && failed.contains(&"c/2"),
        "{outcome:?}"
    );
    let a2 = outcome
        .not_built
        .iter()
        .find(|n| n.partition.as_str() == "a/2")
        .unwrap();
    assert_eq!(a2.reason, "boom");
    let events = log(&bel).await;
    crate::bel::check::check_log(&events).unwrap();
    BuildState::replay(&events).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert!(
        kinds.contains(&"job_failure") && kinds.contains(&"job_cancels"),
        "{kinds:?}"
    );
    let Some(Event::BuildFailed(f)) = &events.last().unwrap().event else {
        panic!("the build fails last")
    };
    assert!(f.reason.contains("job //a failed: boom"), "{}", f.reason);
}

#[tokio::test]
async fn fail_fast_cancels_running_runs_and_waits_for_confirmation() {
    let bel = MemoryBel::new();
    let executor = ScriptedExecutor::new().confirm_cancels(false);
    let graph = Graph::builder().job(job("x")).build().unwrap();
    let o = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(bel.clone()))
        .executor(Arc::new(executor.clone()))
        .parallelism(2)
        .build()
        .unwrap();
    let build = tokio::spawn({
        let o = o.clone();
        async move { o.build(&[r("x/1"), r("x/2"), r("x/3")]).await }
    });
    let first = executor.next_launch().await;
    let second = executor.next_launch().await;
    // The parallelism limit holds the third run back.
    assert_eq!(executor.launched().len(), 2);
    first.control.fail("disk full");
    // The other run is asked to stop; the build waits for the confirmation.
    while second.control.cancel_requested().is_none() {
        tokio::task::yield_now().await;
    }
    assert!(!build.is_finished());
    second.control.confirm_cancel();
    let outcome = build.await.unwrap().unwrap();
    assert!(!outcome.succeeded());
    assert_eq!(
        executor.launched().len(),
        2,
        "nothing launches after a failure"
    );
    let events = log(&bel).await;
    BuildState::replay(&events).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    let canceled = kinds.iter().position(|k| *k == "job_run_canceled").unwrap();
    let failed = kinds.iter().position(|k| *k == "build_failed").unwrap();
    assert!(
        canceled < failed,
        "the build fails after the cancel is confirmed"
    );
}

#[tokio::test]
async fn launch_failures_and_unschedulable_tasks_are_recorded() {
    let bel = MemoryBel::new();
    // No executor for process jobs: unschedulable before anything runs.
    let graph = Graph::builder().job(job("x")).build().unwrap();
    let o = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(bel.clone()))
        .build()
        .unwrap();
    let err = o.build(&[r("x/1")]).await.unwrap_err();
    assert!(matches!(err, BuildError::Unschedulable { .. }), "{err:?}");
    assert!(err.to_string().contains("//x (no executor"), "{err}");
    let kinds: Vec<&str> = log(&bel).await.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds.iter().rev().take(2).copied().collect::<Vec<_>>(),
        ["build_failed", "jobs_unschedulable"]
    );

    // A planning error fails the build with the plan error.
    let err = o.build(&[r("nope/1")]).await.unwrap_err();
    assert!(matches!(err, BuildError::Plan(_)), "{err:?}");

    // A process job whose entrypoint does not exist fails at launch.
    let bel = MemoryBel::new();
    let dir = tempfile::tempdir().unwrap();
    let executor = ScriptedExecutor::with_script(|spec| match &spec.launch {
        crate::Launch::Process(ProcessLaunch { argv, .. }) if argv[0] == "/bin/x" => {
            Script::succeed()
        }
        _ => Script::Manual,
    });
    let graph = Graph::builder().job(job("x")).build().unwrap();
    let o = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(bel.clone()))
        .executor(Arc::new(executor))
        .state_dir(dir.path())
        .build()
        .unwrap();
    assert!(o.build(&[r("x/1")]).await.unwrap().succeeded());
}

#[test]
fn builder_needs_graph_and_bel() {
    let err = Orchestrator::builder().build().unwrap_err();
    assert!(matches!(
        err,
        BuildError::MissingSetting { setting: "graph" }
    ));
    let err = Orchestrator::builder()
        .graph(fn_graph(None))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::MissingSetting { setting: "bel" }));
}

/// A job that fails its first `failures` runs, then succeeds.
fn flaky(failures: usize, max_attempts: u32) -> (Graph, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let hints = crate::SchedulingHints {
        retry: crate::job::RetryPolicy {
            max_attempts,
            initial_backoff: std::time::Duration::from_secs(10),
            max_backoff: std::time::Duration::from_secs(60),
        },
        ..Default::default()
    };
    let job = FnJob::builder("//flaky")
        .pattern("f/.*")
        .config(|outs: &[PartitionRef]| {
            Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect())
        })
        .hints(hints)
        .exec(move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < failures {
                    Err(format!("transient {n}").into())
                } else {
                    Ok(())
                }
            }
        })
        .build()
        .unwrap();
    (Graph::builder().job(job).build().unwrap(), runs)
}

#[tokio::test(start_paused = true)]
async fn failed_runs_are_retried_as_new_runs_after_a_backoff() {
    let bel = MemoryBel::new();
    let (graph, runs) = flaky(2, 3);
    let o = orchestrator(graph, &bel);
    let started = tokio::time::Instant::now();
    let outcome = o.build(&[r("f/1")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Backoffs of 10 s then 20 s, each with jitter in [0.5, 1).
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(15) && waited < std::time::Duration::from_secs(30),
        "{waited:?}"
    );
    let events = log(&bel).await;
    BuildState::replay(&events).unwrap();
    let queued: Vec<(u32, String, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::JobRunQueued(q)) => Some((
                q.attempt,
                q.previous_job_run_id.clone(),
                e.job_run_id.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(queued.len(), 3);
    assert_eq!(queued.iter().map(|q| q.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        queued[1].1, queued[0].2,
        "attempt 2 names the run it retries"
    );
    assert_eq!(queued[2].1, queued[1].2);
    let state = o.state();
    assert_eq!(
        state.run(&queued[0].2).unwrap().state,
        crate::state::RunState::Failed
    );
    assert_eq!(
        state.run(&queued[2].2).unwrap().state,
        crate::state::RunState::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_policy_limit() {
    let bel = MemoryBel::new();
    let (graph, runs) = flaky(usize::MAX, 2);
    let o = orchestrator(graph, &bel);
    let outcome = o.build(&[r("f/1")]).await.unwrap();
    assert!(!outcome.succeeded());
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(outcome.not_built[0].reason, "transient 1 (attempt 2 of 2)");
    BuildState::replay(&log(&bel).await).unwrap();
}
