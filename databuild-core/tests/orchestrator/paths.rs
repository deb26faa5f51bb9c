//! Every path of a job run (seed 000, job.exec of seed 001) and graph.build's
//! success and failure, as exact event sequences.

use std::time::Duration;

use databuild_core::executor::ExitStatus;
use databuild_core::job::RetryPolicy;
use databuild_core::proto::{FailureStage, build_event::Event};
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{BuildError, BuildOptions, DataBuildGraph, Outcome, Planner};

use super::*;

fn retry(max_attempts: u32) -> impl FnOnce(&mut databuild_core::SchedulingHints) {
    move |h| {
        h.retry = RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn success_chain_events() {
    let rig = rig(
        vec![job("a", &[]), job("b", &["a"])],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let outcome = rig.o.build(&[r("b/1")]).await.unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.built, [r("a/1"), r("b/1")]);
    let events = rig.log().await;
    let runs = queued(&events);
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run_kinds(&events, run), SUCCESS, "run {run}");
    }
    assert_eq!(
        request_kinds(&events),
        [
            "build_request_received",
            "build_planning",
            "analyze_started",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "job_graph_emitted",
            "build_executing",
            "build_succeeded",
        ]
    );
    // b's run is queued in the batch that records a's success.
    let a_done = events
        .iter()
        .position(|e| e.kind() == "job_run_succeeded")
        .unwrap();
    let b_queued = events
        .iter()
        .position(|e| e.kind() == "job_run_queued" && e.job_run_id == runs[1])
        .unwrap();
    assert_eq!(b_queued, a_done + 2, "after a's available status");
    // Through the seeds' graph interface too.
    let graph: &dyn DataBuildGraph = &rig.o;
    assert!(graph.build(&[r("b/2")]).await.unwrap().succeeded());
    let planner = Planner::new(Graph::builder().job(job("a", &[])).build().unwrap());
    let err = DataBuildGraph::build(&planner, &[r("a/1")])
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::Unsupported { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn task_failure_is_retried_then_fails_fast() {
    let rig = rig(
        vec![job("a", &[]).hints(retry(2)), job("b", &["a"])],
        ScriptedExecutor::with_script(|_| Script::fail("exit 1")),
    );
    let outcome = rig.o.build(&[r("b/1")]).await.unwrap();
    assert!(!outcome.succeeded());
    let events = rig.log().await;
    let runs = queued(&events);
    assert_eq!(runs.len(), 2, "two attempts of a, b never queued");
    let failed = [
        "job_run_queued",
        "job_scheduled",
        "partition_status_changed",
        "job_run_config_validated",
        "job_run_running",
        "job_run_task_failed",
        "job_run_failed",
    ];
    assert_eq!(run_kinds(&events, &runs[0]), failed);
    let mut last = failed.to_vec();
    last.push("partition_status_changed");
    assert_eq!(run_kinds(&events, &runs[1]), last);
    let Some(Event::JobRunQueued(q)) = &events
        .iter()
        .find(|e| e.kind() == "job_run_queued" && e.job_run_id == runs[1])
        .unwrap()
        .event
    else {
        unreachable!()
    };
    assert_eq!(
        (q.attempt, q.previous_job_run_id.as_str()),
        (2, runs[0].as_str())
    );
    let tail: Vec<&str> = request_kinds(&events).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["build_failed", "job_cancels", "job_failure"]);
    let b = outcome
        .not_built
        .iter()
        .find(|n| n.partition == r("b/1"))
        .unwrap();
    assert!(b.reason.contains("not run: job //a failed"), "{}", b.reason);
    let a = outcome
        .not_built
        .iter()
        .find(|n| n.partition == r("a/1"))
        .unwrap();
    assert_eq!(a.reason, "exit 1 (attempt 2 of 2)");
}

#[tokio::test(start_paused = true)]
async fn metadata_failure_is_not_retried() {
    let rig = rig(
        vec![job("a", &[]).hints(retry(3))],
        ScriptedExecutor::with_script(|_| {
            Script::Exit(Outcome::Failed {
                stage: FailureStage::Metadata,
                reason: "bad manifest line".into(),
                exit: Some(ExitStatus::Code(0)),
                retryable: false,
            })
        }),
    );
    let outcome = rig.o.build(&[r("a/1")]).await.unwrap();
    assert_eq!(outcome.not_built[0].reason, "bad manifest line");
    let events = rig.log().await;
    let runs = queued(&events);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        run_kinds(&events, &runs[0]),
        [
            "job_run_queued",
            "job_scheduled",
            "partition_status_changed",
            "job_run_config_validated",
            "job_run_running",
            "job_run_task_succeeded",
            "job_run_metadata_failed",
            "job_run_failed",
            "partition_status_changed",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn launch_failures_retry_when_transient() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let rig = rig(
        vec![job("a", &[]).hints(retry(3))],
        ScriptedExecutor::with_script(move |_| {
            match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Script::Refuse {
                    reason: "engine busy".into(),
                    retryable: true,
                },
                1 => Script::succeed(),
                _ => unreachable!(),
            }
        }),
    );
    assert!(rig.o.build(&[r("a/1")]).await.unwrap().succeeded());
    let events = rig.log().await;
    let runs = queued(&events);
    assert_eq!(
        run_kinds(&events, &runs[0]),
        [
            "job_run_queued",
            "job_scheduled",
            "partition_status_changed",
            "job_run_config_validated",
            "job_run_launch_failed",
            "job_run_failed",
        ]
    );
    assert_eq!(run_kinds(&events, &runs[1]), SUCCESS);

    // A permanent launch failure is not retried.
    let rig = super::rig(
        vec![job("a", &[]).hints(retry(3))],
        ScriptedExecutor::with_script(|_| Script::Refuse {
            reason: "exec not found".into(),
            retryable: false,
        }),
    );
    let outcome = rig.o.build(&[r("a/1")]).await.unwrap();
    assert_eq!(outcome.not_built[0].reason, "launch failed: exec not found");
    assert_eq!(queued(&rig.log().await).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_is_killed_and_retried() {
    let rig = rig(
        vec![job("a", &[]).hints(|h| {
            h.timeout = Some(Duration::from_secs(5));
            retry(2)(h);
        })],
        ScriptedExecutor::with_script(|_| Script::Hang),
    );
    let started = tokio::time::Instant::now();
    let outcome = rig.o.build(&[r("a/1")]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(10), "two 5 s runs");
    assert!(
        outcome.not_built[0]
            .reason
            .starts_with("timeout: the run passed its limit of 5s"),
        "{}",
        outcome.not_built[0].reason
    );
    let events = rig.log().await;
    let runs = queued(&events);
    assert_eq!(runs.len(), 2, "a timeout is retried per policy");
    assert_eq!(
        run_kinds(&events, &runs[0]),
        [
            "job_run_queued",
            "job_scheduled",
            "partition_status_changed",
            "job_run_config_validated",
            "job_run_running",
            "job_run_kill_requested",
            "job_run_failed",
        ]
    );
    let stage = events.iter().find_map(|e| match &e.event {
        Some(Event::JobRunFailed(f)) => Some(f.stage),
        _ => None,
    });
    assert_eq!(stage, Some(FailureStage::Timeout as i32));
    assert!(rig.executor.running().is_empty(), "every run is gone");
}

#[tokio::test(start_paused = true)]
async fn a_silent_run_is_lost_fenced_and_retried() {
    let rig = rig(
        vec![job("a", &[]).hints(retry(2))],
        ScriptedExecutor::new().reports_heartbeats(true),
    );
    let build = rig.o.start(&[r("a/1")], BuildOptions::default());
    let first = rig.executor.next_launch().await;
    // Beats for a while: alive.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(first.control.heartbeat(Some(10), Some(1 << 20)));
    }
    // Then silence: lost after the 10 s liveness timeout, slots freed, and
    // a second attempt launched.
    let second = rig.executor.next_launch().await;
    assert_eq!(second.spec.attempt, 2);
    assert_eq!(
        second.spec.previous_job_run_id.as_deref(),
        Some(first.spec.job_run_id.as_str())
    );
    assert_eq!(rig.o.slots_in_use().0, 1, "only the new run holds a slot");
    assert!(
        first.control.cancel_requested().is_some(),
        "the lost run is asked to stop"
    );
    // The lost run's late exit is refused.
    first.control.succeed();
    second.control.succeed();
    let outcome = build.outcome().await.unwrap();
    assert!(outcome.succeeded());
    let events = rig.log().await;
    let first_kinds = run_kinds(&events, &first.spec.job_run_id);
    assert_eq!(
        first_kinds,
        [
            "job_run_queued",
            "job_scheduled",
            "partition_status_changed",
            "job_run_config_validated",
            "job_run_running",
            "job_run_kill_requested",
            "job_run_lost",
        ],
        "no BEL heartbeat within 25 s (30 s interval), nothing after lost"
    );
    assert_eq!(run_kinds(&events, &second.spec.job_run_id), SUCCESS);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_reach_the_bel_at_most_once_per_interval() {
    let rig = rig_with(
        vec![job("a", &[])],
        ScriptedExecutor::new().reports_heartbeats(true),
        |b| {
            b.settings(
                OrchestratorSettings::default()
                    .liveness_timeout(Duration::from_secs(10))
                    .bel_heartbeat_interval(Duration::from_secs(30))
                    .build_heartbeat_interval(Duration::from_secs(20)),
            )
        },
    );
    let build = rig.o.start(&[r("a/1")], BuildOptions::default());
    let run = rig.executor.next_launch().await;
    for _ in 0..95 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        run.control.heartbeat(Some(1), Some(2));
    }
    run.control.succeed();
    assert!(build.outcome().await.unwrap().succeeded());
    let events = rig.log().await;
    let beats = run_kinds(&events, &run.spec.job_run_id)
        .iter()
        .filter(|k| **k == "job_run_heartbeat")
        .count();
    assert_eq!(beats, 3, "at 30, 60 and 90 s of 95 heartbeats");
    let build_beats = events
        .iter()
        .filter(|e| e.kind() == "build_heartbeat")
        .count();
    assert_eq!(build_beats, 4, "at 20, 40, 60 and 80 s");
    let counts = events.iter().rev().find_map(|e| match &e.event {
        Some(Event::BuildHeartbeat(h)) => h.counts,
        _ => None,
    });
    assert_eq!(counts.unwrap().running, 1);
}

#[tokio::test(start_paused = true)]
async fn keep_going_builds_what_does_not_depend_on_a_failure() {
    let rig = rig(
        vec![job("a", &[]), job("b", &["a"]), job("c", &["b"])],
        ScriptedExecutor::with_script(|spec| {
            if spec.config.outputs[0].as_str() == "a/bad" {
                Script::fail("broken input")
            } else {
                Script::succeed()
            }
        }),
    );
    let outcome = rig
        .o
        .build_with(
            &[r("c/bad"), r("c/good")],
            BuildOptions::default().keep_going(true),
        )
        .await
        .unwrap();
    let mut built = outcome.built.clone();
    built.sort();
    assert_eq!(built, [r("a/good"), r("b/good"), r("c/good")]);
    let mut not_built: Vec<(String, String)> = outcome
        .not_built
        .iter()
        .map(|n| (n.partition.to_string(), n.reason.clone()))
        .collect();
    not_built.sort();
    assert_eq!(
        not_built,
        [
            ("a/bad".into(), "broken input".into()),
            ("b/bad".into(), "upstream job //a did not build".into()),
            ("c/bad".into(), "upstream job //a did not build".into()),
        ]
    );
    let events = rig.log().await;
    let kinds = request_kinds(&events);
    assert!(!kinds.contains(&"job_cancels"), "nothing is cancelled");
    assert_eq!(kinds.last(), Some(&"build_failed"));
}
