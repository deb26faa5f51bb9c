//! MissingDeps (seed 000): dependencies found at run time are planned and
//! built under the same request, then the job runs again (not a retry).

use databuild_core::job::protocol::MissingDeps;
use databuild_core::proto::build_event::Event;
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{JobRunSpec, Outcome};

use super::*;

/// A script where each job named in `needs` reports the partition given
/// there (with the same key) missing until its config has it as input.
fn discovering(needs: &'static [(&'static str, &'static str)]) -> ScriptedExecutor {
    ScriptedExecutor::with_script(move |spec: &JobRunSpec| {
        let out = spec.config.outputs[0].as_str();
        let (name, key) = out.split_once('/').unwrap();
        for (job, input) in needs {
            let want = r(&format!("{input}/{key}"));
            if *job == name && !spec.config.inputs.iter().any(|d| d.partition == want) {
                return Script::Exit(Outcome::MissingDeps {
                    missing_deps: vec![MissingDeps {
                        impacted: spec.config.outputs.clone(),
                        missing: vec![want],
                    }],
                    exit: None,
                });
            }
        }
        Script::succeed()
    })
}

fn missing_path() -> Vec<&'static str> {
    vec![
        "job_run_queued",
        "job_scheduled",
        "partition_status_changed",
        "job_run_config_validated",
        "job_run_running",
        "job_run_missing_deps",
    ]
}

fn queued_by_id(events: &[BuildEvent], run: &str) -> (u32, String, Vec<String>) {
    events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::JobRunQueued(q)) if e.job_run_id == run => {
                let config = q.task.as_ref().unwrap().config.as_ref().unwrap();
                Some((
                    q.attempt,
                    q.previous_job_run_id.clone(),
                    config
                        .inputs
                        .iter()
                        .map(|d| d.partition_ref.as_ref().unwrap().str.clone())
                        .collect(),
                ))
            }
            _ => None,
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn discovered_two_levels_deep() {
    let rig = rig(
        vec![job("a", &[]), job("b", &[]), job("c", &[])],
        discovering(&[("c", "b"), ("b", "a")]),
    );
    let outcome = rig.o.build(&[r("c/1")]).await.unwrap();
    assert!(outcome.succeeded(), "{:?}", outcome.not_built);
    let mut built = outcome.built.clone();
    built.sort();
    assert_eq!(built, [r("a/1"), r("b/1"), r("c/1")]);
    let events = rig.log().await;
    let runs = queued(&events);
    assert_eq!(runs.len(), 5, "c, b, a, b again, c again: {runs:?}");
    let (c1, b1, a1, b2, c2) = (&runs[0], &runs[1], &runs[2], &runs[3], &runs[4]);
    assert_eq!(run_kinds(&events, c1), missing_path());
    assert_eq!(run_kinds(&events, b1), missing_path());
    assert_eq!(run_kinds(&events, a1), SUCCESS);
    assert_eq!(run_kinds(&events, b2), SUCCESS);
    assert_eq!(run_kinds(&events, c2), SUCCESS);
    // Reruns keep the attempt, link the run they follow, and read what was
    // found.
    assert_eq!(
        queued_by_id(&events, b2),
        (1, b1.clone(), vec!["a/1".into()])
    );
    assert_eq!(
        queued_by_id(&events, c2),
        (1, c1.clone(), vec!["b/1".into()])
    );
    // Each discovery is an analysis of its own under the request.
    let analyses = events
        .iter()
        .filter(|e| e.kind() == "analyze_started")
        .count();
    assert_eq!(analyses, 3);
}

#[tokio::test(start_paused = true)]
async fn a_discovered_cycle_fails_the_task() {
    // a needs b at run time, and b's config reads a.
    let rig = rig(
        vec![job("a", &[]), job("b", &["a"])],
        discovering(&[("a", "b")]),
    );
    let outcome = rig.o.build(&[r("a/1")]).await.unwrap();
    assert!(!outcome.succeeded());
    let reason = &outcome.not_built[0].reason;
    assert!(
        reason.contains("cannot be built") && reason.contains("cycle"),
        "{reason}"
    );
    let events = rig.log().await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert!(kinds.contains(&"cycle_detected"), "{kinds:?}");
    assert_eq!(queued(&events).len(), 1, "nothing else ran");
}

#[tokio::test(start_paused = true)]
async fn a_missing_ref_no_job_produces_is_a_failure_naming_it() {
    let rig = rig(vec![job("a", &[])], discovering(&[("a", "nobody")]));
    let outcome = rig.o.build(&[r("a/1")]).await.unwrap();
    let reason = &outcome.not_built[0].reason;
    assert!(reason.contains("nobody/1"), "{reason}");
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn a_ref_available_before_the_run_cannot_help() {
    let rig = rig(
        vec![job("a", &[]), job("b", &[])],
        discovering(&[("b", "a")]),
    );
    assert!(rig.o.build(&[r("a/1")]).await.unwrap().succeeded());
    let outcome = rig.o.build(&[r("b/1")]).await.unwrap();
    let reason = &outcome.not_built[0].reason;
    assert!(
        reason.contains("a/1") && reason.contains("available when the run started"),
        "{reason}"
    );
    rig.log().await;
}

#[tokio::test(start_paused = true)]
async fn reruns_are_bounded() {
    // b reports a new missing ref on every run.
    let executor = ScriptedExecutor::with_script(|spec: &JobRunSpec| {
        if spec.job.as_str() == "//b" {
            let n = spec.config.inputs.len();
            return Script::Exit(Outcome::MissingDeps {
                missing_deps: vec![MissingDeps {
                    impacted: spec.config.outputs.clone(),
                    missing: vec![r(&format!("a/{n}"))],
                }],
                exit: None,
            });
        }
        Script::succeed()
    });
    let rig = rig_with(vec![job("a", &[]), job("b", &[])], executor, |b| {
        b.settings(OrchestratorSettings::default().max_missing_deps_reruns(2))
    });
    let outcome = rig.o.build(&[r("b/1")]).await.unwrap();
    let reason = &outcome.not_built[0].reason;
    assert!(reason.contains("after 2 reruns"), "{reason}");
    let events = rig.log().await;
    let b_runs = events
        .iter()
        .filter(|e| match &e.event {
            Some(Event::JobRunQueued(q)) => {
                q.task.as_ref().unwrap().job.as_ref().unwrap().label == "//b"
            }
            _ => false,
        })
        .count();
    assert_eq!(b_runs, 3, "the first run and two reruns");
}
