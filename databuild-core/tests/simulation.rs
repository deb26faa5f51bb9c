//! Deterministic simulation of the orchestrator (issues #7 and #18): the
//! scripted executor, tokio's paused clock, and a seeded random number
//! generator.
//!
//! Each scenario draws a random graph (a few jobs, each reading some of the
//! ones before it, over a few keys; in half of them every job's `config`
//! call takes simulated time), random outcomes for every launch (success,
//! task failure, missing deps found at run time, a hang that stops beating
//! and is declared Lost, a refused launch), each ending at once or after a
//! drawn run time, random retry policies, and requests started in one
//! instant, with no await between them (fail-fast or keep-going): one to
//! three for the last job, or a burst of two to ten for partitions of
//! random jobs, which share their upstreams. Then random cancels; in some,
//! a second round: partitions already built are tainted and asked for again
//! together with forced rebuilds; and, in some, a crash: the log is cut at
//! a batch boundary (in some, one where several requests are open and one
//! is planning) and a new orchestrator resumes it, with each run the first
//! one started drawn as still running, ended meanwhile, or gone, and, in
//! some, a new request for what a resumed one asked started at once beside
//! them.
//!
//! After each scenario: the log passes the log checker (the state diagrams
//! and the exactly-once promise, `bel::check::check_log`); the executor's
//! own record keeps the promise too: no two runs of one partition (by the
//! outputs each run was launched with) are live at the executor at once,
//! and no partition is built twice in one availability epoch (epochs end at
//! the log's `Tainted`; a forced request may rebuild what it asked for; a
//! success the log did not accept, its run lost, failed or cancelled, built
//! nothing); every request ended; no job run id was launched twice (over
//! both orchestrators); no pool slot is still held; the state replayed from
//! the log equals the live state.
//!
//! `SIM_SCENARIOS` (default 2,000) sets how many run. Every scenario runs;
//! the failing ones are listed at the end, and `SIM_SEED=<seed>` replays
//! one, printing its log:
//!
//! ```text
//! SIM_SEED=1234 cargo test -p databuild-core --features testkit --test simulation -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use databuild_core::bel::Event;
use databuild_core::bel::check::check_log;
use databuild_core::clock::SequentialIds;
use databuild_core::executor::{ExitStatus, Outcome};
use databuild_core::job::protocol::MissingDeps;
use databuild_core::proto::PartitionStatus;
use databuild_core::state::{BuildState, RequestState, RunState};
use databuild_core::testkit::hooked::HookedSink;
use databuild_core::testkit::jobs::TestJob;
use databuild_core::testkit::scripted::{Mark, RunRecord, Script, ScriptedExecutor};
use databuild_core::{
    BelSink, BuildEvent, BuildOptions, EventFilter, Graph, MemoryBel, Orchestrator,
    OrchestratorSettings, PartitionRef,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The length of the longest log the running scenario checked, so that a
/// failure can point at a short scenario to replay.
static LOG_LENGTH: AtomicUsize = AtomicUsize::new(0);

/// How often each thing happened over the run, by name.
type Tally = Arc<Mutex<BTreeMap<&'static str, u64>>>;

fn count(tally: &Tally, what: &'static str) {
    *tally.lock().unwrap().entry(what).or_default() += 1;
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

/// One job of a drawn graph.
struct JobShape {
    name: String,
    inputs: Vec<String>,
    attempts: u32,
    config_latency: Duration,
}

/// A random graph: `j0 .. j{n-1}`, each reading up to two jobs before it.
struct Shape {
    jobs: Vec<JobShape>,
    keys: u32,
}

impl Shape {
    fn draw(rng: &mut StdRng, tally: &Tally) -> Self {
        let n = rng.random_range(2..=5);
        let slow_config = rng.random_bool(0.5);
        if slow_config {
            count(tally, "slow config calls");
        }
        let mut jobs = Vec::new();
        for i in 0..n {
            let mut inputs = BTreeSet::new();
            if i > 0 {
                for _ in 0..rng.random_range(0..=2) {
                    inputs.insert(format!("j{}", rng.random_range(0..i)));
                }
            }
            let attempts = rng.random_range(1..=3);
            let config_latency = if slow_config {
                Duration::from_millis(rng.random_range(1..=200))
            } else {
                Duration::ZERO
            };
            jobs.push(JobShape {
                name: format!("j{i}"),
                inputs: inputs.into_iter().collect(),
                attempts,
                config_latency,
            });
        }
        Self {
            jobs,
            keys: rng.random_range(1..=3),
        }
    }

    fn jobs(&self) -> Vec<TestJob> {
        self.jobs
            .iter()
            .map(|shape| {
                let job = shape.inputs.iter().fold(
                    TestJob::argv(&shape.name, vec![format!("/bin/{}", shape.name)]),
                    |j, i| j.reads(i),
                );
                let attempts = shape.attempts;
                job.config_latency(shape.config_latency).hints(move |h| {
                    h.retry.max_attempts = attempts;
                    h.retry.initial_backoff = Duration::from_millis(100);
                })
            })
            .collect()
    }

    /// `job` and the jobs it reads, directly or not.
    fn closure(&self, job: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::from([job.to_owned()]);
        let mut todo = vec![job.to_owned()];
        while let Some(j) = todo.pop() {
            let shape = self.jobs.iter().find(|s| s.name == j).unwrap();
            for i in &shape.inputs {
                if seen.insert(i.clone()) {
                    todo.push(i.clone());
                }
            }
        }
        seen
    }

    /// A random partition of a random job.
    fn draw_partition(&self, rng: &mut StdRng) -> (String, u32) {
        let job = &self.jobs[rng.random_range(0..self.jobs.len())].name;
        (job.clone(), rng.random_range(1..=self.keys))
    }
}

/// An orchestrator on `sink` (its appends recorded in `appends`) and
/// `executor`, its ids made with the prefix `ids`.
fn orchestrator(
    sink: &MemoryBel,
    appends: &Appends,
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
        .bel(Arc::new(recorded(sink, executor, appends)))
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

/// The executor: each launch's outcome, and how long the run takes to
/// reach it, drawn from the scenario's generator.
fn executor(rng: Arc<Mutex<StdRng>>, tally: Tally) -> ScriptedExecutor {
    ScriptedExecutor::with_script(move |spec| {
        let mut rng = rng.lock().unwrap();
        let roll: u32 = rng.random_range(0..100);
        // Half the runs end at once, the others after up to 3 s (well
        // within the liveness timeout).
        let after = if rng.random_bool(0.5) {
            Duration::ZERO
        } else {
            Duration::from_millis(rng.random_range(1..=3_000))
        };
        let output = spec.config.outputs[0].clone();
        let key = output.as_str().split_once('/').map_or("", |(_, k)| k);
        let job = spec.job.as_str().trim_start_matches("//");
        let ends = |outcome: Outcome| {
            if after.is_zero() {
                Script::Exit(outcome)
            } else {
                Script::ExitAfter { after, outcome }
            }
        };
        let success = || {
            ends(Outcome::Succeeded {
                manifest: Vec::new(),
            })
        };
        match roll {
            0..=59 => {
                count(&tally, "success");
                success()
            }
            60..=71 => {
                count(&tally, "failure");
                ends(Outcome::task_failed(
                    "drawn to fail",
                    Some(ExitStatus::Code(1)),
                ))
            }
            72..=79 if job != "j0" => {
                count(&tally, "missing deps");
                ends(Outcome::MissingDeps {
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
                success()
            }
        }
    })
    .reports_heartbeats(true)
}

/// The log's appends placed in the executor's order: the last seq of each
/// batch, and the executor's mark taken right after it was stored.
type Appends = Arc<Mutex<Vec<(u64, Mark)>>>;

/// `sink`, recording each append in `appends`.
fn recorded(sink: &MemoryBel, executor: &ScriptedExecutor, appends: &Appends) -> HookedSink {
    let executor = executor.clone();
    let appends = Arc::clone(appends);
    HookedSink::new(Arc::new(sink.clone())).after_append(move |range| {
        appends.lock().unwrap().push((range.last, executor.mark()));
    })
}

async fn all(bel: &dyn BelSink) -> Vec<BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

async fn wait(seed: u64, handles: Vec<databuild_core::BuildHandle>) {
    for h in handles {
        tokio::time::timeout(Duration::from_secs(24 * 3600), h.outcome())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a request never ended"))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// One orchestrator's part of a scenario, to be checked.
struct Phase<'a> {
    orchestrator: &'a Orchestrator,
    bel: &'a dyn BelSink,
    executor: &'a ScriptedExecutor,
    appends: &'a Appends,
    /// How many events of the log came before this orchestrator (a
    /// crash's prefix).
    prefix: usize,
}

/// What a printed event says besides its kind, for the events that bear on
/// exactly-once.
fn detail(e: &BuildEvent) -> String {
    match &e.event {
        Some(Event::PartitionStatusChanged(p)) => format!(
            " {} {:?}",
            p.partition.as_ref().map_or("", |p| p.str.as_str()),
            PartitionStatus::try_from(p.status).unwrap_or(PartitionStatus::Unspecified),
        ),
        Some(Event::BuildRequestReceived(q)) => {
            let asked: Vec<&str> = q.requested.iter().map(|p| p.str.as_str()).collect();
            let force = q.options.is_some_and(|o| o.force);
            format!(
                " {}{}",
                asked.join(","),
                if force { " (force)" } else { "" }
            )
        }
        _ => String::new(),
    }
}

/// The invariants every orchestrator's log, state and runs must keep.
async fn check(seed: u64, phase: &Phase<'_>) {
    let events = all(phase.bel).await;
    LOG_LENGTH.fetch_max(events.len(), Ordering::Relaxed);
    if std::env::var("SIM_SEED").is_ok() {
        if phase.prefix > 0 {
            println!("(a restart on the log cut after seq {})", phase.prefix);
        }
        for e in &events {
            println!(
                "{:>4} {:>8} req {:<8} run {:<10} {}{}",
                e.seq,
                e.timestamp_ns / 1_000_000,
                e.build_request_id,
                e.job_run_id,
                e.kind(),
                detail(e),
            );
        }
    }
    let history = phase.executor.history();
    let mut broken = Vec::new();
    if let Err(e) = check_log(&events) {
        broken.push(format!("the log checker refuses the log: {e}"));
    }
    let appends = phase.appends.lock().unwrap().clone();
    if let Err(e) = executor_keeps_exactly_once(&events, &history, &appends, phase.prefix) {
        broken.push(format!("the executor's record breaks exactly-once: {e}"));
    }
    assert!(broken.is_empty(), "seed {seed}: {}", broken.join("; "));
    let replayed = BuildState::replay(&events).unwrap();
    assert_eq!(
        replayed,
        phase.orchestrator.state(),
        "seed {seed}: the log rebuilds the live state"
    );
    let launched = phase.executor.launched();
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
    let (held, pools) = phase.orchestrator.slots_in_use();
    assert_eq!(held, 0, "seed {seed}: slots still held");
    assert!(pools.values().all(|n| *n == 0), "seed {seed}: {pools:?}");
}

/// What the log says that the executor's record is read against.
#[derive(Default)]
struct LogFacts<'a> {
    /// How each run ended (the terminal event's kind) and when, in the
    /// executor's order.
    ended: HashMap<&'a str, (&'static str, u64)>,
    /// The request that queued each run, and its task's outputs.
    queued: HashMap<&'a str, (&'a str, Vec<&'a str>)>,
    /// Requests received with force, and what they asked for.
    forced: HashMap<&'a str, BTreeSet<&'a str>>,
    /// Where each partition's epochs open, in the executor's order: its
    /// taints, and the `Building` marks of forced requests' runs for what
    /// they asked (see `bel::check`).
    epochs: Vec<(&'a str, u64)>,
    /// Partitions available at the end of the prefix, with the run that
    /// built them.
    built_before: BTreeMap<&'a str, &'a str>,
}

impl<'a> LogFacts<'a> {
    /// Reads the log. Events of the prefix happened before everything this
    /// executor saw (time 0); the others take the mark of their append,
    /// each mark's order plus one (so the executor's times are its marks'
    /// orders plus one too).
    fn read(events: &'a [BuildEvent], appends: &[(u64, Mark)], prefix: usize) -> Self {
        let at = |seq: u64| -> u64 {
            if seq <= prefix as u64 {
                return 0;
            }
            appends
                .iter()
                .find(|(last, _)| *last >= seq)
                .map_or(u64::MAX, |(_, m)| m.order + 1)
        };
        let mut facts = LogFacts::default();
        for (i, e) in events.iter().enumerate() {
            if e.origin.is_some() {
                continue;
            }
            let run = e.job_run_id.as_str();
            match &e.event {
                Some(Event::BuildRequestReceived(q)) if q.options.is_some_and(|o| o.force) => {
                    let asked = q.requested.iter().map(|p| p.str.as_str()).collect();
                    facts.forced.insert(&e.build_request_id, asked);
                }
                Some(Event::JobRunQueued(q)) => {
                    let outputs = q
                        .task
                        .iter()
                        .flat_map(|t| t.config.iter())
                        .flat_map(|c| c.outputs.iter())
                        .map(|p| p.str.as_str())
                        .collect();
                    facts.queued.insert(run, (&e.build_request_id, outputs));
                }
                Some(event) if event.ends_job_run() => {
                    facts.ended.insert(run, (e.kind(), at(e.seq)));
                }
                Some(Event::PartitionStatusChanged(p)) => {
                    let Some(partition) = p.partition.as_ref().map(|p| p.str.as_str()) else {
                        continue;
                    };
                    let status = PartitionStatus::try_from(p.status);
                    let forced = status == Ok(PartitionStatus::Building)
                        && facts.forced(&p.job_run_id, partition);
                    if forced || status == Ok(PartitionStatus::Tainted) {
                        facts.epochs.push((partition, at(e.seq)));
                    }
                    if i < prefix {
                        match status {
                            Ok(PartitionStatus::Available) => {
                                facts.built_before.insert(partition, p.job_run_id.as_str());
                            }
                            Ok(PartitionStatus::Tainted) => {
                                facts.built_before.remove(partition);
                            }
                            // A forced rebuild before the cut opens a new
                            // epoch, as it does after.
                            Ok(PartitionStatus::Building) if forced => {
                                facts.built_before.remove(partition);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        facts
    }

    /// Whether `run` belongs to a forced request that asked for `partition`.
    fn forced(&self, run: &str, partition: &str) -> bool {
        self.queued
            .get(run)
            .and_then(|(request, _)| self.forced.get(request))
            .is_some_and(|asked| asked.contains(partition))
    }
}

/// The exactly-once promise, read from the executor's record of its runs
/// (their outputs and when they started and ended) and, for epochs, the
/// log: no two runs of a partition live at once (a run stops counting as
/// live when it ends at the executor or when the log ends it, whichever
/// comes first), and no two successes of a partition in one epoch (only
/// successes the log accepted count; a taint between them, or a forced
/// request's run for what it asked, opens a new epoch).
fn executor_keeps_exactly_once(
    events: &[BuildEvent],
    history: &[RunRecord],
    appends: &[(u64, Mark)],
    prefix: usize,
) -> Result<(), String> {
    let facts = LogFacts::read(events, appends, prefix);
    // The runs of each partition, in the order they started: launched ones
    // by the outputs they were launched with, re-attached ones by the task
    // the log queued.
    let mut by_partition: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for run in history {
        let outputs: Vec<&str> = if run.reattached {
            facts
                .queued
                .get(run.job_run_id.as_str())
                .map(|(_, o)| o.clone())
                .unwrap_or_default()
        } else {
            run.outputs.iter().map(PartitionRef::as_str).collect()
        };
        for p in outputs {
            by_partition.entry(p).or_default().push(run);
        }
    }
    for (partition, runs) in &by_partition {
        let id = |run: &RunRecord| run.job_run_id.clone();
        let end = |run: &RunRecord| {
            let at_executor = run.ended.as_ref().map_or(u64::MAX, |(m, _)| m.order + 1);
            let in_log = facts
                .ended
                .get(run.job_run_id.as_str())
                .map_or(u64::MAX, |(_, at)| *at);
            at_executor.min(in_log)
        };
        for (i, later) in runs.iter().enumerate() {
            if let Some(earlier) = runs[..i].iter().find(|e| later.started.order + 1 < end(e)) {
                return Err(format!(
                    "partition {partition} (launched {} times): run {} started while run {}, started before it, was live",
                    runs.len(),
                    id(later),
                    id(earlier),
                ));
            }
        }
        let mut successes: Vec<(u64, &str)> = runs
            .iter()
            .filter_map(|run| match &run.ended {
                Some((m, Outcome::Succeeded { .. }))
                    if facts
                        .ended
                        .get(run.job_run_id.as_str())
                        .is_some_and(|(kind, _)| *kind == "job_run_succeeded") =>
                {
                    Some((m.order + 1, run.job_run_id.as_str()))
                }
                _ => None,
            })
            .collect();
        successes.sort();
        let mut last: Option<(u64, &str)> = facts.built_before.get(partition).map(|run| (0, *run));
        for (t, run) in successes {
            if let Some((t0, before)) = last {
                let new_epoch = facts
                    .epochs
                    .iter()
                    .any(|(p, at)| p == partition && t0 < *at && *at < t);
                if !new_epoch && !facts.forced(run, partition) {
                    return Err(format!(
                        "partition {partition} (launched {} times): runs {before} and {run} both built it in one epoch, with no taint between",
                        runs.len(),
                    ));
                }
            }
            last = Some((t, run));
        }
    }
    Ok(())
}

/// The cuts (batch ends) where at least two requests are open and one of
/// them is planning.
fn planning_cuts(events: &[BuildEvent], ends: &[u64]) -> Vec<u64> {
    let mut state = BuildState::new();
    let mut cuts = Vec::new();
    let mut ends = ends.iter().peekable();
    for e in events {
        state.apply(e).unwrap();
        while ends.next_if(|end| **end < e.seq).is_some() {}
        if ends.peek() == Some(&&e.seq) {
            let open: Vec<_> = state.requests().filter(|q| !q.is_terminal()).collect();
            if open.len() >= 2
                && open
                    .iter()
                    .any(|q| q.state == RequestState::Planning || q.analyzing)
            {
                cuts.push(e.seq);
            }
        }
    }
    cuts
}

async fn scenario(seed: u64, tally: Tally) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = Shape::draw(&mut rng, &tally);
    let outcomes = Arc::new(Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed)));
    let first = executor(Arc::clone(&outcomes), Arc::clone(&tally));
    let sink = MemoryBel::new();
    let appends = Appends::default();
    let o = orchestrator(&sink, &appends, &shape, &first, "id");
    let last = &shape.jobs.last().unwrap().name;
    // Requests started in one instant: no await between them.
    let burst = rng.random_bool(0.15);
    let requests = if burst {
        rng.random_range(2..=10)
    } else {
        rng.random_range(1..=3)
    };
    let mut handles = Vec::new();
    let mut asked = Vec::new();
    for _ in 0..requests {
        let (job, key) = if burst {
            shape.draw_partition(&mut rng)
        } else {
            (last.clone(), rng.random_range(1..=shape.keys))
        };
        let wanted = vec![r(&format!("{job}/{key}"))];
        let keep_going = rng.random_bool(0.3);
        handles.push(o.start(&wanted, BuildOptions::default().keep_going(keep_going)));
        asked.push((job, key));
        count(&tally, "request");
    }
    if burst {
        count(&tally, "burst of requests in one instant");
        let shared = asked.iter().enumerate().any(|(i, (a, k))| {
            asked[..i]
                .iter()
                .any(|(b, l)| k == l && !shape.closure(a).is_disjoint(&shape.closure(b)))
        });
        if shared {
            count(&tally, "burst: requests sharing an upstream");
        }
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
    wait(seed, handles).await;

    // A second round: some built partitions tainted, asked for again
    // beside forced rebuilds, all in one instant.
    if rng.random_bool(0.1) {
        let built: Vec<PartitionRef> = o
            .state()
            .partitions()
            .filter(|(_, e)| e.status == PartitionStatus::Available)
            .map(|(p, _)| p.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !built.is_empty() {
            let tainted = built[rng.random_range(0..built.len())].clone();
            o.taint(std::slice::from_ref(&tainted)).await.unwrap();
            count(&tally, "taint");
            let mut handles = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                let force = rng.random_bool(0.5);
                let wanted = if force {
                    count(&tally, "forced request");
                    built[rng.random_range(0..built.len())].clone()
                } else {
                    tainted.clone()
                };
                handles.push(o.start(&[wanted], BuildOptions::default().force(force)));
                count(&tally, "request");
            }
            wait(seed, handles).await;
        }
    }
    check(
        seed,
        &Phase {
            orchestrator: &o,
            bel: &sink,
            executor: &first,
            appends: &appends,
            prefix: 0,
        },
    )
    .await;

    // A crash: the log cut at a batch boundary, a new orchestrator on it.
    if !rng.random_bool(0.5) {
        return;
    }
    count(&tally, "restart");
    let full = all(&sink).await;
    let ends: Vec<u64> = appends.lock().unwrap().iter().map(|(s, _)| *s).collect();
    let planning = planning_cuts(&full, &ends);
    let cut = if !planning.is_empty() && rng.random_bool(0.6) {
        count(&tally, "restart: cut while planning, several requests open");
        planning[rng.random_range(0..planning.len())]
    } else {
        ends[rng.random_range(0..ends.len())]
    } as usize;
    let prefix = &full[..cut];
    let before = BuildState::replay(prefix).unwrap();
    let mut survivors = Vec::new();
    let mut started_before = BTreeSet::new();
    // In id order: the state's own order changes from process to process,
    // and each run takes draws.
    let mut runs: Vec<_> = before.runs().collect();
    runs.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
    for run in runs {
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
    let open: Vec<Vec<PartitionRef>> = before
        .requests()
        .filter(|q| !q.is_terminal())
        .map(|q| q.requested.clone())
        .collect();
    let second = executor(outcomes, Arc::clone(&tally)).survivors(survivors);
    let bel = MemoryBel::new();
    if !prefix.is_empty() {
        bel.append(prefix.to_vec()).await.unwrap();
    }
    let appends = Appends::default();
    let o2 = orchestrator(&bel, &appends, &shape, &second, "second");
    o2.load().await.unwrap();
    let mut handles = o2.resumed();
    for _ in &handles {
        count(&tally, "resumed request");
    }
    // A new request for what a resumed one asked, in the same instant.
    if !open.is_empty() && rng.random_bool(0.7) {
        let wanted = &open[rng.random_range(0..open.len())];
        handles.push(o2.start(wanted, BuildOptions::default()));
        count(&tally, "restart: new request beside the resumed ones");
    }
    for id in &running {
        // Re-attached runs end as the generator says, later.
        let control = second.control(id);
        if rng.random_bool(0.5) {
            control.succeed();
        } else {
            control.fail("drawn to fail after the restart");
        }
    }
    wait(seed, handles).await;
    // Runs of requests that were ending are followed to their end apart
    // from any request: wait (in virtual time) until the log says so.
    let settled = tokio::time::timeout(Duration::from_secs(3600), async {
        while o2.state().runs().any(|r| !r.state.is_terminal()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "seed {seed}: an adopted run never ended");
    for id in &second.launched() {
        assert!(
            !started_before.contains(id),
            "seed {seed}: {id} ran before the crash and was launched again"
        );
    }
    check(
        seed,
        &Phase {
            orchestrator: &o2,
            bel: &bel,
            executor: &second,
            appends: &appends,
            prefix: cut,
        },
    )
    .await;
}

/// Runs one scenario; a failure is its panic's message, with the length of
/// the longest log it checked.
fn run_one(seed: u64, tally: &Tally) -> Result<(), (String, usize)> {
    LOG_LENGTH.store(0, Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let tally = Arc::clone(tally);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(scenario(seed, tally));
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned());
        (message, LOG_LENGTH.load(Ordering::Relaxed))
    })
}

fn replay_command(seed: u64) -> String {
    format!(
        "SIM_SEED={seed} cargo test -p databuild-core --features testkit --test simulation -- --nocapture"
    )
}

#[test]
fn random_scenarios_keep_the_invariants() {
    let tally: Tally = Arc::default();
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed: u64 = seed.parse().expect("SIM_SEED is a number");
        let result = run_one(seed, &tally);
        println!("scenario {seed}: {:?}", tally.lock().unwrap());
        if let Err((e, _)) = result {
            panic!("{e}");
        }
        return;
    }
    let scenarios: u64 = std::env::var("SIM_SCENARIOS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let base: u64 = 0x0dab_0b11;
    // Every scenario runs; each failure is reported once, below, instead
    // of by the panic hook.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let failures: Vec<(u64, String, usize)> = (base..base + scenarios)
        .filter_map(|seed| run_one(seed, &tally).err().map(|(e, len)| (seed, e, len)))
        .collect();
    std::panic::set_hook(hook);
    let tally = tally.lock().unwrap();
    println!("{scenarios} scenarios: {tally:?}");
    if !failures.is_empty() {
        for (_, e, _) in failures.iter().take(10) {
            eprintln!("{e}");
        }
        let seeds: Vec<String> = failures.iter().map(|(s, ..)| s.to_string()).collect();
        let (shortest, _, len) = failures.iter().min_by_key(|(_, _, len)| *len).unwrap();
        panic!(
            "{} of {scenarios} scenarios failed (seeds {}{}); the shortest log ({len} events) is seed {shortest}:\n  {}",
            failures.len(),
            seeds[..seeds.len().min(50)].join(", "),
            if seeds.len() > 50 { ", …" } else { "" },
            replay_command(*shortest),
        );
    }
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
            "slow config calls",
            "burst of requests in one instant",
            "burst: requests sharing an upstream",
            "taint",
            "forced request",
            "restart",
            "restart: still running",
            "restart: ended meanwhile",
            "restart: gone (lost or never launched)",
            "restart: cut while planning, several requests open",
            "restart: new request beside the resumed ones",
        ] {
            assert!(tally.contains_key(what), "{what} never drawn: {tally:?}");
        }
    }
}
