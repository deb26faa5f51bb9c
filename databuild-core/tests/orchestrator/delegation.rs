//! Delegation between concurrent requests on one orchestrator: a partition
//! one request is building is not built again for another, which waits for
//! it; waiters are counted, so a run is cancelled only when no live request
//! waits on it.

use databuild_core::proto::build_event::Event;
use databuild_core::testkit::scripted::ScriptedExecutor;
use databuild_core::{BuildOptions, Outcome};

use super::*;

fn delegations(events: &[BuildEvent]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::PartitionDelegated(d)) => Some((
                d.partition.as_ref().unwrap().str.clone(),
                d.to_job_run_id.clone(),
                d.historical,
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_shared_input_is_built_once_for_two_requests() {
    let rig = rig(
        vec![job("a", &[]), job("b", &["a"]), job("c", &["a"])],
        ScriptedExecutor::new(),
    );
    let first = rig.o.start(&[r("b/1")], BuildOptions::default());
    let a = rig.executor.next_launch().await;
    assert_eq!(a.spec.config.outputs, [r("a/1")]);
    // While a/1 is being built for the first request, a second one needs it.
    let second = rig.o.start(&[r("c/1")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(rig.executor.launched().len(), 1, "a/1 is not built twice");
    a.control.succeed();
    let b = rig.executor.next_launch().await;
    let c = rig.executor.next_launch().await;
    b.control.succeed();
    c.control.succeed();
    let (first, second) = (
        first.outcome().await.unwrap(),
        second.outcome().await.unwrap(),
    );
    assert!(first.succeeded() && second.succeeded());
    assert_eq!(second.built, [r("c/1")]);
    assert_eq!(rig.executor.launched().len(), 3);
    let events = rig.log().await;
    assert_eq!(
        delegations(&events),
        [("a/1".to_owned(), a.spec.job_run_id.clone(), false)]
    );
    let attached: Vec<&str> = events
        .iter()
        .filter(|e| e.kind() == "job_run_attached")
        .map(|e| e.build_request_id.as_str())
        .collect();
    assert_eq!(attached, [second.build_request_id.as_str()]);
}

#[tokio::test(start_paused = true)]
async fn a_request_for_a_partition_being_built_waits_for_it() {
    let rig = rig(vec![job("x", &[])], ScriptedExecutor::new());
    let first = rig.o.start(&[r("x/1")], BuildOptions::default());
    let x = rig.executor.next_launch().await;
    let second = rig.o.start(&[r("x/1")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    x.control.succeed();
    let second = second.outcome().await.unwrap();
    assert!(second.succeeded());
    assert!(second.built.is_empty());
    assert_eq!(second.delegated, [r("x/1")]);
    assert!(first.outcome().await.unwrap().succeeded());
    assert_eq!(rig.executor.launched().len(), 1);
    let events = rig.log().await;
    let ok = events.iter().rev().find_map(|e| match &e.event {
        Some(Event::BuildSucceeded(s)) if e.build_request_id == second.build_request_id => {
            Some(s.delegated.len())
        }
        _ => None,
    });
    assert_eq!(ok, Some(1));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_waiter_leaves_the_run_alone() {
    let rig = rig(vec![job("x", &[])], ScriptedExecutor::new());
    let first = rig.o.start(&[r("x/1")], BuildOptions::default());
    let x = rig.executor.next_launch().await;
    let second = rig.o.start(&[r("x/1")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    second.cancel("not needed any more");
    let second = second.outcome().await.unwrap();
    assert!(second.canceled);
    assert_eq!(x.control.cancel_requested(), None, "the run goes on");
    x.control.succeed();
    assert!(first.outcome().await.unwrap().succeeded());
    let events = rig.log().await;
    assert!(
        events.iter().any(
            |e| e.kind() == "job_run_detached" && e.build_request_id == second.build_request_id
        )
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_starter_keeps_a_run_someone_waits_on() {
    let rig = rig(vec![job("x", &[])], ScriptedExecutor::new());
    let first = rig.o.start(&[r("x/1")], BuildOptions::default());
    let x = rig.executor.next_launch().await;
    let second = rig.o.start(&[r("x/1")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    first.cancel("the first caller gave up");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        x.control.cancel_requested(),
        None,
        "the second request still waits on the run"
    );
    x.control.succeed();
    let (first, second) = (
        first.outcome().await.unwrap(),
        second.outcome().await.unwrap(),
    );
    assert!(first.canceled);
    assert!(second.succeeded(), "{:?}", second.not_built);
    assert_eq!(second.delegated, [r("x/1")]);
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_delegated_run_fails_the_waiter_naming_it() {
    let rig = rig(
        vec![job("a", &[]), job("c", &["a"])],
        ScriptedExecutor::new(),
    );
    let first = rig.o.start(&[r("a/1")], BuildOptions::default());
    let a = rig.executor.next_launch().await;
    let second = rig.o.start(&[r("c/1")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    a.control.exit(Outcome::task_failed("disk on fire", None));
    let second = second.outcome().await.unwrap();
    assert!(!second.succeeded());
    let reason = &second.not_built[0].reason;
    assert!(
        reason.contains("a/1") && reason.contains("disk on fire"),
        "{reason}"
    );
    assert!(!first.outcome().await.unwrap().succeeded());
    assert_eq!(rig.executor.launched().len(), 1, "c never ran");
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn a_queued_run_another_request_waits_on_is_kept_when_its_owner_is_cancelled() {
    let rig = rig_with(
        vec![job("x", &[])],
        ScriptedExecutor::new().confirm_cancels(false),
        |b| b.parallelism(1),
    );
    // The first request runs x/1 and holds x/2 queued (one slot).
    let first = rig.o.start(&[r("x/1"), r("x/2")], BuildOptions::default());
    let x1 = rig.executor.next_launch().await;
    let second = rig.o.start(&[r("x/2")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(rig.executor.launched().len(), 1, "x/2 is queued once");
    let events = rig.log().await;
    let queued_x2 = events
        .iter()
        .find(|e| e.kind() == "job_run_queued" && e.job_run_id != x1.spec.job_run_id)
        .map(|e| e.job_run_id.clone())
        .unwrap();
    // The second request's delegation names the queued run and its request.
    let delegated: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::PartitionDelegated(d))
                if e.build_request_id == second.build_request_id() =>
            {
                Some((d.to_build_request_id.clone(), d.to_job_run_id.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        delegated,
        [(first.build_request_id().to_owned(), queued_x2.clone())]
    );
    assert!(events.iter().any(|e| e.kind() == "job_run_attached"
        && e.build_request_id == second.build_request_id()
        && e.job_run_id == queued_x2));
    // The first request is cancelled: x/1 goes, but x/2, which the second
    // request waits on, is kept and run for it.
    first.cancel("changed my mind");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(x1.control.cancel_requested().is_some());
    x1.control.confirm_cancel();
    let x2 = rig.executor.next_launch().await;
    assert_eq!(x2.spec.config.outputs, [r("x/2")]);
    assert_eq!(x2.spec.job_run_id, queued_x2, "the same run, not a new one");
    x2.control.succeed();
    let second = second.outcome().await.unwrap();
    assert!(second.succeeded(), "{:?}", second.not_built);
    assert_eq!(second.delegated, [r("x/2")]);
    assert!(second.built.is_empty());
    assert!(first.outcome().await.unwrap().canceled);
    assert_eq!(rig.executor.launched().len(), 2);
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn a_queued_run_nobody_waits_on_any_more_is_cancelled_with_its_owner() {
    let rig = rig_with(
        vec![job("x", &[])],
        ScriptedExecutor::new().confirm_cancels(false),
        |b| b.parallelism(1),
    );
    let first = rig.o.start(&[r("x/1"), r("x/2")], BuildOptions::default());
    let x1 = rig.executor.next_launch().await;
    let second = rig.o.start(&[r("x/2")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    // The owner ends early while the second waits: x/2 is kept for it ...
    first.cancel("changed my mind");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    // ... until the second stops waiting too: then it is cancelled unrun.
    second.cancel("not needed");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    x1.control.confirm_cancel();
    let (first, second) = (
        first.outcome().await.unwrap(),
        second.outcome().await.unwrap(),
    );
    assert!(first.canceled && second.canceled);
    assert_eq!(rig.executor.launched().len(), 1, "x/2 never ran");
    let events = rig.log().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "job_run_canceled")
            .count(),
        2
    );
}
