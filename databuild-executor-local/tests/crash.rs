//! The crash test (issue 4): an orchestrator on the SQLite BEL with the
//! local executor in runner mode builds 300 process jobs, each appending
//! one line to a side-effect file; it is killed with SIGKILL at random
//! moments, at least 10 times, and restarted on the same BEL each time.
//! Then every partition is available, every job's side effect happened
//! exactly once, and the log passes the checkers.
//!
//! The seed is printed; replay one with `DATABUILD_CRASH_SEED=<seed> cargo
//! test -p databuild-executor-local --test crash`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, EventFilter};
use databuild_core::job::ProcessLaunch;
use databuild_core::proto::PartitionStatus;
use databuild_core::state::BuildState;
use databuild_core::{
    DataBuildJob, Graph, JobConfig, JobConfigError, JobLabel, Launch, Orchestrator,
    PartitionPattern, PartitionRef,
};
use databuild_executor_local::{LocalConfig, LocalExecutor};

const ROLE: &str = "DATABUILD_CRASH_ORCHESTRATOR";
const WIDTH: usize = 100;
const LAYERS: [&str; 3] = ["a", "b", "c"];

/// `<layer>/<i>` reads the layer below's `<i>`; its run appends its output
/// to `side-effects`, after a short sleep (so kills land mid-run).
#[derive(Debug)]
struct Layer {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
    below: Option<&'static str>,
    side_effects: String,
}

#[async_trait]
impl DataBuildJob for Layer {
    fn label(&self) -> &JobLabel {
        &self.label
    }
    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }
    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        Ok(outputs
            .iter()
            .map(|o| {
                let mut c = JobConfig::new([o.clone()]);
                if let Some(below) = self.below {
                    let i = o.as_str().split('/').nth(1).unwrap_or_default();
                    c = c.materialize(PartitionRef::new(format!("{below}/{i}")).unwrap());
                }
                c
            })
            .collect())
    }
    fn launch(&self) -> Launch {
        Launch::Process(ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            format!(
                "sleep 0.1; echo \"$DATABUILD_OUTPUTS $DATABUILD_JOB_RUN_ID\" >> {}",
                self.side_effects
            ),
            "sh".into(),
        ]))
    }
}

/// The orchestrator process: build everything, exit 0 when it is built.
async fn orchestrate(dir: &Path) -> i32 {
    let side = dir.join("side-effects").to_string_lossy().into_owned();
    let mut graph = Graph::builder();
    for (k, layer) in LAYERS.iter().enumerate() {
        graph = graph.job(Layer {
            label: JobLabel::new(format!("//{layer}")).unwrap(),
            patterns: vec![PartitionPattern::new(&format!(r"{layer}/\d+")).unwrap()],
            below: k.checked_sub(1).map(|b| LAYERS[b]),
            side_effects: side.clone(),
        });
    }
    let state = dir.join("state");
    let o = Orchestrator::builder()
        .graph(graph.build().unwrap())
        .bel(Arc::new(SqliteBel::open(dir.join("bel.sqlite")).unwrap()))
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

fn child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
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
    let mut done = false;
    for _ in 0..60 {
        if kills >= 12 {
            break;
        }
        let mut c = child(dir.path());
        let wait = Duration::from_millis(50 + next() % 400);
        std::thread::sleep(wait);
        match c.try_wait().unwrap() {
            // Everything was built before the kill.
            Some(status) if status.success() => {
                done = true;
                break;
            }
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
    let _ = done;
    // Then let it finish (a build that found a re-attached run failed is
    // asked again, as a user would).
    let mut finished = false;
    for _ in 0..6 {
        if child(dir.path()).wait().unwrap().success() {
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
    println!(
        "{kills} kills, {} requests, {} runs",
        state.requests().count(),
        state.runs().count()
    );
}
