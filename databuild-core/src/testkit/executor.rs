//! The executor conformance suite.
//!
//! Backend-agnostic: the suite asks the harness for a [`Launch`] that
//! behaves a certain way ([`Behaviour`]); a backend that cannot express a
//! behaviour returns `None` and the checks that need it are skipped, with a
//! printed notice. Backend differences enter as capabilities, never as
//! checks on the backend's name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::executor::{
    Executor, ExecutorError, ExitStatus, JobRunSpec, LogRecord, Outcome, RunUpdate, RunUpdates,
    Stream,
};
use crate::job::{JobConfig, JobLabel, Launch};
use crate::partition::PartitionRef;

/// What a job run should do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// Print `hello` on stdout and `oops` on stderr, then succeed.
    Succeed,
    /// Exit with code 3 (or fail, for in-process jobs).
    Fail,
    /// Print the protocol's missing-deps line naming `missing`, then exit 1.
    ReportMissing {
        /// The missing partition.
        missing: String,
    },
    /// Print `args:<args joined by spaces>`, `run:$DATABUILD_JOB_RUN_ID`,
    /// `attempt:$DATABUILD_ATTEMPT` and `k:$K` (the config's env `K`), one
    /// per line, then succeed.
    EchoEnvAndArgs,
    /// Run until stopped.
    Hang,
}

/// A POSIX `sh` script that behaves as asked (for backends that run it
/// with `sh -c`: local processes, containers), or `None` for behaviours a
/// script does not express.
pub fn sh_script(behaviour: &Behaviour) -> Option<String> {
    Some(match behaviour {
        Behaviour::Succeed => "echo hello; echo oops >&2".to_owned(),
        Behaviour::Fail => "exit 3".to_owned(),
        Behaviour::ReportMissing { missing } => {
            let line = serde_json::json!({
                "missing_deps": [{"impacted": ["conformance/out"], "missing": [missing]}]
            });
            format!("echo '__DATABUILD_ERROR__::{line}'; exit 1")
        }
        Behaviour::EchoEnvAndArgs => {
            r#"echo "args:$*"; echo "run:$DATABUILD_JOB_RUN_ID"; echo "attempt:$DATABUILD_ATTEMPT"; echo "k:$K""#.to_owned()
        }
        Behaviour::Hang => "exec sleep 300".to_owned(),
    })
}

/// A harness for backends that run [`sh_script`]s as `sh -c <script>`
/// (local processes, containers with a default image that has `sh`), with
/// logs under a temporary directory.
pub struct ShellHarness {
    /// The backend's name, for messages.
    pub name: &'static str,
    /// The executor under test.
    pub executor: Arc<dyn Executor>,
    /// Where run logs go (`logs/` inside it).
    pub dir: tempfile::TempDir,
}

impl std::fmt::Debug for ShellHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellHarness")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ExecutorHarness for ShellHarness {
    fn name(&self) -> &str {
        self.name
    }
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::clone(&self.executor)
    }
    fn launch_for(&self, behaviour: &Behaviour) -> Option<Launch> {
        let script = sh_script(behaviour)?;
        Some(Launch::Process(crate::job::ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
        ])))
    }
    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    fn captures_logs(&self) -> bool {
        true
    }
}

/// How the suite makes and drives one backend.
#[async_trait]
pub trait ExecutorHarness: Send + Sync {
    /// The backend's name, for messages.
    fn name(&self) -> &str;
    /// The executor under test.
    fn executor(&self) -> Arc<dyn Executor>;
    /// A launch that behaves as asked, or `None` when the backend cannot.
    fn launch_for(&self, behaviour: &Behaviour) -> Option<Launch>;
    /// A directory for run logs.
    fn log_dir(&self) -> PathBuf;
    /// Whether the backend writes the job's output to the run's log.
    fn captures_logs(&self) -> bool;
}

/// Runs every check.
pub async fn run_all(h: &dyn ExecutorHarness) {
    success_is_reported(h).await;
    non_zero_exit_is_a_failure(h).await;
    missing_deps_line_is_parsed(h).await;
    env_and_args_are_passed(h).await;
    cancel_stops_the_run(h).await;
    unknown_runs_are_typed_errors(h).await;
}

fn skip(h: &dyn ExecutorHarness, check: &str) {
    println!(
        "skipping {check} on {}: the backend cannot express it",
        h.name()
    );
}

fn spec(h: &dyn ExecutorHarness, launch: Launch, config: JobConfig) -> JobRunSpec {
    let id = uuid::Uuid::now_v7().to_string();
    let log = h.log_dir().join(format!("{id}.jsonl"));
    JobRunSpec::new(
        id,
        "conformance",
        JobLabel::new("//conformance").expect("label"),
        config,
        launch,
        log,
    )
}

fn outputs() -> JobConfig {
    JobConfig::new([PartitionRef::new("conformance/out").expect("ref")])
}

async fn collect(h: &dyn ExecutorHarness, updates: RunUpdates) -> Vec<RunUpdate> {
    tokio::time::timeout(Duration::from_secs(120), updates.collect())
        .await
        .unwrap_or_else(|_| panic!("{}: a run did not end within 120 s", h.name()))
}

fn outcome<'a>(h: &dyn ExecutorHarness, updates: &'a [RunUpdate]) -> &'a Outcome {
    match updates.last() {
        Some(RunUpdate::Exited(o)) => o,
        other => panic!("{}: the last update is not Exited but {other:?}", h.name()),
    }
}

fn check_shape(h: &dyn ExecutorHarness, updates: &[RunUpdate]) {
    assert!(
        matches!(updates.first(), Some(RunUpdate::Running { .. })),
        "{}: the first update is not Running: {updates:?}",
        h.name()
    );
    let exits = updates
        .iter()
        .filter(|u| matches!(u, RunUpdate::Exited(_)))
        .count();
    assert_eq!(exits, 1, "{}: exactly one Exited: {updates:?}", h.name());
}

fn stdout_lines(h: &dyn ExecutorHarness, spec_log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(spec_log)
        .unwrap_or_else(|e| panic!("{}: no run log at {}: {e}", h.name(), spec_log.display()));
    text.lines()
        .map(|l| serde_json::from_str::<LogRecord>(l).expect("log record"))
        .filter(|r| r.stream == Stream::Stdout)
        .map(|r| r.text)
        .collect()
}

/// A run that succeeds reports Running, then Succeeded; its output is in
/// its log.
pub async fn success_is_reported(h: &dyn ExecutorHarness) {
    let Some(launch) = h.launch_for(&Behaviour::Succeed) else {
        return skip(h, "success_is_reported");
    };
    let s = spec(h, launch, outputs());
    let log = s.log_path.clone();
    let updates = collect(h, h.executor().launch(s).await.expect("launch")).await;
    check_shape(h, &updates);
    assert!(
        outcome(h, &updates).is_success(),
        "{}: {updates:?}",
        h.name()
    );
    if h.captures_logs() {
        assert_eq!(
            stdout_lines(h, &log),
            ["hello"],
            "{}: stdout in the log",
            h.name()
        );
    }
}

/// A run that fails is a retryable task failure.
pub async fn non_zero_exit_is_a_failure(h: &dyn ExecutorHarness) {
    let Some(launch) = h.launch_for(&Behaviour::Fail) else {
        return skip(h, "non_zero_exit_is_a_failure");
    };
    let updates = collect(
        h,
        h.executor()
            .launch(spec(h, launch, outputs()))
            .await
            .expect("launch"),
    )
    .await;
    check_shape(h, &updates);
    match outcome(h, &updates) {
        Outcome::Failed {
            retryable, exit, ..
        } => {
            assert!(*retryable, "{}: a task failure is retryable", h.name());
            if let Some(exit) = exit {
                assert_eq!(*exit, ExitStatus::Code(3), "{}: exit status", h.name());
            }
        }
        other => panic!("{}: expected a failure, got {other:?}", h.name()),
    }
}

/// The missing-deps line decides the outcome, whatever the exit code.
pub async fn missing_deps_line_is_parsed(h: &dyn ExecutorHarness) {
    let behaviour = Behaviour::ReportMissing {
        missing: "conformance/in".into(),
    };
    let Some(launch) = h.launch_for(&behaviour) else {
        return skip(h, "missing_deps_line_is_parsed");
    };
    let updates = collect(
        h,
        h.executor()
            .launch(spec(h, launch, outputs()))
            .await
            .expect("launch"),
    )
    .await;
    check_shape(h, &updates);
    match outcome(h, &updates) {
        Outcome::MissingDeps { missing_deps, .. } => {
            let missing: Vec<&str> = missing_deps
                .iter()
                .flat_map(|m| m.missing.iter().map(PartitionRef::as_str))
                .collect();
            assert_eq!(missing, ["conformance/in"], "{}", h.name());
        }
        other => panic!("{}: expected missing deps, got {other:?}", h.name()),
    }
}

/// Args, the config's env and the `DATABUILD_*` variables reach the job.
pub async fn env_and_args_are_passed(h: &dyn ExecutorHarness) {
    let Some(launch) = h.launch_for(&Behaviour::EchoEnvAndArgs) else {
        return skip(h, "env_and_args_are_passed");
    };
    if !h.captures_logs() {
        return skip(h, "env_and_args_are_passed");
    }
    let config = outputs()
        .arg("--day")
        .arg("2024-01-01")
        .env("K", "value with spaces");
    let mut s = spec(h, launch, config);
    s.attempt = 2;
    let (id, log) = (s.job_run_id.clone(), s.log_path.clone());
    let updates = collect(h, h.executor().launch(s).await.expect("launch")).await;
    assert!(
        outcome(h, &updates).is_success(),
        "{}: {updates:?}",
        h.name()
    );
    assert_eq!(
        stdout_lines(h, &log),
        [
            "args:exec --day 2024-01-01".to_owned(),
            format!("run:{id}"),
            "attempt:2".to_owned(),
            "k:value with spaces".to_owned(),
        ],
        "{}",
        h.name()
    );
}

/// Cancel stops a running run, and the stream ends with `Canceled` carrying
/// the reason; a second cancel names an unknown run.
pub async fn cancel_stops_the_run(h: &dyn ExecutorHarness) {
    let Some(launch) = h.launch_for(&Behaviour::Hang) else {
        return skip(h, "cancel_stops_the_run");
    };
    let executor = h.executor();
    let s = spec(h, launch, outputs());
    let id = s.job_run_id.clone();
    let mut updates = executor.launch(s).await.expect("launch");
    let first = updates.next().await;
    assert!(
        matches!(first, Some(RunUpdate::Running { .. })),
        "{}: {first:?}",
        h.name()
    );
    executor.cancel(&id, "conformance").await.expect("cancel");
    let rest = collect(h, updates).await;
    assert_eq!(
        outcome(h, &rest),
        &Outcome::Canceled {
            reason: "conformance".into()
        },
        "{}",
        h.name()
    );
    let again = executor.cancel(&id, "again").await;
    assert!(
        matches!(again, Err(ExecutorError::UnknownRun { .. })),
        "{}: cancelling a finished run: {again:?}",
        h.name()
    );
}

/// Cancelling a run nobody launched is a typed error.
pub async fn unknown_runs_are_typed_errors(h: &dyn ExecutorHarness) {
    let err = h.executor().cancel("never-launched", "x").await;
    assert!(
        matches!(err, Err(ExecutorError::UnknownRun { .. })),
        "{}: {err:?}",
        h.name()
    );
}
