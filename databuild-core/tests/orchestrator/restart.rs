//! An orchestrator that stops mid-build and a new one on the same log
//! (DESIGN.md "Exactly-once launch, re-entrance"): the open request is
//! resumed under its id, queued runs go back to the queue under the slot
//! limits, scheduled runs never launched are launched under their ids,
//! started runs are re-attached, lost ones run again as the next attempt,
//! and no job run id is launched twice.
//!
//! A crash is a prefix of a real log cut at a batch boundary (batches are
//! atomic in every sink; a [`HookedSink`] notes where they end), handed to
//! a new orchestrator whose executor knows which runs outlived the first
//! one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use databuild_core::BuildOptions;
use databuild_core::bel::Event;
use databuild_core::executor::Outcome;
use databuild_core::proto::PartitionStatus;
use databuild_core::state::{BuildState, RunState};
use databuild_core::testkit::hooked::HookedSink;
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};

use super::*;

fn orchestrator(
    bel: Arc<dyn BelSink>,
    jobs: Vec<TestJob>,
    executor: &ScriptedExecutor,
    ids: &str,
    f: impl FnOnce(
        databuild_core::orchestrator::OrchestratorBuilder,
    ) -> databuild_core::orchestrator::OrchestratorBuilder,
) -> Orchestrator {
    let mut g = Graph::builder();
    for j in jobs {
        g = g.job(j);
    }
    f(Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(bel)
        .executor(Arc::new(executor.clone()))
        .ids(Arc::new(SequentialIds::new(ids)))
        .state_dir(std::env::temp_dir().join("databuild-restart-tests")))
    .build()
    .unwrap()
}

/// A new memory log holding `events` (a prefix of another log).
async fn log_of(events: &[BuildEvent]) -> MemoryBel {
    let bel = MemoryBel::new();
    if !events.is_empty() {
        bel.append(events.to_vec()).await.unwrap();
    }
    bel
}

async fn all(bel: &dyn BelSink) -> Vec<BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

/// The outputs of a run's task, as strings.
fn outputs_of(state: &BuildState, run: &str) -> Vec<String> {
    state
        .run(run)
        .and_then(|r| r.task.config.as_ref())
        .map(|c| c.outputs.iter().map(|o| o.str.clone()).collect())
        .unwrap_or_default()
}

fn chain() -> Vec<TestJob> {
    vec![job("a", &[]), job("b", &["a"]), job("c", &["b"])]
}

/// Cut a real build of three jobs times two keys at every batch boundary;
/// make each open started run, at random, never launched, still running or
/// ended meanwhile; start a new orchestrator on the prefix. The resumed
/// request builds everything, every partition's job ran exactly once over
/// both orchestrators, and no job run id was launched twice.
#[tokio::test(start_paused = true)]
async fn every_crash_point_resumes_without_running_anything_twice() {
    // Where each batch ends: the only places a crash can cut the log.
    let sink = MemoryBel::new();
    let batch_ends = Arc::new(Mutex::new(Vec::new()));
    let recorded = {
        let ends = Arc::clone(&batch_ends);
        HookedSink::new(Arc::new(sink.clone()))
            .after_append(move |range| ends.lock().unwrap().push(range.last))
    };
    let first = ScriptedExecutor::with_script(|_| Script::succeed());
    let o = orchestrator(Arc::new(recorded), chain(), &first, "id", |b| {
        b.parallelism(2)
    });
    let requested = [r("c/1"), r("c/2")];
    assert!(o.build(&requested).await.unwrap().succeeded());
    let full = all(&sink).await;
    let ends = batch_ends.lock().unwrap().clone();
    let mut seen = BTreeMap::<&str, u32>::new();
    for (cut, &end) in ends.iter().enumerate() {
        let prefix = &full[..end as usize];
        let before = BuildState::replay(prefix).unwrap();
        // Which started runs outlived the first orchestrator, and how.
        let mut survivors = Vec::new();
        let mut never_launched = BTreeSet::new();
        for run in before.runs() {
            let pick = (cut * 7
                + run.job_run_id.len() * 3
                + run.job_run_id.bytes().map(usize::from).sum::<usize>())
                % 3;
            match (run.state, pick) {
                (RunState::Scheduled, 0) => {
                    never_launched.insert(run.job_run_id.clone());
                    *seen.entry("never launched").or_default() += 1;
                }
                (RunState::Scheduled | RunState::Running, 1) => {
                    survivors.push((run.job_run_id.clone(), None));
                    *seen.entry("still running").or_default() += 1;
                }
                (RunState::Scheduled | RunState::Running, _) => {
                    survivors.push((
                        run.job_run_id.clone(),
                        Some(Outcome::Succeeded {
                            manifest: Vec::new(),
                        }),
                    ));
                    *seen.entry("ended meanwhile").or_default() += 1;
                }
                (RunState::Queued, _) => *seen.entry("queued").or_default() += 1,
                _ => {}
            }
        }
        let running: Vec<String> = survivors
            .iter()
            .filter(|(_, end)| end.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let survived: BTreeSet<String> = survivors.iter().map(|(id, _)| id.clone()).collect();
        let second = ScriptedExecutor::with_script(|_| Script::succeed()).survivors(survivors);
        let bel = log_of(prefix).await;
        let o2 = orchestrator(Arc::new(bel.clone()), chain(), &second, "second", |b| {
            b.parallelism(2)
        });
        o2.load().await.unwrap();
        for id in &running {
            assert!(
                second.control(id).succeed(),
                "cut {cut}: {id} was re-attached"
            );
        }
        let resumed = o2.resumed();
        let open = before.requests().any(|q| !q.is_terminal());
        assert_eq!(resumed.len(), usize::from(open), "cut {cut}");
        for handle in resumed {
            assert_eq!(handle.build_request_id(), "id-1", "cut {cut}");
            let outcome = handle.outcome().await.unwrap();
            assert!(outcome.succeeded(), "cut {cut}: {outcome:?}");
        }
        let again = o2.build(&requested).await.unwrap();
        assert!(again.succeeded() && again.built.is_empty(), "cut {cut}");

        let events = all(&bel).await;
        check_log(&events).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let after = BuildState::replay(&events).unwrap();
        assert_eq!(
            after,
            o2.state(),
            "cut {cut}: the log rebuilds the live state"
        );
        let launched = second.launched();
        // Queued and never-launched runs keep their ids; nothing the first
        // orchestrator started or ended is launched again.
        for run in before.runs() {
            let id = &run.job_run_id;
            let again = launched.contains(id);
            match run.state {
                RunState::Queued => assert!(again, "cut {cut}: queued {id} launched"),
                RunState::Scheduled if never_launched.contains(id) => {
                    assert!(again, "cut {cut}: scheduled {id} launched under its id");
                }
                _ => assert!(!again, "cut {cut}: {id} launched twice"),
            }
        }
        assert_eq!(
            second.reattached().into_iter().collect::<BTreeSet<_>>(),
            survived,
            "cut {cut}"
        );
        // Every partition's job ran exactly once over both orchestrators.
        let mut ran: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for run in before.runs() {
            let executed = run.state == RunState::Succeeded || survived.contains(&run.job_run_id);
            if executed {
                for o in outputs_of(&before, &run.job_run_id) {
                    ran.entry(o).or_default().push(run.job_run_id.clone());
                }
            }
        }
        for id in &launched {
            for o in outputs_of(&after, id) {
                ran.entry(o).or_default().push(id.clone());
            }
        }
        assert_eq!(ran.len(), 6, "cut {cut}: {ran:?}");
        for (o, runs) in &ran {
            assert_eq!(runs.len(), 1, "cut {cut}: {o} ran {runs:?}");
        }
        // The resumed request was not received twice.
        let received = events
            .iter()
            .filter(|e| e.kind() == "build_request_received" && e.build_request_id == "id-1")
            .count();
        assert_eq!(received, 1, "cut {cut}");
    }
    println!("crash points: {} cuts, {seen:?}", ends.len());
    for kind in [
        "never launched",
        "still running",
        "ended meanwhile",
        "queued",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never drawn: {seen:?}"
        );
    }
}

/// DESIGN.md: a restart with 100 queued tasks and a pool of 2 never has
/// more than 2 running, and reaches 2.
#[tokio::test(start_paused = true)]
async fn a_restart_with_100_queued_runs_and_a_pool_of_2_keeps_the_limit() {
    let pooled = || vec![job("a", &[]).hints(|h| h.pool = Some("p".into()))];
    let first = ScriptedExecutor::with_script(|_| Script::Hang);
    let sink = MemoryBel::new();
    let o = orchestrator(Arc::new(sink.clone()), pooled(), &first, "id", |b| {
        b.pool("p", 2).parallelism(8)
    });
    let requested: Vec<PartitionRef> = (0..100).map(|i| r(&format!("a/{i}"))).collect();
    let _crashed = o.start(&requested, BuildOptions::default());
    until(|| first.running().len() == 2).await;
    let prefix = all(&sink).await;
    let before = BuildState::replay(&prefix).unwrap();
    let queued: BTreeSet<String> = before
        .runs()
        .filter(|r| r.state == RunState::Queued)
        .map(|r| r.job_run_id.clone())
        .collect();
    assert_eq!(queued.len(), 98);
    let started: Vec<String> = first.running();

    let second = ScriptedExecutor::with_script(|_| Script::succeed())
        .survivors(started.iter().map(|id| (id.clone(), None)));
    let bel = log_of(&prefix).await;
    let o2 = orchestrator(Arc::new(bel.clone()), pooled(), &second, "second", |b| {
        b.pool("p", 2).parallelism(8)
    });
    o2.load().await.unwrap();
    let resumed = o2.resumed();
    assert_eq!(resumed.len(), 1);
    // The re-attached runs hold the pool: nothing else starts.
    until(|| o2.slots_in_use().1.get("p") == Some(&2)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(second.launched().is_empty(), "{:?}", second.launched());
    for id in &started {
        second.control(id).succeed();
    }
    let outcome = resumed.into_iter().next().unwrap().outcome().await.unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.built.len(), 100);
    // The queued runs ran under their own ids; no run was queued again.
    let launched: BTreeSet<String> = second.launched().into_iter().collect();
    assert_eq!(launched, queued);
    let events = all(&bel).await;
    check_log(&events).unwrap();
    let requeued = events[prefix.len()..]
        .iter()
        .filter(|e| e.kind() == "job_run_queued")
        .count();
    assert_eq!(requeued, 0);
    // At most two runs were ever scheduled or running at once, and two were.
    let mut live: HashMap<String, ()> = started.iter().map(|id| (id.clone(), ())).collect();
    let mut most = live.len();
    for e in &events[prefix.len()..] {
        match &e.event {
            Some(Event::JobScheduled(s)) => {
                live.insert(s.job_run_id.clone(), ());
            }
            Some(
                Event::JobRunSucceeded(_)
                | Event::JobRunFailed(_)
                | Event::JobRunCanceled(_)
                | Event::JobRunLost(_),
            ) => {
                live.remove(&e.job_run_id);
            }
            _ => {}
        }
        most = most.max(live.len());
    }
    assert_eq!(most, 2);
}

/// An executor that cannot recover runs: the started runs are lost, and
/// the resumed request runs their tasks again as the next attempt.
#[tokio::test(start_paused = true)]
async fn lost_runs_run_again_as_the_next_attempt_of_the_resumed_request() {
    let first = ScriptedExecutor::with_script(|_| Script::Hang);
    let sink = MemoryBel::new();
    let o = orchestrator(
        Arc::new(sink.clone()),
        vec![job("a", &[])],
        &first,
        "id",
        |b| b,
    );
    let _crashed = o.start(&[r("a/1"), r("a/2")], BuildOptions::default());
    until(|| first.running().len() == 2).await;
    let prefix = all(&sink).await;
    let lost = first.running();

    let second = ScriptedExecutor::with_script(|_| Script::succeed());
    let bel = log_of(&prefix).await;
    let o2 = orchestrator(
        Arc::new(bel.clone()),
        vec![job("a", &[])],
        &second,
        "second",
        |b| b,
    );
    o2.load().await.unwrap();
    for id in &lost {
        assert_eq!(o2.state().run(id).unwrap().state, RunState::Lost);
    }
    let resumed = o2.resumed();
    assert_eq!(resumed.len(), 1);
    let outcome = resumed.into_iter().next().unwrap().outcome().await.unwrap();
    assert_eq!(outcome.build_request_id, "id-1");
    assert_eq!(outcome.built, [r("a/1"), r("a/2")]);
    let state = o2.state();
    for id in second.launched() {
        let run = state.run(&id).unwrap();
        assert_eq!(run.attempt, 2, "{id}");
        assert!(
            lost.contains(run.previous_job_run_id.as_ref().unwrap()),
            "{id} follows a lost run"
        );
    }
    assert_eq!(second.launched().len(), 2);
    let events = all(&bel).await;
    check_log(&events).unwrap();
    assert_eq!(BuildState::replay(&events).unwrap(), o2.state());
}

/// A request that was being cancelled is closed, not resumed: its started
/// runs are re-attached and asked again to stop, and their end is
/// recorded.
#[tokio::test(start_paused = true)]
async fn a_request_cancelled_before_the_restart_is_closed_and_its_kills_sent_again() {
    let first = ScriptedExecutor::with_script(|_| Script::Hang).confirm_cancels(false);
    let sink = MemoryBel::new();
    let o = orchestrator(
        Arc::new(sink.clone()),
        vec![job("a", &[])],
        &first,
        "id",
        |b| b,
    );
    let handle = o.start(&[r("a/1")], BuildOptions::default());
    until(|| first.running().len() == 1).await;
    handle.cancel("enough");
    let started = first.running();
    until(|| first.control(&started[0]).cancel_requested().is_some()).await;
    let prefix = all(&sink).await;

    let second = ScriptedExecutor::with_script(|_| Script::succeed())
        .confirm_cancels(false)
        .survivors([(started[0].clone(), None)]);
    let bel = log_of(&prefix).await;
    let o2 = orchestrator(
        Arc::new(bel.clone()),
        vec![job("a", &[])],
        &second,
        "second",
        |b| b,
    );
    o2.load().await.unwrap();
    assert!(o2.resumed().is_empty());
    let run = second.control(&started[0]);
    assert!(run.cancel_requested().is_some(), "the kill was sent again");
    assert!(run.confirm_cancel());
    until(|| {
        o2.state()
            .run(&started[0])
            .is_some_and(|r| r.state == RunState::Canceled)
    })
    .await;
    let state = o2.state();
    assert_eq!(
        state.request("id-1").unwrap().state,
        databuild_core::state::RequestState::Failed
    );
    assert_eq!(
        state.partition(&r("a/1")).unwrap().status,
        PartitionStatus::Failed
    );
    assert!(second.launched().is_empty());
    check_log(&all(&bel).await).unwrap();
}
