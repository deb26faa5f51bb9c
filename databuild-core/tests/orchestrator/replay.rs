//! The live state and the state rebuilt from the log are the same code: for
//! random builds (random graph shapes, outcomes, retries, keep-going),
//! replaying the log up to any moment gives exactly the state the live
//! orchestrator had at that moment.

use databuild_core::executor::ExitStatus;
use databuild_core::job::RetryPolicy;
use databuild_core::job::protocol::MissingDeps;
use databuild_core::state::BuildState;
use databuild_core::testkit::scripted::ScriptedExecutor;
use databuild_core::{BuildOptions, Outcome};
use proptest::prelude::*;

use super::*;

/// What the test does with each launched run, drawn per run.
#[derive(Debug, Clone, Copy)]
enum Step {
    Succeed,
    Fail,
    /// A retryable failure that the retry policy may absorb.
    Flake,
    /// Reports `d/<key>` missing (once: the rerun has it as input).
    Missing,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Succeed),
        1 => Just(Step::Fail),
        2 => Just(Step::Flake),
        1 => Just(Step::Missing),
    ]
}

async fn scenario(width: usize, depth: usize, keep_going: bool, steps: Vec<Step>) {
    // Jobs j0 .. j<depth>, each reading the one below; plus `d`, which
    // runs only when discovered.
    let mut jobs = vec![job("d", &[])];
    for k in 0..depth {
        let below = format!("j{}", k.wrapping_sub(1));
        let inputs: Vec<&str> = if k == 0 { vec![] } else { vec![below.as_str()] };
        jobs.push(job(&format!("j{k}"), &inputs).hints(|h| {
            h.retry = RetryPolicy {
                max_attempts: 2,
                initial_backoff: std::time::Duration::from_millis(10),
                max_backoff: std::time::Duration::from_millis(10),
            };
        }));
    }
    let rig = rig(jobs, ScriptedExecutor::new());
    let requested: Vec<PartitionRef> = (0..width)
        .map(|w| r(&format!("j{}/{w}", depth - 1)))
        .collect();
    let build = rig
        .o
        .start(&requested, BuildOptions::default().keep_going(keep_going));
    let mut snapshots = vec![rig.o.state()];
    let mut steps = steps.into_iter().cycle();
    let mut build = Box::pin(build.outcome());
    loop {
        tokio::select! {
            outcome = &mut build => {
                outcome.unwrap();
                break;
            }
            run = rig.executor.next_launch() => {
                snapshots.push(rig.o.state());
                let spec = &run.spec;
                let key = spec.config.outputs[0].as_str().split('/').nth(1).unwrap().to_owned();
                let discovered = spec.config.inputs.iter().any(|i| i.partition.as_str().starts_with("d/"));
                match steps.next().unwrap() {
                    Step::Succeed => run.control.succeed(),
                    Step::Fail => run.control.exit(Outcome::Failed {
                        stage: databuild_core::proto::FailureStage::Task,
                        reason: "broken".into(),
                        exit: Some(ExitStatus::Code(2)),
                        retryable: false,
                    }),
                    Step::Flake => run.control.fail("flaky"),
                    Step::Missing if !discovered && !spec.job.as_str().ends_with("//d") => {
                        run.control.missing_deps(vec![MissingDeps {
                            impacted: spec.config.outputs.clone(),
                            missing: vec![r(&format!("d/{key}"))],
                        }])
                    }
                    Step::Missing => run.control.succeed(),
                };
                tokio::task::yield_now().await;
                snapshots.push(rig.o.state());
            }
        }
    }
    snapshots.push(rig.o.state());
    let events = rig.log().await;
    for snapshot in snapshots {
        let prefix = events.iter().take_while(|e| e.seq <= snapshot.last_seq());
        let replayed = BuildState::replay(prefix).unwrap();
        assert_eq!(
            replayed,
            snapshot,
            "replaying up to seq {} differs from the live state then",
            snapshot.last_seq()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replaying_any_prefix_gives_the_live_state_of_that_moment(
        width in 1usize..4,
        depth in 1usize..4,
        keep_going in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..12),
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(scenario(width, depth, keep_going, steps));
    }
}
