//! The crash test (issue 4): an orchestrator on the SQLite BEL with the
//! local executor in runner mode builds 300 process jobs, each appending
//! one line to a side-effect file; it is killed at least 10 times and
//! restarted on the same BEL each time, where it resumes the open request
//! and then asks for everything again. Kills land at random moments
//! (SIGKILL from this test) and at chosen places, through a failpoint in
//! the orchestrator process's BEL (it kills itself right after a batch with
//! `JobScheduled` is stored, or right before one with `JobRunRunning` or
//! `JobRunSucceeded` is). Then every partition is available, every job's
//! side effect happened exactly once (each line names its job run id), and
//! the log passes the checkers.
//!
//! The seed is printed; replay one with `DATABUILD_CRASH_SEED=<seed> cargo
//! test -p databuild-executor-local --test crash`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, EventFilter};
use databuild_core::proto::PartitionStatus;
use databuild_core::state::BuildState;
use databuild_core::testkit::hooked::HookedSink;
use databuild_core::testkit::jobs::TestJob;
use databuild_core::{Graph, Orchestrator, PartitionRef};
use databuild_executor_local::{LocalConfig, LocalExecutor};

const ROLE: &str = "DATABUILD_CRASH_ORCHESTRATOR";
const FAILPOINT: &str = "DATABUILD_CRASH_FAILPOINT";
const WIDTH: usize = 100;
const LAYERS: [&str; 3] = ["a", "b", "c"];

/// The orchestrator process: build everything, exit 0 when it is built.
async fn orchestrate(dir: &Path) -> i32 {
    let side = dir.join("side-effects").to_string_lossy().into_owned();
    let mut graph = Graph::builder();
    // `<layer>/<i>` reads the layer below's `<i>`; its run appends its
    // output and run id to `side-effects`, after a short sleep (so kills
    // land mid-run).
    for (k, layer) in LAYERS.iter().enumerate() {
        let mut job = TestJob::sh(
            layer,
            format!("sleep 0.1; echo \"$DATABUILD_OUTPUTS $DATABUILD_JOB_RUN_ID\" >> {side}"),
        );
        if let Some(below) = k.checked_sub(1).map(|b| LAYERS[b]) {
            job = job.reads(below);
        }
        graph = graph.job(job);
    }
    let state = dir.join("state");
    let sqlite = Arc::new(SqliteBel::open(dir.join("bel.sqlite")).unwrap());
    let bel: Arc<dyn BelSink> = match std::env::var(FAILPOINT) {
        Ok(at) => Arc::new(failpoint(sqlite, &at)),
        Err(_) => sqlite,
    };
    let o = Orchestrator::builder()
        .graph(graph.build().unwrap())
        .bel(bel)
        .executor(Arc::new(LocalExecutor::new(
            LocalConfig::new(&state).runner(vec![env!("CARGO_BIN_EXE_databuild-runner").into()]),
        )))
        .state_dir(&state)
        .parallelism(6)
        .build()
        .unwrap();
    let requested: Vec<PartitionRef> = (0..WIDTH)
        .map(|i| PartitionRef::new(format!("c/{i}")).unwrap())
        .collect();
    // The request the last process left open goes on first.
    o.load().await.unwrap();
    for resumed in o.resumed() {
        let id = resumed.build_request_id().to_owned();
        match resumed.outcome().await {
            Ok(outcome) if outcome.succeeded() => {}
            other => eprintln!("resumed request {id}: {other:?}"),
        }
    }
    match o.build(&requested).await {
        Ok(outcome) if outcome.succeeded() => 0,
        Ok(outcome) => {
            eprintln!("not built: {:?}", outcome.not_built.first());
            1
        }
        Err(e) => {
            eprintln!("build error: {e}");
            1
        }
    }
}

fn child(dir: &Path, failpoint: Option<String>) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Some(at) = failpoint {
        command.env(FAILPOINT, at);
    }
    command
        .args(["crash_test", "--exact", "--test-threads=1", "--nocapture"])
        .env(ROLE, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test() {
    if let Some(dir) = std::env::var_os(ROLE) {
        std::process::exit(orchestrate(Path::new(&dir)).await);
    }
    let seed: u64 = std::env::var("DATABUILD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed {seed} (DATABUILD_CRASH_SEED={seed} to replay)");
    let mut rng = seed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        rng >> 33
    };
    let dir = tempfile::tempdir().unwrap();
    let mut kills = 0;
    let mut aborts: BTreeMap<&str, u32> = BTreeMap::new();
    const KINDS: [&str; 3] = ["job_scheduled", "job_run_running", "job_run_succeeded"];
    for round in 0..60 {
        if kills >= 12 {
            break;
        }
        // Every other round crashes at a chosen place, the others at a
        // random moment.
        if round % 2 == 1 {
            let kind = KINDS[(round / 2) % KINDS.len()];
            let at = format!("{kind}:{}", 1 + next() % 8);
            let status = child(dir.path(), Some(at)).wait().unwrap();
            if status.success() {
                break;
            }
            if status.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32) {
                kills += 1;
                *aborts.entry(kind).or_default() += 1;
            }
            continue;
        }
        let mut c = child(dir.path(), None);
        let wait = Duration::from_millis(50 + next() % 400);
        std::thread::sleep(wait);
        match c.try_wait().unwrap() {
            // Everything was built before the kill.
            Some(status) if status.success() => break,
            // A build that failed (it found a re-attached run failed) is
            // asked again.
            Some(_) => continue,
            None => {
                c.kill().unwrap();
                c.wait().unwrap();
                kills += 1;
            }
        }
    }
    println!("failpoint crashes: {aborts:?}");
    // Then let it finish (a build that found a re-attached run failed is
    // asked again, as a user would).
    let mut finished = false;
    for _ in 0..6 {
        if child(dir.path(), None).wait().unwrap().success() {
            finished = true;
            break;
        }
    }
    assert!(finished, "seed {seed}: the build never finished");
    assert!(kills >= 10, "seed {seed}: only {kills} kills landed");

    // Every partition is available, by the log.
    let bel = SqliteBel::open_read_only(dir.path().join("bel.sqlite")).unwrap();
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    check_log(&events).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let state = BuildState::replay(&events).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    // The state the store keeps next to the events survived every kill:
    // it is the state the log replays to.
    let (rows, at) = bel
        .load_state()
        .await
        .unwrap()
        .expect("the SQLite BEL keeps state");
    assert_eq!(
        at,
        bel.head().await.unwrap(),
        "seed {seed}: kept state lags"
    );
    assert!(
        BuildState::from_rows(rows, at).unwrap() == state,
        "seed {seed}: the kept state differs from the replayed log"
    );
    for layer in LAYERS {
        for i in 0..WIDTH {
            let p = PartitionRef::new(format!("{layer}/{i}")).unwrap();
            assert_eq!(
                state.partition(&p).map(|e| e.status),
                Some(PartitionStatus::Available),
                "seed {seed}: {p}"
            );
        }
    }
    // Every job's side effect happened exactly once.
    let text = std::fs::read_to_string(dir.path().join("side-effects")).unwrap();
    let mut count: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let (outputs, run) = line.rsplit_once(' ').unwrap();
        count
            .entry(outputs.to_owned())
            .or_default()
            .push(run.to_owned());
    }
    assert_eq!(count.len(), LAYERS.len() * WIDTH, "seed {seed}");
    for (outputs, runs) in &count {
        if runs.len() != 1 {
            for run in runs {
                let kinds: Vec<String> = events
                    .iter()
                    .filter(|e| &e.job_run_id == run)
                    .map(|e| format!("{}@{}", e.kind(), e.seq))
                    .collect();
                eprintln!("run {run}: {kinds:?}");
            }
        }
        assert_eq!(runs.len(), 1, "seed {seed}: {outputs} ran {runs:?}");
    }
    // Resumed requests launched queued and never-launched runs under their
    // ids and re-attached the others: one run per task.
    let extra: Vec<String> = state
        .runs()
        .filter(|r| r.state != databuild_core::state::RunState::Succeeded)
        .map(|r| {
            let kinds: Vec<String> = events
                .iter()
                .filter(|e| e.job_run_id == r.job_run_id)
                .map(|e| format!("{}@{}", e.kind(), e.seq))
                .collect();
            format!("{} {:?}: {kinds:?}", r.job_run_id, r.state)
        })
        .collect();
    let why: Vec<String> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind(),
                "job_failure" | "build_failed" | "job_run_failed" | "job_run_lost" | "job_skipped"
            )
        })
        .map(|e| format!("{}@{} {} {:?}", e.kind(), e.seq, e.job_run_id, e.event))
        .collect();
    assert!(
        extra.is_empty(),
        "seed {seed}: runs that did not build: {extra:#?}\nfailures: {why:#?}"
    );
    assert_eq!(state.runs().count(), LAYERS.len() * WIDTH, "seed {seed}");
    println!(
        "{kills} kills, {} requests, {} runs",
        state.requests().count(),
        state.runs().count()
    );
}

/// The orchestrator process's BEL with a crash point: at the `n`th batch
/// holding an event of `kind` (`at` is `kind:n`), the process dies right
/// after the batch is stored (`job_scheduled`) or right before (the
/// others).
fn failpoint(sqlite: Arc<SqliteBel>, at: &str) -> HookedSink {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let (kind, n) = at.split_once(':').unwrap();
    let kind = kind.to_owned();
    let after = kind == "job_scheduled";
    let left = AtomicU32::new(n.parse().unwrap());
    let hit = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&hit);
    HookedSink::new(sqlite)
        .before_append(move |batch| {
            if batch.iter().any(|e| e.kind() == kind) && left.fetch_sub(1, Ordering::SeqCst) == 1 {
                if !after {
                    die();
                }
                seen.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .after_append(move |_| {
            if hit.load(Ordering::SeqCst) {
                die();
            }
        })
}

/// The orchestrator process dies as a crash would (no unwinding, no core
/// file).
fn die() -> ! {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL cannot be caught")
}
