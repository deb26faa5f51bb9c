//! Cycles are found in the wave that closes them and named.

use databuild_core::{PlanError, Planner};

use crate::common::*;

fn assert_cycle(err: &PlanError, expect_refs: &[&str], expect_jobs: &[&str]) {
    let PlanError::Cycle { cycle, jobs } = err else {
        panic!("expected a cycle, got {err:?}");
    };
    assert_eq!(
        cycle.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        expect_refs
    );
    assert_eq!(
        jobs.iter().map(|j| j.as_str()).collect::<Vec<_>>(),
        expect_jobs
    );
}

#[tokio::test]
async fn two_job_cycle() {
    let d = deps(&[("a/1", &["b/1"]), ("b/1", &["a/1"])]);
    let planner = Planner::new(table_graph(&["a", "b"], &d, &Calls::default()));
    let err = planner.analyze(&[r("a/1")]).await.unwrap_err();
    // a/1 is read by the task producing b/1, which is read by the task producing a/1.
    assert_cycle(&err, &["a/1", "b/1", "a/1"], &["//a", "//b"]);
    assert_eq!(
        err.to_string(),
        r#"cycle detected: "a/1" (//a) -> "b/1" (//b) -> "a/1""#
    );
}

#[tokio::test]
async fn self_dependency() {
    let d = deps(&[("a/1", &["a/1"])]);
    let planner = Planner::new(table_graph(&["a"], &d, &Calls::default()));
    let err = planner.analyze(&[r("a/1")]).await.unwrap_err();
    assert_cycle(&err, &["a/1", "a/1"], &["//a"]);
}

#[tokio::test]
async fn long_cycle_through_a_diamond() {
    let d = deps(&[
        ("d/1", &["c/1", "b/1"]),
        ("c/1", &["a/1"]),
        ("b/1", &["a/1"]),
        ("a/1", &["e/1"]),
        ("e/1", &["c/1"]),
    ]);
    let planner = Planner::new(table_graph(
        &["a", "b", "c", "d", "e"],
        &d,
        &Calls::default(),
    ));
    let err = planner.analyze(&[r("d/1")]).await.unwrap_err();
    assert_cycle(&err, &["a/1", "c/1", "e/1", "a/1"], &["//a", "//c", "//e"]);
}

#[tokio::test]
async fn a_self_dependent_chain_is_not_a_cycle() {
    // Each day needs the day before: a chain, one wave per day.
    let entries: Vec<(String, Vec<String>)> = (1..200)
        .map(|d| (format!("day/{d}"), vec![format!("day/{}", d - 1)]))
        .collect();
    let d = std::sync::Arc::new(
        entries
            .into_iter()
            .map(|(o, ins)| (o, ins.into_iter().map(|i| (i, true)).collect()))
            .collect(),
    );
    let calls = Calls::default();
    let planner = Planner::new(table_graph(&["day"], &d, &calls));
    let plan = planner.analyze(&[r("day/199")]).await.unwrap();
    assert_eq!(plan.len(), 200);
    assert_eq!(calls.count(), 200);
    // Asking for every day at once is one wave and one config call.
    let calls = Calls::default();
    let planner = Planner::new(table_graph(&["day"], &d, &calls));
    let all: Vec<_> = (0..200).rev().map(|i| r(&format!("day/{i}"))).collect();
    let plan = planner.analyze(&all).await.unwrap();
    assert_eq!(plan.len(), 200);
    assert_eq!(plan.edge_count(), 199);
    assert_eq!(calls.count(), 1);
    let order: Vec<String> = plan
        .topological_order()
        .into_iter()
        .map(|id| plan.task(id).config.outputs[0].to_string())
        .collect();
    assert_eq!(
        order,
        (0..200).map(|i| format!("day/{i}")).collect::<Vec<_>>()
    );
}
