//! What a plan holds.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use databuild_core::plan::JobGraph;
use databuild_core::{AnalyzeRequest, PartitionRef, PartitionStatusView, Planner};

use crate::common::*;

fn outputs(plan: &JobGraph) -> BTreeSet<String> {
    plan.tasks()
        .flat_map(|(_, t)| t.config.outputs.iter().map(|o| o.to_string()))
        .collect()
}

#[tokio::test]
async fn plans_the_chain_back_from_the_request() {
    let d = deps(&[
        ("c/1", &["b/1", "b/2"]),
        ("b/1", &["a/1"]),
        ("b/2", &["a/1"]),
    ]);
    let calls = Calls::default();
    let planner = Planner::new(table_graph(&["a", "b", "c"], &d, &calls));
    let plan = planner.analyze(&[r("c/1")]).await.unwrap();
    assert_eq!(plan.len(), 4);
    assert_eq!(
        outputs(&plan),
        ["a/1", "b/1", "b/2", "c/1"].map(String::from).into()
    );
    assert_eq!(plan.edge_count(), 4);
    // One config call per job per wave, with all of that job's refs.
    assert_eq!(
        calls.for_job("//b"),
        vec![vec!["b/1".to_owned(), "b/2".to_owned()]]
    );
    assert_eq!(calls.for_job("//a"), vec![vec!["a/1".to_owned()]]);
    assert_eq!(calls.count(), 3);
    // Topological order: producers first.
    let order = plan.topological_order();
    let pos = |out: &str| {
        order
            .iter()
            .position(|id| plan.task(*id).config.outputs[0].as_str() == out)
            .unwrap()
    };
    assert!(pos("a/1") < pos("b/1") && pos("a/1") < pos("b/2"));
    assert!(pos("b/1") < pos("c/1") && pos("b/2") < pos("c/1"));
    let a = plan.producer(&r("a/1")).unwrap();
    let down: HashSet<_> = plan
        .downstream(a)
        .map(|(t, p)| (t, p.to_string()))
        .collect();
    assert_eq!(down.len(), 2);
    assert!(down.iter().all(|(_, p)| p == "a/1"));
}

#[tokio::test]
async fn query_inputs_never_expand_the_plan() {
    let d = Arc::new(
        [("b/1".to_owned(), vec![("a/1".to_owned(), false)])]
            .into_iter()
            .collect(),
    );
    let calls = Calls::default();
    let planner = Planner::new(table_graph(&["a", "b"], &d, &calls));
    let plan = planner.analyze(&[r("b/1")]).await.unwrap();
    assert_eq!(outputs(&plan), ["b/1".to_owned()].into());
    assert_eq!(plan.edge_count(), 0);
    assert!(calls.for_job("//a").is_empty());
}

#[tokio::test]
async fn available_partitions_are_not_planned_unless_forced() {
    let d = deps(&[("b/1", &["a/1"])]);
    let calls = Calls::default();
    let graph = Arc::new(table_graph(&["a", "b"], &d, &calls));
    let available: HashSet<PartitionRef> = [r("a/1"), r("b/1")].into();
    let planner = Planner::new(Arc::clone(&graph)).with_availability(Arc::new(available));
    let plan = planner.analyze(&[r("b/1")]).await.unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.available(), &[r("b/1")]);

    // Forcing rebuilds what was asked, not its available inputs.
    let plan = planner
        .analyze_request(&AnalyzeRequest::new([r("b/1")]).force(true))
        .await
        .unwrap();
    assert_eq!(outputs(&plan), ["b/1".to_owned()].into());
    assert_eq!(plan.available(), &[r("a/1")]);
}

#[derive(Debug)]
struct Catalog;

impl databuild_core::Availability for Catalog {
    fn status(&self, p: &PartitionRef) -> PartitionStatusView {
        match p.as_str() {
            "a/1" => PartitionStatusView::Building {
                job_run_id: "run-7".into(),
            },
            "a/2" => PartitionStatusView::Tainted,
            _ => PartitionStatusView::Missing,
        }
    }
}

#[tokio::test]
async fn building_partitions_are_waited_on_and_tainted_ones_rebuilt() {
    let d = deps(&[("b/1", &["a/1", "a/2"])]);
    let calls = Calls::default();
    let planner =
        Planner::new(table_graph(&["a", "b"], &d, &calls)).with_availability(Arc::new(Catalog));
    let plan = planner.analyze(&[r("b/1")]).await.unwrap();
    assert_eq!(outputs(&plan), ["a/2", "b/1"].map(String::from).into());
    assert_eq!(plan.in_progress().len(), 1);
    assert_eq!(plan.in_progress()[0].partition, r("a/1"));
    assert_eq!(plan.in_progress()[0].job_run_id, "run-7");

    // Asking for it again, even forced, waits on the same run: never a
    // second build of a partition that is being built.
    let mut plan = plan;
    planner
        .extend(
            &mut plan,
            &AnalyzeRequest::new([r("a/1"), r("a/1")]).force(true),
        )
        .await
        .unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(plan.in_progress().len(), 1);
}

#[tokio::test]
async fn extend_reuses_what_the_plan_holds() {
    let d = deps(&[("b/1", &["a/1"]), ("b/2", &["a/1", "a/2"])]);
    let calls = Calls::default();
    let planner = Planner::new(table_graph(&["a", "b"], &d, &calls));
    let mut plan = planner.analyze(&[r("b/1")]).await.unwrap();
    assert_eq!(plan.len(), 2);
    let new = planner
        .extend(&mut plan, &AnalyzeRequest::new([r("b/2"), r("b/1")]))
        .await
        .unwrap();
    assert_eq!(new.len(), 2, "b/2 and a/2 are new; b/1 and a/1 are reused");
    assert_eq!(plan.len(), 4);
    let b2 = plan.producer(&r("b/2")).unwrap();
    let ups: BTreeSet<String> = plan.upstream(b2).map(|(_, p)| p.to_string()).collect();
    assert_eq!(ups, ["a/1", "a/2"].map(String::from).into());
}

#[tokio::test]
async fn a_batching_config_covers_several_outputs() {
    let graph = databuild_core::Graph::builder()
        .job(
            databuild_core::FnJob::builder("//batch")
                .pattern("x/.*")
                .config(|outs: &[PartitionRef]| {
                    Ok(vec![databuild_core::JobConfig::new(outs.iter().cloned())])
                })
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let plan = Planner::new(graph)
        .analyze(&[r("x/1"), r("x/2"), r("x/1")])
        .await
        .unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(
        plan.requested(),
        &[r("x/1"), r("x/2")],
        "duplicates are asked once"
    );
    let (_, task) = plan.tasks().next().unwrap();
    assert_eq!(task.config.outputs, vec![r("x/1"), r("x/2")]);
    assert_eq!(plan.producer(&r("x/2")), plan.producer(&r("x/1")));
}

#[tokio::test]
async fn proto_round_trip_and_digest() {
    let d = deps(&[
        ("c/1", &["b/1", "b/2"]),
        ("b/1", &["a/1"]),
        ("b/2", &["a/1"]),
    ]);
    let planner = Planner::new(table_graph(&["a", "b", "c"], &d, &Calls::default()));
    let plan = planner.analyze(&[r("c/1")]).await.unwrap();
    let bytes = plan.encode();
    let back = JobGraph::decode(&bytes).unwrap();
    assert_eq!(back.len(), plan.len());
    assert_eq!(back.edge_count(), plan.edge_count());
    assert_eq!(back.requested(), plan.requested());
    assert_eq!(back.digest(), plan.digest());
    assert_eq!(plan.digest().len(), 64);
    for (_, t) in plan.tasks() {
        let id = back.producer(&t.config.outputs[0]).unwrap();
        assert_eq!(back.task(id), t);
    }
}

#[tokio::test]
async fn decoding_rejects_bad_plans() {
    let d = deps(&[("b/1", &["a/1"])]);
    let planner = Planner::new(table_graph(&["a", "b"], &d, &Calls::default()));
    let plan = planner.analyze(&[r("b/1")]).await.unwrap();

    let err = JobGraph::decode(b"\xff\xff\xff garbage").unwrap_err();
    assert!(err.to_string().contains("not a JobGraph"), "{err}");

    let mut p = plan.to_proto();
    p.edges[0].to = 9;
    let err = JobGraph::from_proto(&p).unwrap_err();
    assert!(err.to_string().contains("edge names task 9"), "{err}");

    let mut p = plan.to_proto();
    let back = p.edges[0].clone();
    p.edges.push(databuild_core::proto::JobGraphEdge {
        from: back.to,
        to: back.from,
        partition: back.partition,
    });
    let err = JobGraph::from_proto(&p).unwrap_err();
    assert!(err.to_string().contains("closes a cycle"), "{err}");

    let mut p = plan.to_proto();
    p.tasks[0].config.as_mut().unwrap().outputs[0].str = "../x".into();
    let err = JobGraph::from_proto(&p).unwrap_err();
    assert!(err.to_string().contains("\"..\""), "{err}");
}

#[tokio::test]
async fn renders_mermaid_and_dot() {
    let d = deps(&[("b/1", &["a/\"1\""])]);
    let planner = Planner::new(table_graph(&["a", "b"], &d, &Calls::default()));
    let plan = planner.analyze(&[r("b/1")]).await.unwrap();
    let a = plan.producer(&r("a/\"1\"")).unwrap().index();
    let b = plan.producer(&r("b/1")).unwrap().index();

    let mermaid = plan.to_mermaid();
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains(&format!("t{a}[\"//a<br/>a/#quot;1#quot;\"]")),
        "{mermaid}"
    );
    assert!(
        mermaid.contains(&format!("t{a} -->|\"a/#quot;1#quot;\"| t{b}")),
        "{mermaid}"
    );
    assert!(
        mermaid.contains(&format!("class t{b} requested")),
        "{mermaid}"
    );

    let dot = plan.to_dot();
    assert!(dot.starts_with("digraph plan {"), "{dot}");
    assert!(
        dot.contains(&format!("t{a} -> t{b} [label=\"a/\\\"1\\\"\"];")),
        "{dot}"
    );
    assert!(
        dot.contains(&format!("t{b} [label=\"//b\\nb/1\", penwidth=3];")),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'));
}

/// A job whose config waits at a barrier: it only finishes if the other
/// jobs of its wave are configured at the same time.
#[derive(Debug)]
struct BarrierJob {
    label: databuild_core::JobLabel,
    patterns: Vec<databuild_core::PartitionPattern>,
    barrier: Arc<tokio::sync::Barrier>,
}

#[async_trait::async_trait]
impl databuild_core::DataBuildJob for BarrierJob {
    fn label(&self) -> &databuild_core::JobLabel {
        &self.label
    }
    fn patterns(&self) -> &[databuild_core::PartitionPattern] {
        &self.patterns
    }
    async fn config(
        &self,
        outputs: &[PartitionRef],
    ) -> Result<Vec<databuild_core::JobConfig>, databuild_core::JobConfigError> {
        self.barrier.wait().await;
        Ok(outputs
            .iter()
            .map(|o| databuild_core::JobConfig::new([o.clone()]))
            .collect())
    }
    fn launch(&self) -> databuild_core::Launch {
        databuild_core::Launch::Process(databuild_core::job::ProcessLaunch::new(vec![
            "true".into(),
        ]))
    }
}

#[tokio::test]
async fn a_waves_config_calls_run_concurrently() {
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut graph = databuild_core::Graph::builder();
    for name in ["a", "b", "c"] {
        graph = graph.job(BarrierJob {
            label: databuild_core::JobLabel::new(format!("//{name}")).unwrap(),
            patterns: vec![databuild_core::PartitionPattern::new(&format!("{name}/.*")).unwrap()],
            barrier: Arc::clone(&barrier),
        });
    }
    let planner = Planner::new(graph.build().unwrap()).with_config_concurrency(3);
    // With the three calls in flight together the barrier opens; if they ran
    // one at a time the first would wait forever (the guard turns that into
    // a failure instead of a hang).
    let plan = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        planner.analyze(&[r("a/1"), r("b/1"), r("c/1")]),
    )
    .await
    .expect("config calls of one wave run concurrently")
    .unwrap();
    assert_eq!(plan.len(), 3);
}
