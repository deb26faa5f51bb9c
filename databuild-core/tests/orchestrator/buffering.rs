//! Buffering (seed 000, "collecting other wants"): the ready partitions of
//! a job with a buffering window wait, across concurrent requests, until
//! the window closes or the batch is full, then go out as one `config`
//! call and one job run that every waiting request attaches to.

use std::time::Duration;

use databuild_core::BuildOptions;
use databuild_core::job::BufferingWindow;
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};

use super::*;

fn windowed(window: Duration, max_batch: Option<u32>) -> TestJob {
    job("daily", &[]).batching().hints(|h| {
        h.buffering = Some(BufferingWindow { window, max_batch });
    })
}

fn kinds_count(events: &[BuildEvent], kind: &str) -> usize {
    events.iter().filter(|e| e.kind() == kind).count()
}

#[tokio::test(start_paused = true)]
async fn three_requests_inside_one_window_share_one_run() {
    let daily = windowed(Duration::from_secs(5), None);
    let rig = rig(
        vec![daily.clone()],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let started = tokio::time::Instant::now();
    let builds: Vec<_> = (1..=3)
        .map(|d| {
            rig.o
                .start(&[r(&format!("daily/{d}"))], BuildOptions::default())
        })
        .collect();
    let mut outcomes = Vec::new();
    for b in builds {
        outcomes.push(b.outcome().await.unwrap());
    }
    assert!(outcomes.iter().all(|o| o.succeeded()), "{outcomes:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the window was waited out"
    );
    let launched = rig.executor.launched();
    assert_eq!(launched.len(), 1, "one run for the three: {launched:?}");
    let events = rig.log().await;
    let queued = queued(&events);
    assert_eq!(queued.len(), 1);
    // Its one config covers the three dates: one config call made it (the
    // last; the others are each request's planning).
    let calls = daily.config_calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let mut batch = calls[3].clone();
    batch.sort();
    assert_eq!(batch, [r("daily/1"), r("daily/2"), r("daily/3")]);
    assert_eq!(kinds_count(&events, "job_run_buffering"), 3);
    // The two requests that joined the buffer attached to the run.
    let attached: Vec<&BuildEvent> = events
        .iter()
        .filter(|e| e.kind() == "job_run_attached")
        .collect();
    assert_eq!(attached.len(), 2);
    assert!(attached.iter().all(|e| e.job_run_id == queued[0]));
    let owners: std::collections::HashSet<&str> = attached
        .iter()
        .map(|e| e.build_request_id.as_str())
        .collect();
    assert_eq!(owners.len(), 2);
    assert_eq!(
        outcomes
            .iter()
            .map(|o| o.built.len() + o.delegated.len())
            .sum::<usize>(),
        3 + 2,
        "the owner built three, each joiner had its one delegated"
    );
}

#[tokio::test(start_paused = true)]
async fn with_no_window_each_request_runs_its_own() {
    let daily = job("daily", &[]).batching();
    let rig = rig(
        vec![daily.clone()],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let builds: Vec<_> = (1..=3)
        .map(|d| {
            rig.o
                .start(&[r(&format!("daily/{d}"))], BuildOptions::default())
        })
        .collect();
    for b in builds {
        assert!(b.outcome().await.unwrap().succeeded());
    }
    assert_eq!(rig.executor.launched().len(), 3);
    let events = rig.log().await;
    assert_eq!(kinds_count(&events, "job_run_buffering"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_out_before_the_window_closes() {
    let daily = windowed(Duration::from_secs(3600), Some(2));
    let rig = rig(
        vec![daily.clone()],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let started = tokio::time::Instant::now();
    let a = rig.o.start(&[r("daily/1")], BuildOptions::default());
    let b = rig.o.start(&[r("daily/2")], BuildOptions::default());
    assert!(a.outcome().await.unwrap().succeeded());
    assert!(b.outcome().await.unwrap().succeeded());
    assert!(
        started.elapsed() < Duration::from_secs(3600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rig.executor.launched().len(), 1);
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn one_request_with_several_partitions_batches_them() {
    let daily = windowed(Duration::from_secs(5), None);
    let rig = rig(
        vec![daily.clone(), job("weekly", &["daily"])],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    // weekly/k reads daily/k; three of them: three daily tasks, one run.
    let outcome = rig
        .o
        .build(&[r("weekly/1"), r("weekly/2"), r("weekly/3")])
        .await
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let launched = rig.executor.launched();
    assert_eq!(
        launched.len(),
        1 + 3,
        "one daily run, three weekly: {launched:?}"
    );
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn when_the_owner_is_cancelled_a_joiner_builds_its_own() {
    let daily = windowed(Duration::from_secs(5), None);
    let rig = rig(
        vec![daily.clone()],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let owner = rig.o.start(&[r("daily/1")], BuildOptions::default());
    let joiner = rig.o.start(&[r("daily/2")], BuildOptions::default());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    rig.o
        .cancel(owner.build_request_id(), "changed my mind")
        .unwrap();
    let owner = owner.outcome().await.unwrap();
    assert!(owner.canceled);
    let joiner = joiner.outcome().await.unwrap();
    assert!(joiner.succeeded(), "{joiner:?}");
    assert_eq!(joiner.built, [r("daily/2")]);
    assert_eq!(rig.executor.launched().len(), 1, "only the joiner's run");
    rig.log().await;
}
