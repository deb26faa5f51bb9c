//! The orchestrator against the seed diagrams, on the scripted executor
//! with paused time: the exact events of every path a job run and a build
//! request can take.

mod buffering;
mod cancel;
mod catalog;
mod concurrent;
mod delegation;
mod faults;
mod missing_deps;
mod paths;
mod replay;
mod restart;
mod scheduling;

use std::sync::Arc;
use std::time::Duration;

use databuild_core::bel::check::check_log;
use databuild_core::clock::SequentialIds;
use databuild_core::state::BuildState;
use databuild_core::testkit::scripted::ScriptedExecutor;
use databuild_core::{
    BelSink, BuildEvent, EventFilter, Graph, JobConfig, MemoryBel, Orchestrator,
    OrchestratorSettings, PartitionRef,
};

pub(crate) fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

pub(crate) use databuild_core::testkit::jobs::TestJob;

/// A job planned in process whose runs go to the scripted executor:
/// produces `<name>/<key>`, one config per output, reading
/// `<input>/<key>` for each of its inputs.
pub(crate) fn job(name: &str, inputs: &[&str]) -> TestJob {
    inputs.iter().fold(
        TestJob::argv(name, vec![format!("/bin//{name}")]),
        |job, input| job.reads(input),
    )
}

/// An orchestrator over `jobs` with a memory BEL, sequential ids and the
/// given executor.
pub(crate) struct Rig {
    pub(crate) o: Orchestrator,
    pub(crate) bel: MemoryBel,
    pub(crate) executor: ScriptedExecutor,
    _dir: tempfile::TempDir,
}

pub(crate) fn rig(jobs: Vec<TestJob>, executor: ScriptedExecutor) -> Rig {
    rig_with(jobs, executor, |b| b)
}

pub(crate) fn rig_with(
    jobs: Vec<TestJob>,
    executor: ScriptedExecutor,
    f: impl FnOnce(
        databuild_core::orchestrator::OrchestratorBuilder,
    ) -> databuild_core::orchestrator::OrchestratorBuilder,
) -> Rig {
    let mut g = Graph::builder();
    for j in jobs {
        g = g.job(j);
    }
    let bel = MemoryBel::new();
    let dir = tempfile::tempdir().unwrap();
    let builder = Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(Arc::new(bel.clone()))
        .executor(Arc::new(executor.clone()))
        .ids(Arc::new(SequentialIds::new("id")))
        .state_dir(dir.path())
        .parallelism(4)
        .settings(
            OrchestratorSettings::default()
                .liveness_timeout(Duration::from_secs(10))
                .kill_grace(Duration::from_secs(5)),
        );
    Rig {
        o: f(builder).build().unwrap(),
        bel,
        executor,
        _dir: dir,
    }
}

impl Rig {
    /// The whole log, checked: the reducer accepts it and rebuilds the live
    /// state, and the analysis events follow the diagrams.
    pub(crate) async fn log(&self) -> Vec<BuildEvent> {
        let events = self
            .bel
            .read(0, &EventFilter::all(), usize::MAX)
            .await
            .unwrap();
        let replayed = BuildState::replay(&events).unwrap();
        assert_eq!(replayed, self.o.state(), "the log rebuilds the live state");
        check_log(&events).unwrap();
        events
    }
}

/// The kinds of one run's events, in order.
pub(crate) fn run_kinds(events: &[BuildEvent], run: &str) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| e.job_run_id == run)
        .map(|e| e.kind())
        .collect()
}

/// The kinds of request-level events (no job run), leaving out the
/// periodic and count events.
pub(crate) fn request_kinds(events: &[BuildEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| e.job_run_id.is_empty())
        .map(|e| e.kind())
        .filter(|k| !matches!(*k, "remaining_jobs" | "build_heartbeat"))
        .collect()
}

/// The ids of runs, in the order they were queued.
pub(crate) fn queued(events: &[BuildEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind() == "job_run_queued")
        .map(|e| e.job_run_id.clone())
        .collect()
}

/// The success path of one run, event by event.
pub(crate) const SUCCESS: &[&str] = &[
    "job_run_queued",
    "job_scheduled",
    "partition_status_changed",
    "job_run_config_validated",
    "job_run_running",
    "job_run_task_succeeded",
    "job_run_succeeded",
    "partition_status_changed",
];

/// Waits (on paused time, yielding) until `f` holds.
pub(crate) async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if f() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never held");
}
