//! The partition catalog across requests and orchestrators: what is
//! available is delegated historically, taint and force rebuild, and a new
//! orchestrator on the same log closes what a stopped one left open.

use databuild_core::proto::build_event::Event;
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{BuildOptions, Orchestrator};

use super::*;

/// A second orchestrator on `rig`'s log and graph.
fn second(rig: &Rig, jobs: Vec<TestJob>, executor: ScriptedExecutor) -> Orchestrator {
    let mut g = Graph::builder();
    for j in jobs {
        g = g.job(j);
    }
    Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(Arc::new(rig.bel.clone()))
        .executor(Arc::new(executor))
        .ids(Arc::new(SequentialIds::new("second")))
        .state_dir(std::env::temp_dir().join("databuild-catalog-tests"))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn available_partitions_are_delegated_to_the_build_that_made_them() {
    let rig = rig(
        vec![job("a", &[]), job("b", &["a"])],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let first = rig.o.build(&[r("a/1")]).await.unwrap();
    // A new orchestrator on the same log knows a/1 is there.
    let o = second(
        &rig,
        vec![job("a", &[]), job("b", &["a"])],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    let outcome = o.build(&[r("b/1")]).await.unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.built, [r("b/1")]);
    assert_eq!(outcome.skipped, [r("a/1")]);
    let events = rig
        .bel
        .read(0, &EventFilter::all(), usize::MAX)
        .await
        .unwrap();
    check_log(&events).unwrap();
    let a_run = queued(&events)[0].clone();
    let delegated = events.iter().find_map(|e| match &e.event {
        Some(Event::PartitionDelegated(d)) => Some(d.clone()),
        _ => None,
    });
    let d = delegated.expect("a delegation event");
    assert!(d.historical);
    assert_eq!(d.partition.unwrap().str, "a/1");
    assert_eq!(d.to_build_request_id, first.build_request_id);
    assert_eq!(d.to_job_run_id, a_run);
    let skipped = events.iter().find_map(|e| match &e.event {
        Some(Event::JobSkipped(s)) => Some(s.clone()),
        _ => None,
    });
    let s = skipped.expect("a job-skipped event");
    assert_eq!(s.job.unwrap().label, "//a");
    assert_eq!(s.built_by_job_run_id, a_run);
    assert_eq!(BuildState::replay(&events).unwrap(), o.state());
}

#[tokio::test(start_paused = true)]
async fn taint_and_force_rebuild() {
    let rig = rig(
        vec![job("a", &[]), job("b", &["a"])],
        ScriptedExecutor::with_script(|_| Script::succeed()),
    );
    assert!(rig.o.build(&[r("b/1")]).await.unwrap().succeeded());
    // Nothing to do the second time.
    let again = rig.o.build(&[r("b/1")]).await.unwrap();
    assert!(again.built.is_empty());
    assert_eq!(again.skipped, [r("b/1")]);
    // Tainting a/1 rebuilds it, and only it (b/1 is still available).
    rig.o.taint(&[r("a/1")]).await.unwrap();
    assert_eq!(
        rig.o.state().partition(&r("a/1")).unwrap().status,
        databuild_core::proto::PartitionStatus::Tainted
    );
    let after_taint = rig.o.build(&[r("a/1")]).await.unwrap();
    assert_eq!(after_taint.built, [r("a/1")]);
    // Force rebuilds what was asked even when available.
    let forced = rig
        .o
        .build_with(&[r("b/1")], BuildOptions::default().force(true))
        .await
        .unwrap();
    assert_eq!(forced.built, [r("b/1")]);
    assert_eq!(rig.executor.launched().len(), 4);
    rig.log().await;
}
