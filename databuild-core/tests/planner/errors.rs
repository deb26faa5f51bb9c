//! Every error case of analyze is a typed error naming the culprit.

use databuild_core::graph::LookupError;
use databuild_core::{FnJob, Graph, JobConfig, JobConfigError, PartitionRef, PlanError, Planner};

use crate::common::*;

fn graph_with(job: FnJob) -> Graph {
    Graph::builder().job(job).build().unwrap()
}

#[tokio::test]
async fn unmatched_ref_names_the_ref_and_closest_patterns() {
    let d = deps(&[("b/1", &["zz/1"])]);
    let planner = Planner::new(table_graph(&["a", "b"], &d, &Calls::default()));
    let err = planner.analyze(&[r("b/1")]).await.unwrap_err();
    match &err {
        PlanError::Lookup(LookupError::NoJob {
            partition, closest, ..
        }) => {
            assert_eq!(partition, &r("zz/1"));
            assert_eq!(closest.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("zz/1"), "{err}");
}

#[tokio::test]
async fn ambiguous_ref_names_both_jobs() {
    let d = deps(&[]);
    let calls = Calls::default();
    let graph = Graph::builder()
        .job(table_job("//one", "x", &d, &calls))
        .job(table_job("//two", "x/[0-9]", &d, &calls)) // pattern x/[0-9]/.*
        .build()
        .unwrap();
    let err = Planner::new(graph)
        .analyze(&[r("x/1/0")])
        .await
        .unwrap_err();
    let PlanError::Lookup(LookupError::Ambiguous { partition, jobs }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(partition, &r("x/1/0"));
    assert_eq!(
        jobs.iter().map(|j| j.as_str()).collect::<Vec<_>>(),
        ["//one", "//two"]
    );
    assert_eq!(
        calls.count(),
        0,
        "nothing is configured when dispatch fails"
    );
}

#[tokio::test]
async fn config_failure_names_the_job() {
    let job = FnJob::builder("//bad")
        .pattern("x/.*")
        .config(|_| Err("database unreachable".into()))
        .build()
        .unwrap();
    let err = Planner::new(graph_with(job))
        .analyze(&[r("x/1")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlanError::Config(JobConfigError::Failed { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "job //bad: config failed: database unreachable"
    );
}

#[tokio::test]
async fn config_covering_refs_nobody_asked_for_is_an_error() {
    let job = FnJob::builder("//greedy")
        .pattern("x/.*")
        .config(|outs: &[PartitionRef]| {
            let mut all: Vec<PartitionRef> = outs.to_vec();
            all.push(PartitionRef::new("x/extra")?);
            Ok(vec![JobConfig::new(all)])
        })
        .build()
        .unwrap();
    let err = Planner::new(graph_with(job))
        .analyze(&[r("x/1")])
        .await
        .unwrap_err();
    let PlanError::Config(JobConfigError::UnrequestedOutputs { job, refs }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(job.as_str(), "//greedy");
    assert_eq!(refs, &[r("x/extra")]);
    assert!(err.to_string().contains("\"x/extra\""), "{err}");
}

#[tokio::test]
async fn config_missing_asked_refs_is_an_error() {
    let job = FnJob::builder("//lazy")
        .pattern("x/.*")
        .config(|outs: &[PartitionRef]| Ok(vec![JobConfig::new(outs.iter().take(1).cloned())]))
        .build()
        .unwrap();
    let err = Planner::new(graph_with(job))
        .analyze(&[r("x/1"), r("x/2")])
        .await
        .unwrap_err();
    let PlanError::Config(JobConfigError::MissingOutputs { job, refs }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(job.as_str(), "//lazy");
    assert_eq!(refs, &[r("x/2")]);
}

#[tokio::test]
async fn two_configs_covering_one_ref_is_an_error() {
    let job = FnJob::builder("//twice")
        .pattern("x/.*")
        .config(|outs: &[PartitionRef]| {
            Ok(vec![
                JobConfig::new(outs.iter().cloned()),
                JobConfig::new(outs.iter().cloned()),
            ])
        })
        .build()
        .unwrap();
    let err = Planner::new(graph_with(job))
        .analyze(&[r("x/1")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlanError::Config(JobConfigError::DuplicateOutputs { refs, .. }) if refs == &[r("x/1")]),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_args_are_rejected_before_config_runs() {
    let calls = Calls::default();
    let c = calls.clone();
    let job = FnJob::builder("//picky")
        .pattern("x/(?P<n>.*)")
        .validate(|outs| {
            outs.iter()
                .find(|o| o.as_str().ends_with('0'))
                .map_or(Ok(()), |o| Err(format!("{o} ends in 0")))
        })
        .config(move |outs: &[PartitionRef]| {
            c.0.lock().unwrap().push(("//picky".into(), vec![]));
            Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect())
        })
        .build()
        .unwrap();
    let err = Planner::new(graph_with(job))
        .analyze(&[r("x/10")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlanError::Config(JobConfigError::ArgsInvalid { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "job //picky: invalid arguments: x/10 ends in 0"
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn config_returning_an_invalid_ref_is_an_error() {
    let job = FnJob::builder("//dots")
        .pattern("x/.*")
        .config(|outs: &[PartitionRef]| {
            outs.iter()
                .map(
                    |o| Ok(JobConfig::new([o.clone()]).materialize(PartitionRef::new("x/../etc")?)),
                )
                .collect()
        })
        .build()
        .unwrap();
    let err = Planner::new(graph_with(job))
        .analyze(&[r("x/1")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"..\" path segment"), "{err}");
}
