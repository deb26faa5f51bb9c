//! The local executor against real processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use databuild_core::executor::{ExitStatus, LogRecord, Outcome, RunUpdate, Stream};
use databuild_core::job::ProcessLaunch;
use databuild_core::proto::FailureStage;
use databuild_core::{
    Executor, ExecutorError, JobConfig, JobLabel, JobRunSpec, Launch, PartitionRef,
};
use databuild_executor_local::{LocalConfig, LocalExecutor};
use futures::StreamExt;

struct Fixture {
    dir: tempfile::TempDir,
    exec: LocalExecutor,
}

fn fixture(config: impl FnOnce(LocalConfig) -> LocalConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let exec = LocalExecutor::new(config(
        LocalConfig::new(dir.path().join("state"))
            .heartbeat_interval(Duration::from_millis(100))
            .drain_grace(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(500)),
    ));
    Fixture { dir, exec }
}

fn sh(script: &str) -> Launch {
    Launch::Process(ProcessLaunch::new(vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ]))
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spec(&self, id: &str, launch: Launch, config: JobConfig) -> JobRunSpec {
        JobRunSpec::new(
            id,
            "req-1",
            JobLabel::new("//test").unwrap(),
            config,
            launch,
            self.path(&format!("logs/{id}.jsonl")),
        )
    }

    async fn run(&self, id: &str, script: &str) -> (Vec<RunUpdate>, Vec<LogRecord>) {
        self.run_spec(self.spec(id, sh(script), JobConfig::new([r("out/1")])))
            .await
    }

    async fn run_spec(&self, spec: JobRunSpec) -> (Vec<RunUpdate>, Vec<LogRecord>) {
        let log = spec.log_path.clone();
        let updates: Vec<RunUpdate> = tokio::time::timeout(
            Duration::from_secs(120),
            self.exec.launch(spec).await.unwrap().collect(),
        )
        .await
        .expect("the run ends");
        (updates, read_log(&log))
    }
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

fn read_log(path: &Path) -> Vec<LogRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn texts(log: &[LogRecord], stream: Stream) -> Vec<String> {
    log.iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.clone())
        .collect()
}

fn outcome(updates: &[RunUpdate]) -> &Outcome {
    match updates.last() {
        Some(RunUpdate::Exited(o)) => o,
        other => panic!("the last update is not Exited: {other:?}"),
    }
}

fn pid_of(updates: &[RunUpdate]) -> u32 {
    match &updates[0] {
        RunUpdate::Running { handle } => handle.trim_start_matches("pid:").parse().unwrap(),
        other => panic!("{other:?}"),
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

async fn assert_gone(pid: u32) {
    for _ in 0..500 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("process {pid} is still alive");
}

async fn wait_for_file(path: &Path) -> String {
    for _ in 0..2000 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test]
async fn success_with_stdout_and_stderr_logged() {
    let f = fixture(|c| c);
    let (updates, log) = f
        .run("r1", "echo hello; echo oops >&2; printf 'no newline'")
        .await;
    assert!(matches!(updates[0], RunUpdate::Running { .. }));
    assert_eq!(outcome(&updates), &Outcome::Succeeded { manifest: vec![] });
    assert_eq!(texts(&log, Stream::Stdout), ["hello", "no newline"]);
    assert_eq!(texts(&log, Stream::Stderr), ["oops"]);
    let notes = texts(&log, Stream::Executor);
    assert!(notes[0].starts_with("launched pid"), "{notes:?}");
    assert_eq!(notes.last().unwrap(), "exited with exit code 0");
    // The leader is reaped: no zombie left.
    assert!(!Path::new(&format!("/proc/{}", pid_of(&updates))).exists());
}

#[tokio::test]
async fn exit_codes_and_signals_are_failures() {
    let f = fixture(|c| c);
    let (updates, _) = f.run("r1", "exit 3").await;
    assert!(
        matches!(
            outcome(&updates),
            Outcome::Failed {
                exit: Some(ExitStatus::Code(3)),
                retryable: true,
                ..
            }
        ),
        "{updates:?}"
    );
    let (updates, _) = f.run("r2", "kill -9 $$").await;
    assert!(
        matches!(
            outcome(&updates),
            Outcome::Failed {
                exit: Some(ExitStatus::Signal(9)),
                ..
            }
        ),
        "{updates:?}"
    );
}

#[tokio::test]
async fn missing_deps_decide_the_outcome_and_stay_out_of_the_log() {
    let f = fixture(|c| c);
    let script = r#"echo '__DATABUILD_ERROR__::{"missing_deps":[{"impacted":["out/1"],"missing":["in/1"]}]}'; echo __DATABUILD_HEARTBEAT__; echo real; exit 1"#;
    let (updates, log) = f.run("r1", script).await;
    let Outcome::MissingDeps { missing_deps, exit } = outcome(&updates) else {
        panic!("{updates:?}")
    };
    assert_eq!(missing_deps[0].missing, [r("in/1")]);
    assert_eq!(*exit, Some(ExitStatus::Code(1)));
    assert_eq!(texts(&log, Stream::Stdout), ["real"]);
}

#[tokio::test]
async fn a_malformed_marker_fails_quoting_it() {
    let f = fixture(|c| c);
    let (updates, _) = f.run("r1", "echo '__DATABUILD_ERROR__::{broken'").await;
    assert!(
        matches!(outcome(&updates), Outcome::Failed { reason, retryable: false, .. } if reason.contains("__DATABUILD_ERROR__::{broken")),
        "{updates:?}"
    );
}

#[tokio::test]
async fn env_args_stdin_and_config_file_are_passed() {
    let f = fixture(|c| c);
    let config = JobConfig::new([r("out/1"), r("out/2")])
        .materialize(r("in/1"))
        .arg("--day")
        .arg("2024-01-01")
        .env("REGION", "eu");
    let mut launch = ProcessLaunch::new(vec![
        "sh".into(),
        "-c".into(),
        r#"echo "args:$*"; echo "region:$REGION job:$JOB_ENV"; echo "run:$DATABUILD_JOB_RUN_ID label:$DATABUILD_JOB_LABEL req:$DATABUILD_BUILD_REQUEST_ID attempt:$DATABUILD_ATTEMPT"; echo "outputs:$DATABUILD_OUTPUTS"; echo "file:$(cat "$DATABUILD_CONFIG_FILE")"; echo "stdin:$(cat)"; echo "cwd:$(pwd)""#.into(),
        "sh".into(),
    ]);
    launch.env.insert("JOB_ENV".into(), "from-job".into());
    launch.working_dir = Some(f.dir.path().to_path_buf());
    let spec = f.spec("run-42", Launch::Process(launch), config.clone());
    let (updates, log) = f.run_spec(spec).await;
    assert!(outcome(&updates).is_success(), "{updates:?}");
    let out = texts(&log, Stream::Stdout);
    let json = databuild_core::job::protocol::encode_config(&config);
    assert_eq!(out[0], "args:exec --day 2024-01-01");
    assert_eq!(out[1], "region:eu job:from-job");
    assert_eq!(out[2], "run:run-42 label://test req:req-1 attempt:1");
    assert_eq!(out[3], r#"outputs:["out/1","out/2"]"#);
    assert_eq!(out[4], format!("file:{json}"));
    assert_eq!(out[5], format!("stdin:{json}"));
    assert_eq!(out[6], format!("cwd:{}", f.dir.path().display()));
}

#[tokio::test]
async fn cancel_kills_the_job_and_its_grandchild() {
    let f = fixture(|c| c);
    let gc = f.path("grandchild");
    let script = format!("sleep 300 & echo $! > {}; wait", gc.display());
    let mut updates = f
        .exec
        .launch(f.spec("r1", sh(&script), JobConfig::default()))
        .await
        .unwrap();
    let Some(RunUpdate::Running { handle }) = updates.next().await else {
        panic!("running")
    };
    let leader: u32 = handle.trim_start_matches("pid:").parse().unwrap();
    let grandchild: u32 = wait_for_file(&gc).await.trim().parse().unwrap();
    assert!(alive(grandchild));
    f.exec.cancel("r1", "user asked").await.unwrap();
    let rest: Vec<RunUpdate> = updates.collect().await;
    assert_eq!(
        outcome(&rest),
        &Outcome::Canceled {
            reason: "user asked".into()
        }
    );
    assert_gone(leader).await;
    assert_gone(grandchild).await;
    let err = f.exec.cancel("r1", "again").await.unwrap_err();
    assert!(matches!(err, ExecutorError::UnknownRun { .. }), "{err:?}");
}

#[tokio::test]
async fn a_job_ignoring_sigterm_is_killed_after_the_grace() {
    let f = fixture(|c| c);
    let ready = f.path("ready");
    let script = format!(
        "trap '' TERM; echo ok > {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let mut updates = f
        .exec
        .launch(f.spec("r1", sh(&script), JobConfig::default()))
        .await
        .unwrap();
    let Some(RunUpdate::Running { handle }) = updates.next().await else {
        panic!("running")
    };
    wait_for_file(&ready).await;
    f.exec.cancel("r1", "stop").await.unwrap();
    let rest: Vec<RunUpdate> = updates.collect().await;
    assert!(
        matches!(outcome(&rest), Outcome::Canceled { .. }),
        "{rest:?}"
    );
    assert_gone(handle.trim_start_matches("pid:").parse().unwrap()).await;
    let log = read_log(&f.path("logs/r1.jsonl"));
    assert!(
        texts(&log, Stream::Executor)
            .iter()
            .any(|n| n.contains("SIGKILL")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_daemon_holding_stdout_does_not_hold_the_run() {
    let f = fixture(|c| c);
    let gc = f.path("daemon");
    let script = format!("sleep 300 & echo $! > {}; echo done", gc.display());
    let (updates, log) = f.run("r1", &script).await;
    assert!(outcome(&updates).is_success(), "{updates:?}");
    assert_eq!(texts(&log, Stream::Stdout), ["done"]);
    let daemon: u32 = std::fs::read_to_string(&gc)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_gone(daemon).await;
}

#[tokio::test]
async fn a_ten_megabyte_line_is_logged_in_capped_pieces() {
    let f = fixture(|c| c.line_cap(1 << 20));
    let (updates, log) = f
        .run(
            "r1",
            "head -c 10000000 /dev/zero | tr '\\0' x; echo; echo after",
        )
        .await;
    assert!(outcome(&updates).is_success(), "{updates:?}");
    let out: Vec<&LogRecord> = log.iter().filter(|l| l.stream == Stream::Stdout).collect();
    assert!(out.iter().all(|l| l.text.len() <= 1 << 20));
    assert_eq!(out.iter().filter(|l| l.partial).count(), 9);
    let joined: usize = out[..10].iter().map(|l| l.text.len()).sum();
    assert_eq!(joined, 10_000_000);
    assert_eq!(out[10].text, "after");
}

#[tokio::test]
async fn heartbeats_report_cpu_and_memory() {
    let f = fixture(|c| c);
    let (updates, _) = f.run("r1", "sleep 0.5").await;
    let beats: Vec<(Option<u64>, Option<u64>)> = updates
        .iter()
        .filter_map(|u| match u {
            RunUpdate::Heartbeat { cpu_ms, rss_bytes } => Some((*cpu_ms, *rss_bytes)),
            _ => None,
        })
        .collect();
    assert!(!beats.is_empty(), "{updates:?}");
    assert!(
        beats.iter().any(|(_, rss)| rss.is_some_and(|r| r > 0)),
        "{beats:?}"
    );
}

#[tokio::test]
async fn launch_errors_are_typed() {
    let f = fixture(|c| c);
    let missing = Launch::Process(ProcessLaunch::new(vec!["/nonexistent/job".into()]));
    let err = f
        .exec
        .launch(f.spec("r1", missing, JobConfig::default()))
        .await
        .err();
    assert!(
        matches!(&err, Some(ExecutorError::Launch { retryable: false, reason, .. }) if reason.contains("/nonexistent/job")),
        "{err:?}"
    );
    // The job run id is a launch key: a second launch is refused.
    let err = f
        .exec
        .launch(f.spec("r1", sh("true"), JobConfig::default()))
        .await
        .err();
    assert!(
        matches!(&err, Some(ExecutorError::Launch { reason, .. }) if reason.contains("already launched")),
        "{err:?}"
    );
    let fn_job = databuild_core::FnJob::builder("//fn")
        .pattern("x")
        .config(|_| Ok(vec![]))
        .build()
        .unwrap();
    let err = f
        .exec
        .launch(f.spec(
            "r2",
            databuild_core::DataBuildJob::launch(&fn_job),
            JobConfig::default(),
        ))
        .await
        .err();
    assert!(
        matches!(err, Some(ExecutorError::Incompatible { .. })),
        "{err:?}"
    );
    // An unwritable log location (a path under a regular file) fails the
    // run at the launch stage, naming the path; the job is stopped at once.
    std::fs::write(f.path("file"), b"x").unwrap();
    let mut spec = f.spec("r3", sh("sleep 30"), JobConfig::default());
    spec.log_path = f.path("file/logs/r3.jsonl");
    let started = std::time::Instant::now();
    let updates: Vec<RunUpdate> = f.exec.launch(spec).await.unwrap().collect().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not left running"
    );
    assert!(
        matches!(outcome(&updates), Outcome::Failed { stage: FailureStage::Launch, retryable: false, reason, .. } if reason.contains("file/logs/r3.jsonl")),
        "{updates:?}"
    );
    assert_eq!(
        f.exec.info().labels.get("os").map(String::as_str),
        Some("linux")
    );
}

#[tokio::test]
async fn the_config_file_lives_as_long_as_the_run() {
    let f = fixture(|c| c.runs_dir(std::env::temp_dir().join("databuild-local-test-runs")));
    let runs_dir = std::env::temp_dir().join("databuild-local-test-runs");
    let (updates, log) = f
        .run(
            "cfg",
            r#"test -f "$DATABUILD_CONFIG_FILE" && echo "at $DATABUILD_CONFIG_FILE""#,
        )
        .await;
    assert!(matches!(outcome(&updates), Outcome::Succeeded { .. }));
    let expected = runs_dir.join("cfg.json");
    assert_eq!(
        texts(&log, Stream::Stdout),
        [format!("at {}", expected.display())]
    );
    assert!(!expected.exists(), "removed when the run ended");
    // The default lives on tmpfs, private to this user.
    let default = LocalConfig::new("/some/state").runs_dir;
    if std::path::Path::new("/dev/shm").is_dir() {
        assert!(default.starts_with("/dev/shm"), "{default:?}");
    } else {
        assert_eq!(default, std::path::Path::new("/some/state/runs"));
    }
}
