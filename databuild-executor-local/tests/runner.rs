//! Runner mode: runs outlive the executor that started them; a later
//! executor lists them, re-attaches to the ones still running and collects
//! the outcome of the ones that ended meanwhile. A run id launches once,
//! whichever executor asks.

use std::path::Path;
use std::time::Duration;

use databuild_core::job::{JobLabel, Launch, ProcessLaunch};
use databuild_core::{Executor, ExecutorError, JobConfig, JobRunSpec, Outcome, RunUpdate};
use databuild_executor_local::{LocalConfig, LocalExecutor};
use futures::StreamExt;

fn executor(dir: &Path) -> LocalExecutor {
    LocalExecutor::new(
        LocalConfig::new(dir.join("state"))
            .runner(vec![env!("CARGO_BIN_EXE_databuild-runner").into()])
            .heartbeat_interval(Duration::from_millis(100)),
    )
}

fn spec(dir: &Path, id: &str, script: &str) -> JobRunSpec {
    JobRunSpec::new(
        id,
        "req",
        JobLabel::new("//j").unwrap(),
        JobConfig::new([databuild_core::PartitionRef::new(format!("out/{id}")).unwrap()]),
        Launch::Process(ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
        ])),
        dir.join(format!("logs/{id}.jsonl")),
    )
}

async fn outcome(updates: databuild_core::executor::RunUpdates) -> Outcome {
    let all: Vec<RunUpdate> = updates.collect().await;
    match all.last() {
        Some(RunUpdate::Exited(o)) => o.clone(),
        other => panic!("no exit: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_outlive_their_executor_and_are_collected_or_reattached() {
    let dir = tempfile::tempdir().unwrap();
    let first = executor(dir.path());
    let gate = dir.path().join("gate");
    // One run ends while nobody watches; one waits for a file, then
    // reports missing deps.
    let quick = first
        .launch(spec(dir.path(), "quick", "echo hi"))
        .await
        .unwrap();
    let slow = first
        .launch(spec(
            dir.path(),
            "slow",
            &format!(
                "while [ ! -e {} ]; do sleep 0.05; done; echo '__DATABUILD_ERROR__::{{\"missing_deps\":[{{\"impacted\":[\"out/slow\"],\"missing\":[\"in/1\"]}}]}}'",
                gate.display()
            ),
        ))
        .await
        .unwrap();
    // The orchestrator goes away: its executor and streams with it.
    drop((quick, slow, first));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = executor(dir.path());
    let mut listed = second.list_runs().await.unwrap();
    listed.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
    let states: Vec<(&str, bool)> = listed
        .iter()
        .map(|r| (r.job_run_id.as_str(), r.running))
        .collect();
    assert_eq!(states, [("quick", false), ("slow", true)]);
    assert!(matches!(
        outcome(second.reattach("quick").await.unwrap()).await,
        Outcome::Succeeded { .. }
    ));
    let slow = second.reattach("slow").await.unwrap();
    std::fs::write(&gate, b"").unwrap();
    match outcome(slow).await {
        Outcome::MissingDeps { missing_deps, .. } => {
            assert_eq!(missing_deps[0].missing[0].as_str(), "in/1");
        }
        other => panic!("{other:?}"),
    }
    // The log holds the job's output, not the marker line.
    let log = std::fs::read_to_string(dir.path().join("logs/quick.jsonl")).unwrap();
    assert!(log.contains("\"text\":\"hi\""), "{log}");
    let log = std::fs::read_to_string(dir.path().join("logs/slow.jsonl")).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("\"stream\":\"stdout\"") && l.contains("__DATABUILD_ERROR__")),
        "{log}"
    );

    // A run id launches once, whichever executor asks.
    let err = second
        .launch(spec(dir.path(), "quick", "echo again"))
        .await
        .err();
    assert!(
        matches!(&err, Some(ExecutorError::Launch { reason, .. }) if reason.contains("already launched")),
        "{err:?}"
    );
    assert!(matches!(
        second.reattach("never").await.err(),
        Some(ExecutorError::UnknownRun { .. })
    ));
    // Once the orchestrator recorded a run's end, the run directory goes.
    second.forget("quick").await.unwrap();
    let left: Vec<String> = second
        .list_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.job_run_id)
        .collect();
    assert_eq!(left, ["slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattached_run_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let first = executor(dir.path());
    drop(
        first
            .launch(spec(dir.path(), "long", "exec sleep 300"))
            .await
            .unwrap(),
    );
    drop(first);
    let second = executor(dir.path());
    let updates = second.reattach("long").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.cancel("long", "enough").await.unwrap();
    assert_eq!(
        outcome(updates).await,
        Outcome::Canceled {
            reason: "enough".into()
        }
    );
}
