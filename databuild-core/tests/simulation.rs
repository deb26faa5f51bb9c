//! Deterministic simulation of the orchestrator (issue #7): the scripted
//! executor, tokio's paused clock, and a seeded random number generator.
//!
//! Each scenario draws a random graph (a few jobs, each reading some of the
//! ones before it, over a few keys), random outcomes for every launch
//! (success, task failure, missing deps found at run time, a hang that
//! stops beating and is declared Lost, a refused launch), random retry
//! policies, concurrent requests (fail-fast or keep-going), random cancels,
//! and, in some, a crash: the log is cut at a random batch boundary and a
//! new orchestrator resumes it, with each run the first one started drawn
//! as still running, ended meanwhile, or gone.
//!
//! After each scenario: every request ended; no job run id was launched
//! twice (over both orchestrators); no pool slot is still held; the state
//! replayed from the log equals the live state; the log passes the
//! state-diagram checker.
//!
//! `SIM_SCENARIOS` (default 2,000) sets how many run; a failing scenario
//! prints its seed, and `SIM_SEED=<seed>` replays that one:
//!
//! ```text
//! SIM_SEED=1234 cargo test -p databuild-core --features testkit --test simulation -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use databuild_core::bel::check::check_log;
use databuild_core::clock::SequentialIds;
use databuild_core::executor::{ExitStatus, Outcome};
use databuild_core::job::protocol::MissingDeps;
use databuild_core::state::{BuildState, RunState};
use databuild_core::testkit::hooked::HookedSink;
use databuild_core::testkit::jobs::TestJob;
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{
    BelSink, BuildEvent, BuildOptions, EventFilter, Graph, MemoryBel, Orchestrator,
    OrchestratorSettings, PartitionRef,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often each thing happened over the run, by name.
type Tally = Arc<Mutex<BTreeMap<&'static str, u64>>>;

fn count(tally: &Tally, what: &'static str) {
    *tally.lock().unwrap().entry(what).or_default() += 1;
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

/// A random graph: `j0 .. j{n-1}`, each reading up to two jobs before it.
struct Shape {
    jobs: Vec<(String, Vec<String>, u32)>,
    keys: u32,
}

impl Shape {
    fn draw(rng: &mut StdRng) -> Self {
        let n = rng.random_range(2..=5);
        let mut jobs = Vec::new();
        for i in 0..n {
            let mut inputs = BTreeSet::new();
            if i > 0 {
                for _ in 0..rng.random_range(0..=2) {
                    inputs.insert(format!("j{}", rng.random_range(0..i)));
                }
            }
            let attempts = rng.random_range(1..=3);
            jobs.push((format!("j{i}"), inputs.into_iter().collect(), attempts));
        }
        Self {
            jobs,
            keys: rng.random_range(1..=3),
        }
    }

    fn jobs(&self) -> Vec<TestJob> {
        self.jobs
            .iter()
            .map(|(name, inputs, attempts)| {
                let job = inputs
                    .iter()
                    .fold(TestJob::argv(name, vec![format!("/bin/{name}")]), |j, i| {
                        j.reads(i)
                    });
                let attempts = *attempts;
                job.hints(move |h| {
                    h.retry.max_attempts = attempts;
                    h.retry.initial_backoff = Duration::from_millis(100);
                })
            })
            .collect()
    }
}

fn orchestrator(
    bel: Arc<dyn BelSink>,
    shape: &Shape,
    executor: &ScriptedExecutor,
    ids: &str,
) -> Orchestrator {
    let mut g = Graph::builder();
    for j in shape.jobs() {
        g = g.job(j);
    }
    Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(bel)
        .executor(Arc::new(executor.clone()))
        .ids(Arc::new(SequentialIds::new(ids)))
        .state_dir(std::env::temp_dir().join("databuild-simulation"))
        .parallelism(3)
        .settings(
            OrchestratorSettings::default()
                .liveness_timeout(Duration::from_secs(10))
                .kill_grace(Duration::from_secs(5)),
        )
        .build()
        .unwrap()
}

/// The executor: each launch's outcome drawn from the scenario's generator.
fn executor(rng: Arc<Mutex<StdRng>>, tally: Tally) -> ScriptedExecutor {
    ScriptedExecutor::with_script(move |spec| {
        let mut rng = rng.lock().unwrap();
        let roll: u32 = rng.random_range(0..100);
        let output = spec.config.outputs[0].clone();
        let key = output.as_str().split_once('/').map_or("", |(_, k)| k);
        let job = spec.job.as_str().trim_start_matches("//");
        match roll {
            0..=59 => {
                count(&tally, "success");
                Script::succeed()
            }
            60..=71 => {
                count(&tally, "failure");
                Script::fail("drawn to fail")
            }
            72..=79 if job != "j0" => {
                count(&tally, "missing deps");
                Script::Exit(Outcome::MissingDeps {
                    missing_deps: vec![MissingDeps {
                        impacted: spec.config.outputs.clone(),
                        missing: vec![r(&format!("j0/{key}"))],
                    }],
                    exit: Some(ExitStatus::Code(0)),
                })
            }
            80..=89 => {
                count(&tally, "hang (heartbeat loss)");
                Script::Hang
            }
            90..=94 => {
                count(&tally, "launch refused");
                Script::Refuse {
                    reason: "drawn to refuse".into(),
                    retryable: true,
                }
            }
            _ => {
                count(&tally, "success");
                Script::succeed()
            }
        }
    })
    .reports_heartbeats(true)
}

async fn all(bel: &dyn BelSink) -> Vec<BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

/// The invariants every orchestrator's log and state must keep.
async fn check(seed: u64, o: &Orchestrator, bel: &dyn BelSink, launched: &[String]) {
    let events = all(bel).await;
    if std::env::var("SIM_SEED").is_ok() {
        for e in &events {
            println!(
                "{:>4} {:>8} req {:<8} run {:<10} {}",
                e.seq,
                e.timestamp_ns / 1_000_000,
                e.build_request_id,
                e.job_run_id,
                e.kind()
            );
        }
    }
    check_log(&events).unwrap_or_else(|e| panic!("seed {seed}: the checker refuses the log: {e}"));
    let replayed = BuildState::replay(&events).unwrap();
    assert_eq!(
        replayed,
        o.state(),
        "seed {seed}: the log rebuilds the live state"
    );
    let unique: BTreeSet<&String> = launched.iter().collect();
    assert_eq!(
        unique.len(),
        launched.len(),
        "seed {seed}: a run id launched twice"
    );
    for q in replayed.requests() {
        assert!(
            q.is_terminal(),
            "seed {seed}: request {} never ended",
            q.build_request_id
        );
    }
    for run in replayed.runs() {
        assert!(
            run.state.is_terminal(),
            "seed {seed}: run {} left {:?}",
            run.job_run_id,
            run.state
        );
    }
    let (held, pools) = o.slots_in_use();
    assert_eq!(held, 0, "seed {seed}: slots still held");
    assert!(pools.values().all(|n| *n == 0), "seed {seed}: {pools:?}");
}

async fn scenario(seed: u64, tally: Tally) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = Shape::draw(&mut rng);
    let outcomes = Arc::new(Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed)));
    let first = executor(Arc::clone(&outcomes), Arc::clone(&tally));
    let sink = MemoryBel::new();
    let batch_ends = Arc::new(Mutex::new(Vec::new()));
    let recorded = {
        let ends = Arc::clone(&batch_ends);
        HookedSink::new(Arc::new(sink.clone()))
            .after_append(move |range| ends.lock().unwrap().push(range.last))
    };
    let o = orchestrator(Arc::new(recorded), &shape, &first, "id");
    let last = &shape.jobs.last().unwrap().0;
    let requests = rng.random_range(1..=3);
    let mut handles = Vec::new();
    for _ in 0..requests {
        let key = rng.random_range(1..=shape.keys);
        let wanted = vec![r(&format!("{last}/{key}"))];
        let keep_going = rng.random_bool(0.3);
        handles.push(o.start(&wanted, BuildOptions::default().keep_going(keep_going)));
        count(&tally, "request");
    }
    if rng.random_bool(0.2) {
        let victim = handles[rng.random_range(0..handles.len())]
            .build_request_id()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
        if o.cancel(&victim, "drawn to cancel").is_ok() {
            count(&tally, "cancel");
        }
    }
    for h in handles {
        tokio::time::timeout(Duration::from_secs(24 * 3600), h.outcome())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a request never ended"))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    check(seed, &o, &sink, &first.launched()).await;

    // A crash: the log cut at a batch boundary, a new orchestrator on it.
    if !rng.random_bool(0.5) {
        return;
    }
    count(&tally, "restart");
    let ends = batch_ends.lock().unwrap().clone();
    let cut = ends[rng.random_range(0..ends.len())] as usize;
    let full = all(&sink).await;
    let prefix = &full[..cut];
    let before = BuildState::replay(prefix).unwrap();
    let mut survivors = Vec::new();
    let mut started_before = BTreeSet::new();
    for run in before.runs() {
        if matches!(run.state, RunState::Scheduled | RunState::Running) {
            match rng.random_range(0..3) {
                0 => {
                    count(&tally, "restart: still running");
                    survivors.push((run.job_run_id.clone(), None));
                }
                1 => {
                    count(&tally, "restart: ended meanwhile");
                    survivors.push((
                        run.job_run_id.clone(),
                        Some(Outcome::Succeeded {
                            manifest: Vec::new(),
                        }),
                    ));
                }
                _ => count(&tally, "restart: gone (lost or never launched)"),
            }
        }
        if run.state != RunState::Queued && run.state != RunState::Scheduled {
            started_before.insert(run.job_run_id.clone());
        }
    }
    let running: Vec<String> = survivors
        .iter()
        .filter(|(_, end)| end.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    let second = executor(outcomes, Arc::clone(&tally)).survivors(survivors);
    let bel = MemoryBel::new();
    if !prefix.is_empty() {
        bel.append(prefix.to_vec()).await.unwrap();
    }
    let o2 = orchestrator(Arc::new(bel.clone()), &shape, &second, "second");
    o2.load().await.unwrap();
    for id in &running {
        // Re-attached runs end as the generator says, later.
        let control = second.control(id);
        if rng.random_bool(0.5) {
            control.succeed();
        } else {
            control.fail("drawn to fail after the restart");
        }
    }
    for h in o2.resumed() {
        count(&tally, "resumed request");
        tokio::time::timeout(Duration::from_secs(24 * 3600), h.outcome())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a resumed request never ended"))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    // Runs of requests that were ending are followed to their end apart
    // from any request: wait (in virtual time) until the log says so.
    let settled = tokio::time::timeout(Duration::from_secs(3600), async {
        while o2.state().runs().any(|r| !r.state.is_terminal()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "seed {seed}: an adopted run never ended");
    let launched = second.launched();
    for id in &launched {
        assert!(
            !started_before.contains(id),
            "seed {seed}: {id} ran before the crash and was launched again"
        );
    }
    check(seed, &o2, &bel, &launched).await;
}

fn run_one(seed: u64, tally: &Tally) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let tally = Arc::clone(tally);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(scenario(seed, tally));
    }));
    if let Err(panic) = result {
        eprintln!(
            "simulation scenario {seed} failed; replay it with:\n  SIM_SEED={seed} cargo test -p databuild-core --features testkit --test simulation -- --nocapture"
        );
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn random_scenarios_keep_the_invariants() {
    let tally: Tally = Arc::default();
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed: u64 = seed.parse().expect("SIM_SEED is a number");
        run_one(seed, &tally);
        println!("scenario {seed}: {:?}", tally.lock().unwrap());
        return;
    }
    let scenarios: u64 = std::env::var("SIM_SCENARIOS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let base: u64 = 0x0dab_0b11;
    for i in 0..scenarios {
        run_one(base + i, &tally);
    }
    let tally = tally.lock().unwrap();
    println!("{scenarios} scenarios: {tally:?}");
    if scenarios >= 2_000 {
        for (what, n) in tally.iter() {
            assert!(*n >= 50, "{what} drawn only {n} times: {tally:?}");
        }
        for what in [
            "success",
            "failure",
            "missing deps",
            "hang (heartbeat loss)",
            "launch refused",
            "cancel",
            "restart",
            "restart: still running",
            "restart: ended meanwhile",
            "restart: gone (lost or never launched)",
        ] {
            assert!(tally.contains_key(what), "{what} never drawn: {tally:?}");
        }
    }
}
