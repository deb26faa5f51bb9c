//! Slots: the global parallelism limit over all requests, named pools with
//! per-job slot needs, and the per-request scratch directory.

use std::sync::Arc;

use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{BuildError, BuildOptions, FnJob, JobRunSpec};

use super::*;

#[tokio::test(start_paused = true)]
async fn pools_limit_runs_through_the_events() {
    // At any point of the log, runs in pool db hold at most 2 slots.
    let rig = rig_with(
        vec![
            job("small", &[]).hints(|h| h.pool = Some("db".into())),
            job("big", &[]).hints(|h| {
                h.pool = Some("db".into());
                h.slots = 2;
            }),
        ],
        ScriptedExecutor::new(),
        |b| b.parallelism(8).pool("db", 2),
    );
    let mut refs: Vec<PartitionRef> = (0..4).map(|i| r(&format!("small/{i}"))).collect();
    refs.push(r("big/0"));
    refs.push(r("big/1"));
    let build = rig.o.start(&refs, BuildOptions::default());
    for _ in 0..refs.len() {
        let run = rig.executor.next_launch().await;
        tokio::task::yield_now().await;
        run.control.succeed();
    }
    assert!(build.outcome().await.unwrap().succeeded());
    let events = rig.log().await;
    let mut held: i64 = 0;
    let mut slots_of = std::collections::HashMap::new();
    for e in &events {
        match e.kind() {
            "job_run_queued" => {
                let label = match &e.event {
                    Some(databuild_core::proto::build_event::Event::JobRunQueued(q)) => {
                        q.task.as_ref().unwrap().job.as_ref().unwrap().label.clone()
                    }
                    _ => unreachable!(),
                };
                slots_of.insert(e.job_run_id.clone(), if label == "//big" { 2 } else { 1 });
            }
            "job_scheduled" => held += slots_of[&e.job_run_id],
            "job_run_succeeded" => held -= slots_of[&e.job_run_id],
            _ => {}
        }
        assert!(held <= 2, "pool db holds {held} slots at seq {}", e.seq);
    }
}

/// Executor labels (seed 002): a job requiring labels goes only where they
/// are, on the executor or one of its places (engines); a requirement
/// nothing meets is unschedulable before anything runs, naming the label.
#[tokio::test(start_paused = true)]
async fn label_requirements_are_matched_at_plan_time() {
    let executor = ScriptedExecutor::with_script(|_| Script::succeed()).labels(
        &[("os", "linux")],
        &[&[("zone", "a")], &[("zone", "b"), ("gpu", "true")]],
    );
    let rig = rig_with(
        vec![
            job("trains", &[]).hints(|h| {
                h.label_requirements.insert("gpu".into(), "true".into());
                h.label_requirements.insert("os".into(), "linux".into());
            }),
            job("anywhere", &[]).hints(|h| {
                h.label_requirements.insert("zone".into(), "a".into());
            }),
            job("nowhere", &[]).hints(|h| {
                h.label_requirements.insert("zone".into(), "a".into());
                h.label_requirements.insert("gpu".into(), "true".into());
            }),
            job("quantum", &[]).hints(|h| {
                h.label_requirements.insert("qpu".into(), "yes".into());
            }),
        ],
        executor,
        |b| b,
    );
    let outcome = rig
        .o
        .build(&[r("trains/1"), r("anywhere/1")])
        .await
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let err = rig
        .o
        .build(&[r("nowhere/1"), r("quantum/1"), r("anywhere/2")])
        .await
        .unwrap_err();
    let BuildError::Unschedulable { tasks } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let text = err.to_string();
    assert!(
        text.contains("no executor or engine has label qpu=yes"),
        "{text}"
    );
    // No one place has both zone=a and gpu=true: the closest misses one.
    assert!(
        text.contains("has label gpu=true") || text.contains("has label zone=a"),
        "{text}"
    );
    assert_eq!(
        rig.executor.launched().len(),
        2,
        "nothing of the second request ran"
    );
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_pools_and_oversized_needs_are_unschedulable() {
    let rig = rig_with(
        vec![
            job("x", &[]).hints(|h| h.pool = Some("gpu".into())),
            job("y", &[]).hints(|h| {
                h.pool = Some("db".into());
                h.slots = 3;
            }),
        ],
        ScriptedExecutor::with_script(|_| Script::succeed()),
        |b| b.pool("db", 2),
    );
    let err = rig.o.build(&[r("x/1"), r("y/1")]).await.unwrap_err();
    let BuildError::Unschedulable { tasks } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(tasks.len(), 2);
    let text = err.to_string();
    assert!(
        text.contains(r#"pool "gpu""#) && text.contains("configured pools are db"),
        "{text}"
    );
    assert!(
        text.contains("needs 3 slots of pool \"db\", which has 2"),
        "{text}"
    );
    assert!(rig.executor.launched().is_empty());
    rig.log().await;
    // Keep-going runs what can run.
    let rig = rig_with(
        vec![
            job("x", &[]).hints(|h| h.pool = Some("gpu".into())),
            job("z", &[]),
        ],
        ScriptedExecutor::with_script(|_| Script::succeed()),
        |b| b,
    );
    let outcome = rig
        .o
        .build_with(
            &[r("x/1"), r("z/1")],
            BuildOptions::default().keep_going(true),
        )
        .await
        .unwrap();
    assert_eq!(outcome.built, [r("z/1")]);
    assert!(outcome.not_built[0].reason.starts_with("unschedulable: "));
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn parallelism_is_shared_by_concurrent_requests() {
    let rig = rig_with(
        vec![job("a", &[])],
        ScriptedExecutor::with_script(|_| Script::Hang),
        |b| b.parallelism(2),
    );
    let one = rig.o.start(&[r("a/1"), r("a/2")], BuildOptions::default());
    until(|| rig.executor.running().len() == 2).await;
    let two = rig.o.start(&[r("a/3")], BuildOptions::default());
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(rig.executor.launched().len(), 2, "the second request waits");
    // A slot freed by the first request wakes the second.
    let first = rig.executor.running()[0].clone();
    rig.executor.control(&first).succeed();
    until(|| rig.executor.launched().len() == 3).await;
    for id in rig.executor.running() {
        rig.executor.control(&id).succeed();
    }
    assert!(one.outcome().await.unwrap().succeeded());
    assert!(two.outcome().await.unwrap().succeeded());
    rig.log().await;
}

#[tokio::test]
async fn tasks_of_a_request_share_its_scratch_directory() {
    let dir = tempfile::tempdir().unwrap();
    let write = FnJob::builder("//write")
        .pattern("w/.*")
        .config(|outs: &[PartitionRef]| Ok(vec![JobConfig::new(outs.to_vec())]))
        .exec(|ctx| async move {
            let scratch = ctx.scratch_dir.clone().ok_or("no scratch dir")?;
            std::fs::write(scratch.join("shared.txt"), "hello")?;
            Ok(())
        })
        .build()
        .unwrap();
    let read = FnJob::builder("//read")
        .pattern("r/.*")
        .config(|outs: &[PartitionRef]| {
            Ok(vec![
                JobConfig::new(outs.to_vec()).materialize(PartitionRef::new("w/1")?),
            ])
        })
        .exec(|ctx| async move {
            let scratch = ctx.scratch_dir.clone().ok_or("no scratch dir")?;
            let text = std::fs::read_to_string(scratch.join("shared.txt"))?;
            if text != "hello" {
                return Err(format!("read {text:?}").into());
            }
            Ok(())
        })
        .build()
        .unwrap();
    let seen: Arc<std::sync::Mutex<Vec<std::path::PathBuf>>> = Arc::default();
    let seen_by_script = Arc::clone(&seen);
    let executor = ScriptedExecutor::with_script(move |spec: &JobRunSpec| {
        let path = spec.scratch_dir.clone().unwrap();
        assert!(path.is_dir());
        assert_eq!(
            spec.databuild_env()["DATABUILD_SCRATCH_DIR"],
            path.to_string_lossy()
        );
        seen_by_script.lock().unwrap().push(path);
        Script::succeed()
    });
    let o = Orchestrator::builder()
        .graph(
            Graph::builder()
                .job(write)
                .job(read)
                .job(job("p", &[]))
                .build()
                .unwrap(),
        )
        .bel(Arc::new(MemoryBel::new()))
        .executor(Arc::new(executor))
        .state_dir(dir.path())
        .build()
        .unwrap();
    let outcome = o.build(&[r("r/1"), r("p/1")]).await.unwrap();
    assert!(outcome.succeeded(), "{:?}", outcome.not_built);
    let scratch = dir.path().join("scratch").join(&outcome.build_request_id);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        std::slice::from_ref(&scratch)
    );
    assert!(!scratch.exists(), "removed when the request ends");
}
