//! The build state kept next to the events (schema version 2): an
//! orchestrator's restart reads it instead of replaying the log, a store
//! from version 1 gets it on its first load, and damaged rows are rebuilt
//! from the log.

use std::path::Path;
use std::sync::Arc;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::{BelSink, EventFilter};
use databuild_core::state::BuildState;
use databuild_core::{FnJob, Graph, JobConfig, Orchestrator, PartitionRef};

fn graph() -> Graph {
    let a = FnJob::builder("//a")
        .pattern(r"a/\d+")
        .config(|outs: &[PartitionRef]| {
            Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect())
        })
        .build()
        .unwrap();
    let b = FnJob::builder("//b")
        .pattern(r"b/\d+")
        .config(|outs: &[PartitionRef]| {
            outs.iter()
                .map(|o| {
                    let key = o.as_str().trim_start_matches("b/");
                    Ok(JobConfig::new([o.clone()])
                        .materialize(PartitionRef::new(format!("a/{key}"))?))
                })
                .collect()
        })
        .build()
        .unwrap();
    Graph::builder().job(a).job(b).build().unwrap()
}

fn refs() -> Vec<PartitionRef> {
    (0..20)
        .map(|i| PartitionRef::new(format!("b/{i}")).unwrap())
        .collect()
}

/// Builds everything with an orchestrator on the store at `path`, and
/// returns what the second build (after a restart) built.
async fn build(path: &Path) -> usize {
    let o = Orchestrator::builder()
        .graph(graph())
        .bel(Arc::new(SqliteBel::open(path).unwrap()))
        .state_dir(path.parent().unwrap())
        .build()
        .unwrap();
    let outcome = o.build(&refs()).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    outcome.built.len()
}

/// The kept state, rebuilt, next to the state the whole log replays to.
async fn kept_and_replayed(path: &Path) -> (Option<(BuildState, u64)>, BuildState, u64) {
    let bel = SqliteBel::open_read_only(path).unwrap();
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    let replayed = BuildState::replay(&events).unwrap();
    let kept = bel
        .load_state()
        .await
        .unwrap()
        .map(|(rows, at)| (BuildState::from_rows(rows, at).unwrap(), at));
    (kept, replayed, bel.head().await.unwrap())
}

#[tokio::test]
async fn the_kept_state_is_the_state_the_log_replays_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    assert_eq!(build(&path).await, 40);
    let (kept, replayed, head) = kept_and_replayed(&path).await;
    let (kept, at) = kept.expect("the store keeps state");
    assert_eq!(at, head, "current to the last event");
    assert_eq!(kept, replayed);
    assert_eq!(kept.partitions().count(), 40);
    // A restart finds everything built.
    assert_eq!(build(&path).await, 0);
    let (kept, replayed, head) = kept_and_replayed(&path).await;
    assert_eq!(kept, Some((replayed, head)));
}

#[tokio::test]
async fn a_store_from_version_1_gets_its_state_on_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    assert_eq!(build(&path).await, 40);
    // Back to version 1: events and blobs only.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE state_runs; DROP TABLE state_requests; DROP TABLE state_partitions; \
             DROP TABLE state_meta; PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let (kept, _, _) = kept_and_replayed(&path).await;
    assert!(kept.is_none(), "version 1 keeps no state");
    assert_eq!(
        build(&path).await,
        0,
        "the log still says everything is built"
    );
    let (kept, replayed, head) = kept_and_replayed(&path).await;
    assert_eq!(kept, Some((replayed, head)));
}

#[tokio::test]
async fn damaged_state_rows_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    assert_eq!(build(&path).await, 40);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let damaged = conn
            .execute(
                "UPDATE state_runs SET record = x'ffffffff' WHERE job_run_id = \
                 (SELECT min(job_run_id) FROM state_runs)",
                [],
            )
            .unwrap();
        assert_eq!(damaged, 1);
    }
    let bel = SqliteBel::open_read_only(&path).unwrap();
    let (rows, at) = bel.load_state().await.unwrap().unwrap();
    let err = BuildState::from_rows(rows, at).unwrap_err();
    assert!(err.to_string().contains("job run"), "{err}");
    drop(bel);
    // The orchestrator replays the log instead, and stores the state again.
    assert_eq!(build(&path).await, 0);
    let (kept, replayed, head) = kept_and_replayed(&path).await;
    assert_eq!(kept, Some((replayed, head)));
}
