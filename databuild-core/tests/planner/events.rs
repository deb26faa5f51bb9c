//! The exact BEL sequence of each analyze outcome.

use std::sync::Arc;

use databuild_core::bel::{BelSink, BlobDigest, Event, EventFilter, MemoryBel};
use databuild_core::plan::JobGraph;
use databuild_core::{AnalyzeRequest, FnJob, Graph, JobConfig, PartitionRef, Planner};

use crate::common::*;

async fn log(bel: &MemoryBel) -> Vec<databuild_core::BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

fn kinds(events: &[databuild_core::BuildEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind()).collect()
}

fn strs(refs: &[databuild_core::proto::PartitionRef]) -> Vec<&str> {
    refs.iter().map(|r| r.str.as_str()).collect()
}

async fn analyze(
    graph: Graph,
    request: &[&str],
) -> (MemoryBel, Result<JobGraph, databuild_core::PlanError>) {
    let bel = MemoryBel::new();
    let planner = Planner::new(graph).with_bel(Arc::new(bel.clone()));
    let req = AnalyzeRequest::new(request.iter().map(|s| r(s))).with_build_request_id("req-1");
    let result = planner.analyze_request(&req).await;
    let events = log(&bel).await;
    assert!(!events.is_empty());
    databuild_core::bel::check::check_log(&events).unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gap-free seqs");
        assert_eq!(
            e.build_request_id, "req-1",
            "every analyze event names its request"
        );
        assert!(e.timestamp_ns > 0);
    }
    (bel, result)
}

#[tokio::test]
async fn success() {
    let d = deps(&[
        ("c/1", &["b/1", "b/2"]),
        ("b/1", &["a/1"]),
        ("b/2", &["a/1"]),
    ]);
    let (bel, result) = analyze(
        table_graph(&["a", "b", "c"], &d, &Calls::default()),
        &["c/1"],
    )
    .await;
    let plan = result.unwrap();
    let events = log(&bel).await;
    assert_eq!(
        kinds(&events),
        [
            "analyze_started",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "job_graph_emitted",
        ]
    );
    let Some(Event::AnalyzeStarted(s)) = &events[0].event else {
        unreachable!()
    };
    assert_eq!(strs(&s.requested), ["c/1"]);
    assert_eq!(strs(&s.missing), ["c/1"]);
    let waves: Vec<(u32, String, Vec<&str>)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::PartitionsDispatched(p)) => {
                Some((p.wave, p.job.as_ref().unwrap().label.clone(), strs(&p.refs)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        waves,
        [
            (0, "//c".to_owned(), vec!["c/1"]),
            (1, "//b".to_owned(), vec!["b/1", "b/2"]),
            (2, "//a".to_owned(), vec!["a/1"]),
        ]
    );
    let Some(Event::JobConfigSucceeded(c)) = &events[6].event else {
        unreachable!()
    };
    assert_eq!(c.configs, 2);
    let Some(Event::JobGraphEmitted(g)) = &events[10].event else {
        unreachable!()
    };
    assert_eq!((g.tasks, g.edges), (4, 4));
    assert_eq!(g.plan_digest, plan.digest());
    // The plan is stored as a blob under its digest.
    let digest = BlobDigest::parse(&g.plan_digest).unwrap();
    let blob = bel.get_blob(&digest).await.unwrap().unwrap();
    assert_eq!(JobGraph::decode(&blob).unwrap().digest(), plan.digest());
}

#[tokio::test]
async fn wave_events_come_in_job_label_order() {
    let d = deps(&[("z/1", &["b/1", "a/1"])]);
    let (bel, result) = analyze(
        table_graph(&["z", "b", "a"], &d, &Calls::default()),
        &["z/1"],
    )
    .await;
    result.unwrap();
    let jobs: Vec<String> = log(&bel)
        .await
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::JobConfigSucceeded(c)) => Some(c.job.as_ref().unwrap().label.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(jobs, ["//z", "//a", "//b"]);
}

#[tokio::test]
async fn cycle() {
    let d = deps(&[("a/1", &["b/1"]), ("b/1", &["a/1"])]);
    let (bel, result) = analyze(table_graph(&["a", "b"], &d, &Calls::default()), &["a/1"]).await;
    assert!(result.is_err());
    let events = log(&bel).await;
    assert_eq!(
        kinds(&events),
        [
            "analyze_started",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "cycle_detected",
            "analyze_failed",
        ]
    );
    let Some(Event::CycleDetected(c)) = &events[7].event else {
        unreachable!()
    };
    assert_eq!(strs(&c.cycle), ["a/1", "b/1", "a/1"]);
    assert_eq!(
        c.jobs.iter().map(|j| j.label.as_str()).collect::<Vec<_>>(),
        ["//a", "//b"]
    );
    let Some(Event::AnalyzeFailed(f)) = &events[8].event else {
        unreachable!()
    };
    assert!(f.reason.starts_with("cycle detected"), "{}", f.reason);
}

#[tokio::test]
async fn unmatched_ref() {
    let d = deps(&[("b/1", &["zz/1"])]);
    let (bel, result) = analyze(table_graph(&["a", "b"], &d, &Calls::default()), &["b/1"]).await;
    assert!(result.is_err());
    let events = log(&bel).await;
    assert_eq!(
        kinds(&events),
        [
            "analyze_started",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "partition_dispatch_failed",
            "analyze_failed",
        ]
    );
    let Some(Event::PartitionDispatchFailed(f)) = &events[4].event else {
        unreachable!()
    };
    assert_eq!(strs(&f.refs), ["zz/1"]);
    assert!(
        f.reason.contains("no job produces partition \"zz/1\""),
        "{}",
        f.reason
    );
}

#[tokio::test]
async fn ambiguous_ref() {
    let d = deps(&[]);
    let calls = Calls::default();
    let graph = Graph::builder()
        .job(table_job("//one", "x", &d, &calls))
        .job(table_job("//two", "x/[0-9]", &d, &calls)) // pattern x/[0-9]/.*
        .build()
        .unwrap();
    let (bel, result) = analyze(graph, &["x/1/0", "x/a"]).await;
    assert!(result.is_err());
    let events = log(&bel).await;
    assert_eq!(
        kinds(&events),
        [
            "analyze_started",
            "partition_dispatch_failed",
            "analyze_failed"
        ]
    );
    let Some(Event::PartitionDispatchFailed(f)) = &events[1].event else {
        unreachable!()
    };
    assert_eq!(strs(&f.refs), ["x/1/0"]);
    assert!(
        f.reason.contains("//one") && f.reason.contains("//two"),
        "{}",
        f.reason
    );
}

#[tokio::test]
async fn config_failure() {
    let job = FnJob::builder("//bad")
        .pattern("x/.*")
        .config(|_| Err("boom".into()))
        .build()
        .unwrap();
    let ok = FnJob::builder("//good")
        .pattern("y/.*")
        .config(|outs: &[PartitionRef]| {
            Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect())
        })
        .build()
        .unwrap();
    let graph = Graph::builder().job(ok).job(job).build().unwrap();
    let (bel, result) = analyze(graph, &["y/1", "x/1"]).await;
    assert!(result.is_err());
    let events = log(&bel).await;
    assert_eq!(
        kinds(&events),
        [
            "analyze_started",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_run_failed",
            "job_config_failed",
            "partitions_dispatched",
            "job_config_args_validated",
            "job_config_succeeded",
            "analyze_failed",
        ]
    );
    let Some(Event::JobConfigRunFailed(f)) = &events[3].event else {
        unreachable!()
    };
    assert_eq!(f.job.as_ref().unwrap().label, "//bad");
    assert_eq!(f.reason, "job //bad: config failed: boom");
}

#[tokio::test]
async fn invalid_args() {
    let job = FnJob::builder("//picky")
        .pattern("x/.*")
        .validate(|_| Err("no".into()))
        .config(|_| Ok(vec![]))
        .build()
        .unwrap();
    let (bel, result) = analyze(Graph::builder().job(job).build().unwrap(), &["x/1"]).await;
    assert!(result.is_err());
    assert_eq!(
        kinds(&log(&bel).await),
        [
            "analyze_started",
            "partitions_dispatched",
            "job_config_args_invalid",
            "job_config_failed",
            "analyze_failed",
        ]
    );
}

#[tokio::test]
async fn nothing_missing() {
    let d = deps(&[]);
    let bel = MemoryBel::new();
    let available: std::collections::HashSet<PartitionRef> = [r("a/1")].into();
    let planner = Planner::new(table_graph(&["a"], &d, &Calls::default()))
        .with_bel(Arc::new(bel.clone()))
        .with_availability(Arc::new(available));
    let plan = planner.analyze(&[r("a/1")]).await.unwrap();
    assert!(plan.is_empty());
    let events = log(&bel).await;
    assert_eq!(kinds(&events), ["analyze_started", "job_graph_emitted"]);
    let Some(Event::AnalyzeStarted(s)) = &events[0].event else {
        unreachable!()
    };
    assert!(s.missing.is_empty());
}

#[tokio::test]
async fn events_take_the_injected_clock_and_ids() {
    use databuild_core::clock::{ManualClock, SequentialIds};
    let d = deps(&[("b/1", &["a/1"])]);
    let bel = MemoryBel::new();
    let clock = Arc::new(ManualClock::new(1_000));
    let planner = Planner::new(table_graph(&["a", "b"], &d, &Calls::default()))
        .with_bel(Arc::new(bel.clone()))
        .with_clock(clock)
        .with_ids(Arc::new(SequentialIds::new("req")));
    planner.analyze(&[r("b/1")]).await.unwrap();
    planner.analyze(&[r("a/1")]).await.unwrap();
    let events = log(&bel).await;
    assert!(events.iter().all(|e| e.timestamp_ns == 1_000));
    assert_eq!(events.first().unwrap().build_request_id, "req-1");
    assert_eq!(events.last().unwrap().build_request_id, "req-2");
}
