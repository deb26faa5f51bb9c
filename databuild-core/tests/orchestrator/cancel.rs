//! Cancelling a build request or one job run: runs are asked to stop, and
//! `JobRunCanceled` is written only once each is confirmed gone.

use std::time::Duration;

use databuild_core::proto::{CancelSource, build_event::Event};
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{BuildError, BuildOptions};

use super::*;

const CANCELED_RUNNING: &[&str] = &[
    "job_run_queued",
    "job_scheduled",
    "partition_status_changed",
    "job_run_config_validated",
    "job_run_running",
    "job_run_kill_requested",
    "job_run_canceled",
    "partition_status_changed",
];

#[tokio::test(start_paused = true)]
async fn cancelling_a_request_waits_for_every_run_to_be_gone() {
    let rig = rig_with(
        vec![job("a", &[])],
        ScriptedExecutor::with_script(|_| Script::Hang).confirm_cancels(false),
        |b| b.parallelism(2),
    );
    let build = rig
        .o
        .start(&[r("a/1"), r("a/2"), r("a/3")], BuildOptions::default());
    let id = build.build_request_id().to_owned();
    until(|| rig.executor.running().len() == 2).await;
    assert_eq!(rig.o.live_requests(), std::slice::from_ref(&id));
    build.cancel("user pressed stop");
    let running = rig.executor.running();
    until(|| {
        running
            .iter()
            .all(|r| rig.executor.control(r).cancel_requested().is_some())
    })
    .await;
    // Nothing is written as canceled before the executor confirms.
    let events = rig
        .bel
        .read(0, &EventFilter::all(), usize::MAX)
        .await
        .unwrap();
    let canceled_runs = events
        .iter()
        .filter(|e| e.kind() == "job_run_canceled")
        .count();
    assert_eq!(canceled_runs, 1, "only the queued run, which never started");
    for r in &running {
        rig.executor.control(r).confirm_cancel();
    }
    let outcome = build.outcome().await.unwrap();
    assert!(outcome.canceled && !outcome.succeeded());
    assert!(rig.o.live_requests().is_empty());
    let events = rig.log().await;
    let runs = queued(&events);
    for r in &running {
        assert_eq!(run_kinds(&events, r), CANCELED_RUNNING, "run {r}");
    }
    let never_started = runs.iter().find(|r| !running.contains(r)).unwrap();
    assert_eq!(
        run_kinds(&events, never_started),
        ["job_run_queued", "job_run_canceled"]
    );
    let source = events.iter().find_map(|e| match &e.event {
        Some(Event::JobRunKillRequested(k)) => Some(k.source),
        _ => None,
    });
    assert_eq!(source, Some(CancelSource::User as i32));
    assert_eq!(request_kinds(&events).last(), Some(&"build_canceled"));
    assert_eq!(rig.o.slots_in_use().0, 0, "every slot is back");
    // A request that ended cannot be cancelled.
    assert!(matches!(
        rig.o.cancel(&id, "again"),
        Err(BuildError::NotLive { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn cancelling_one_run_fails_its_task_and_is_not_retried() {
    let rig = rig(
        vec![job("a", &[]).hints(|h| h.retry.max_attempts = 3)],
        ScriptedExecutor::with_script(|_| Script::Hang),
    );
    let build = rig.o.start(&[r("a/1"), r("a/2")], BuildOptions::default());
    until(|| rig.executor.running().len() == 2).await;
    let victim = rig.executor.running()[0].clone();
    rig.o.cancel_run(&victim, "not needed").unwrap();
    let outcome = build.outcome().await.unwrap();
    assert!(!outcome.canceled && !outcome.succeeded());
    let events = rig.log().await;
    assert_eq!(queued(&events).len(), 2, "no retry of a cancellation");
    let mut victim_kinds = CANCELED_RUNNING.to_vec();
    victim_kinds.push("job_failure");
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| {
            e.job_run_id == victim
                || matches!(&e.event, Some(Event::JobFailure(f)) if f.job_run_id == victim)
        })
        .map(|e| e.kind())
        .collect();
    assert_eq!(kinds, victim_kinds);
    let reason = outcome
        .not_built
        .iter()
        .find(|n| n.reason.starts_with("canceled: not needed"))
        .map(|n| n.partition.clone());
    assert!(reason.is_some(), "{:?}", outcome.not_built);
    // The other run was cancelled by fail-fast.
    assert_eq!(request_kinds(&events).last(), Some(&"build_failed"));
    assert!(matches!(
        rig.o.cancel_run("nope", "x"),
        Err(BuildError::NotLive { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_that_is_never_confirmed_ends_the_request_after_kill_grace() {
    let rig = rig(
        vec![job("a", &[])],
        ScriptedExecutor::with_script(|_| Script::Hang).confirm_cancels(false),
    );
    let build = rig.o.start(&[r("a/1")], BuildOptions::default());
    until(|| rig.executor.running().len() == 1).await;
    let started = tokio::time::Instant::now();
    build.cancel("stop");
    let outcome = build.outcome().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5), "kill_grace");
    assert!(outcome.canceled);
    assert!(
        outcome.not_built[0]
            .reason
            .contains("not confirmed within kill_grace"),
        "{:?}",
        outcome.not_built
    );
    let events = rig.log().await;
    let run = &queued(&events)[0];
    // The run stays unconfirmed in the log (kill requested, not canceled).
    assert_eq!(
        run_kinds(&events, run).last(),
        Some(&"job_run_kill_requested")
    );
    assert!(rig.o.state().run(run).unwrap().kill_requested);
    assert_eq!(rig.o.slots_in_use().0, 0);
}
