//! The orchestrator running a plan on real processes.

use std::path::Path;
use std::sync::Arc;

use databuild_core::bel::{EventFilter, JsonlBel};
use databuild_core::state::BuildState;
use databuild_core::testkit::jobs::TestJob;
use databuild_core::{BelSink, Graph, Orchestrator, PartitionRef};
use databuild_executor_local::{LocalConfig, LocalExecutor};

/// `<name>/<n>` needs `<input>/<n>`; a run appends its outputs to `record`
/// after running `extra`.
fn job(name: &str, input: Option<&'static str>, record: &Path, extra: &str) -> TestJob {
    recording(
        name,
        input,
        &format!(
            "{extra} echo \"$DATABUILD_JOB_LABEL $DATABUILD_OUTPUTS\" >> {}",
            record.display()
        ),
    )
}

/// `<name>/<n>`, needing `<input>/<n>`, run as `sh -c <script>`.
fn recording(name: &str, input: Option<&'static str>, script: &str) -> TestJob {
    let job = TestJob::sh(name, script);
    match input {
        Some(input) => job.reads(input),
        None => job,
    }
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_a_chain_of_processes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let graph = Graph::builder()
        .job(job("raw", None, &record, ""))
        .job(job("daily", Some("raw"), &record, ""))
        .build()
        .unwrap();
    let (bel, _) = JsonlBel::open_default(dir.path().join("bel.jsonl"))
        .await
        .unwrap();
    let bel: Arc<dyn BelSink> = Arc::new(bel);
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::clone(&bel))
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(
            dir.path().join("state"),
        ))))
        .state_dir(dir.path().join("state"))
        .parallelism(2)
        .build()
        .unwrap();
    let outcome = orchestrator
        .build(&[r("daily/1"), r("daily/2")])
        .await
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.built.len(), 4);

    // Each raw partition was written before the daily one that needs it.
    let lines: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for n in ["1", "2"] {
        let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
        assert!(pos(&format!("//raw [\"raw/{n}\"]")) < pos(&format!("//daily [\"daily/{n}\"]")));
    }
    // The JSONL log replays to the live state, and each run wrote its log.
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    assert_eq!(BuildState::replay(&events).unwrap(), orchestrator.state());
    databuild_core::bel::check::check_log(&events).unwrap();
    // Each real run went through exactly the success path.
    let runs: Vec<String> = events
        .iter()
        .filter(|e| e.kind() == "job_run_queued")
        .map(|e| e.job_run_id.clone())
        .collect();
    assert_eq!(runs.len(), 4);
    for run in &runs {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| &e.job_run_id == run)
            .map(|e| e.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                "job_run_queued",
                "job_scheduled",
                "partition_status_changed",
                "job_run_config_validated",
                "job_run_running",
                "job_run_task_succeeded",
                "job_run_succeeded",
                "partition_status_changed",
            ]
        );
    }
    let logs = walk(&dir.path().join("state/logs"));
    assert_eq!(logs, 4, "one log file per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_process_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let graph = Graph::builder()
        .job(job(
            "raw",
            None,
            &record,
            "echo 'no data today' >&2; exit 4;",
        ))
        .job(job("daily", Some("raw"), &record, ""))
        .build()
        .unwrap();
    let (bel, _) = JsonlBel::open_default(dir.path().join("bel.jsonl"))
        .await
        .unwrap();
    let bel: Arc<dyn BelSink> = Arc::new(bel);
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::clone(&bel))
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(
            dir.path().join("state"),
        ))))
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let outcome = orchestrator.build(&[r("daily/1")]).await.unwrap();
    assert!(!outcome.succeeded());
    let raw = outcome
        .not_built
        .iter()
        .find(|n| n.partition == r("raw/1"))
        .unwrap();
    assert!(raw.reason.contains("exit code 4"), "{}", raw.reason);
    assert!(!record.exists(), "the daily job never ran");
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    BuildState::replay(&events).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    let tail: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "remaining_jobs")
        .skip_while(|k| *k != "job_run_running")
        .collect();
    assert_eq!(
        tail,
        [
            "job_run_running",
            "job_run_task_failed",
            "job_run_failed",
            "partition_status_changed",
            "job_failure",
            "job_cancels",
            "build_failed",
        ]
    );
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { 1 }
        })
        .sum()
}

/// Runs of a pool's jobs, with start and end times the processes record
/// themselves: never more than the pool's slots at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_bounds_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let times = dir.path().join("times");
    std::fs::create_dir(&times).unwrap();
    let job = recording(
        "db",
        None,
        &format!(
            "echo start $(date +%s%N) > {t}/$DATABUILD_JOB_RUN_ID; sleep 0.2; echo end $(date +%s%N) >> {t}/$DATABUILD_JOB_RUN_ID",
            t = times.display()
        ),
    )
    .hints(|h| h.pool = Some("db".into()));
    let graph = Graph::builder().job(job).build().unwrap();
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(databuild_core::MemoryBel::new()))
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(
            dir.path().join("state"),
        ))))
        .state_dir(dir.path().join("state"))
        .parallelism(6)
        .pool("db", 2)
        .build()
        .unwrap();
    let refs: Vec<PartitionRef> = (0..8).map(|i| r(&format!("db/{i}"))).collect();
    let outcome = orchestrator.build(&refs).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for entry in std::fs::read_dir(&times).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let (what, at) = line.split_once(' ').unwrap();
            edges.push((at.parse().unwrap(), if what == "start" { 1 } else { -1 }));
        }
    }
    assert_eq!(edges.len(), 16, "every run recorded its start and end");
    // Ends sort before starts at the same instant.
    edges.sort();
    let mut running = 0;
    let mut most = 0;
    for (_, d) in edges {
        running += d;
        most = most.max(running);
    }
    assert_eq!(most, 2, "at most the pool's 2 slots, and the pool was used");
}

fn local_orchestrator(dir: &Path, jobs: Vec<TestJob>) -> Orchestrator {
    let mut graph = Graph::builder();
    for j in jobs {
        graph = graph.job(j);
    }
    Orchestrator::builder()
        .graph(graph.build().unwrap())
        .bel(Arc::new(databuild_core::MemoryBel::new()))
        .executor(Arc::new(LocalExecutor::new(
            LocalConfig::new(dir.join("state")).kill_grace(std::time::Duration::from_secs(2)),
        )))
        .state_dir(dir.join("state"))
        .parallelism(2)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reporting_missing_deps_runs_again_once_they_are_built() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    // c reads b/<n>, which its config did not declare: it says so at run
    // time, until the rerun's config file names it.
    let c = job(
        "c",
        None,
        &record,
        r#"n=${DATABUILD_OUTPUTS#*c/}; n=${n%%\"*};
        if ! grep -q "b/$n" "$DATABUILD_CONFIG_FILE"; then
          echo "__DATABUILD_ERROR__::{\"missing_deps\":[{\"impacted\":[\"c/$n\"],\"missing\":[\"b/$n\"]}]}"; exit 1;
        fi;"#,
    );
    let b = job("b", None, &record, "");
    let o = local_orchestrator(dir.path(), vec![c, b]);
    let outcome = o.build(&[r("c/7")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let lines = std::fs::read_to_string(&record).unwrap();
    assert_eq!(lines, "//b [\"b/7\"]\n//c [\"c/7\"]\n");
    let state = o.state();
    let mut runs: Vec<_> = state
        .runs()
        .map(|r| (r.task.job.clone().unwrap().label, r.state))
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    use databuild_core::state::RunState;
    assert_eq!(
        runs.iter()
            .filter(|(j, s)| j == "//c" && *s == RunState::MissingDeps)
            .count(),
        1
    );
    assert_eq!(
        runs.iter()
            .filter(|(_, s)| *s == RunState::Succeeded)
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_past_its_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let slow = job("slow", None, &dir.path().join("record"), "sleep 30;");
    let o = local_orchestrator(
        dir.path(),
        vec![slow.hints(|h| {
            h.timeout = Some(std::time::Duration::from_millis(300));
        })],
    );
    let started = std::time::Instant::now();
    let outcome = o.build(&[r("slow/1")]).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        outcome.not_built[0].reason.starts_with("timeout"),
        "{:?}",
        outcome.not_built
    );
    assert!(
        !dir.path().join("record").exists(),
        "the job never finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_request_kills_the_jobs_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    let forking = job(
        "fork",
        None,
        &dir.path().join("record"),
        &format!("sleep 60 & echo $! > {}; wait;", pid_file.display()),
    );
    let o = local_orchestrator(dir.path(), vec![forking]);
    let build = o.start(&[r("fork/1")], databuild_core::BuildOptions::default());
    let pid: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    build.cancel("enough");
    let outcome = build.outcome().await.unwrap();
    assert!(outcome.canceled);
    // Gone, not a zombie of ours: the whole group was killed and reaped.
    for _ in 0..200 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("grandchild {pid} survived the cancel");
}

/// With the process not sampled (`process_heartbeats(false)`, a backend
/// that cannot observe its runs), the job's output is its only sign of
/// life: a job printing `__DATABUILD_HEARTBEAT__` every second outlives a
/// liveness timeout of three seconds, and the marker never reaches its
/// log; a silent one is declared Lost. In direct and in runner mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_are_the_signs_of_life_of_unsampled_runs() {
    for runner in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let beating = TestJob::sh(
            "beating",
            "for i in 1 2 3 4 5 6; do echo __DATABUILD_HEARTBEAT__; sleep 1; done; echo done",
        );
        let silent = TestJob::sh("silent", "sleep 8; echo too late");
        let mut config = LocalConfig::new(dir.path().join("state"))
            .kill_grace(std::time::Duration::from_secs(1))
            .process_heartbeats(false);
        if runner {
            config = config.runner(vec![env!("CARGO_BIN_EXE_databuild-runner").into()]);
        }
        let executor = LocalExecutor::new(config);
        let info = databuild_core::Executor::info(&executor);
        assert!(!info.capabilities.reports_heartbeats && info.capabilities.output_signs_of_life);
        let bel = Arc::new(databuild_core::MemoryBel::new());
        let orchestrator = Orchestrator::builder()
            .graph(Graph::builder().job(beating).job(silent).build().unwrap())
            .bel(Arc::clone(&bel) as Arc<dyn BelSink>)
            .executor(Arc::new(executor))
            .state_dir(dir.path().join("state"))
            .settings(
                databuild_core::OrchestratorSettings::default()
                    .liveness_timeout(std::time::Duration::from_secs(3)),
            )
            .parallelism(2)
            .build()
            .unwrap();
        let outcome = orchestrator
            .build_with(
                &[r("beating/1"), r("silent/1")],
                databuild_core::BuildOptions::default().keep_going(true),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.built,
            [r("beating/1")],
            "runner mode {runner}: {outcome:?}"
        );
        assert_eq!(outcome.not_built.len(), 1);
        assert_eq!(outcome.not_built[0].partition, r("silent/1"));

        let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
        let lost: Vec<_> = events
            .iter()
            .filter(|e| e.kind() == "job_run_lost")
            .collect();
        assert_eq!(lost.len(), 1, "runner mode {runner}: the silent run, once");
        let state = BuildState::replay(&events).unwrap();
        let beating_run = state
            .runs()
            .find(|r| r.task.job.as_ref().is_some_and(|j| j.label == "//beating"))
            .unwrap();
        assert_eq!(
            beating_run.state,
            databuild_core::state::RunState::Succeeded
        );
        let log = walk_logs(&dir.path().join("state/logs"))
            .into_iter()
            .find(|p| p.to_string_lossy().contains(&beating_run.job_run_id))
            .unwrap();
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("\"text\":\"done\""), "{text}");
        assert!(
            !text.contains("\"text\":\"__DATABUILD_HEARTBEAT__\""),
            "markers are not output: {text}"
        );
    }
}

fn walk_logs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(dir).unwrap().flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

/// Two requests started together over a shared upstream, on real
/// processes and a real SQLite store, fifty times: each time the upstream
/// runs once (its job counts its executions), and both requests succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_started_together_run_a_shared_upstream_once_every_time() {
    let latency = std::time::Duration::from_millis(20);
    for round in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record");
        let graph = Graph::builder()
            .job(job("a", None, &record, "").config_latency(latency))
            .job(job("b", Some("a"), &record, "").config_latency(latency))
            .job(job("c", Some("a"), &record, "").config_latency(latency))
            .build()
            .unwrap();
        let bel: Arc<dyn BelSink> =
            Arc::new(databuild_bel_sqlite::SqliteBel::open(dir.path().join("bel.sqlite")).unwrap());
        let orchestrator = Orchestrator::builder()
            .graph(graph)
            .bel(Arc::clone(&bel))
            .executor(Arc::new(LocalExecutor::new(LocalConfig::new(
                dir.path().join("state"),
            ))))
            .state_dir(dir.path().join("state"))
            .parallelism(2)
            .build()
            .unwrap();
        let options = databuild_core::BuildOptions::default();
        let first = orchestrator.start(&[r("b/1")], options);
        let second = orchestrator.start(&[r("c/1")], options);
        let (first, second) = (
            first.outcome().await.unwrap(),
            second.outcome().await.unwrap(),
        );
        assert!(
            first.succeeded() && second.succeeded(),
            "round {round}: {first:?} {second:?}"
        );
        let lines = std::fs::read_to_string(&record).unwrap();
        let a_runs = lines.lines().filter(|l| l.contains("\"a/1\"")).count();
        assert_eq!(a_runs, 1, "round {round}: a/1 ran {a_runs} times:\n{lines}");
        assert_eq!(lines.lines().count(), 3, "round {round}:\n{lines}");
        let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
        databuild_core::bel::check::check_log(&events).unwrap();
    }
}
