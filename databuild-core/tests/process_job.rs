//! `ProcessJob`'s config call against real processes that misbehave.

use std::path::{Path, PathBuf};
use std::time::Duration;

use databuild_core::{DataBuildJob, DataDep, JobConfigError, PartitionRef, ProcessJob};

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config_job.py")
        .to_string_lossy()
        .into_owned()
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

fn job(mode: &str, evidence: &Path) -> databuild_core::job::ProcessJobBuilder {
    ProcessJob::builder("//fixture", vec!["python3".into(), fixture()])
        .pattern("out/.*")
        .env("FIXTURE_MODE", mode)
        .env("FIXTURE_DIR", evidence.to_string_lossy())
}

async fn config(mode: &str) -> Result<Vec<databuild_core::JobConfig>, JobConfigError> {
    let dir = tempfile::tempdir().unwrap();
    job(mode, dir.path())
        .build()
        .unwrap()
        .config(&[r("out/1"), r("out/2")])
        .await
}

/// True while a process exists (and is not a zombie awaiting its parent).
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

fn pids(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Waits (bounded) for processes to disappear; killed processes may take a
/// moment to be reaped by their new parent.
async fn assert_gone(pids: &[u32]) {
    for _ in 0..500 {
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("processes still alive: {pids:?}");
}

#[tokio::test]
async fn one_config_per_output() {
    let configs = config("good").await.unwrap();
    assert_eq!(configs.len(), 2);
    assert_eq!(configs[0].outputs, [r("out/1")]);
    assert_eq!(configs[0].inputs, [DataDep::materialize(r("in/1"))]);
    assert_eq!(configs[1].args, ["--ref", "out/2"]);
    assert_eq!(configs[1].env.get("REF").map(String::as_str), Some("out/2"));
}

#[tokio::test]
async fn a_batching_config() {
    let configs = config("batch").await.unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].outputs, [r("out/1"), r("out/2")]);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    assert_eq!(config("unknown_fields").await.unwrap().len(), 2);
}

#[tokio::test]
async fn malformed_json_is_quoted() {
    let err = config("malformed").await.unwrap_err();
    let JobConfigError::MalformedOutput { job, output, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(job.as_str(), "//fixture");
    assert!(
        output.contains(r#"{\"configs\": [{\"outputs\": ["#),
        "{output}"
    );
    assert!(
        err.to_string()
            .starts_with("job //fixture: malformed config output"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_dep_type_code_is_malformed() {
    let err = config("no_code").await.unwrap_err();
    assert!(
        matches!(&err, JobConfigError::MalformedOutput { reason, .. } if reason.contains("dep_type_code")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_disagreeing_dep_type_name_is_malformed() {
    let err = config("bad_name").await.unwrap_err();
    assert!(
        matches!(&err, JobConfigError::MalformedOutput { reason, .. } if reason.contains("disagrees")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_invalid_ref_is_named() {
    let err = config("bad_ref").await.unwrap_err();
    assert!(matches!(err, JobConfigError::InvalidRef { .. }), "{err:?}");
    assert!(err.to_string().contains("out/../etc"), "{err}");
}

#[tokio::test]
async fn a_non_zero_exit_quotes_stderr() {
    let err = config("exit3").await.unwrap_err();
    let JobConfigError::NonZeroExit { status, stderr, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(status, "exit code 3");
    assert!(stderr.contains("cannot reach the metastore"), "{stderr}");
}

#[tokio::test]
async fn death_by_signal_is_reported() {
    let err = config("signal").await.unwrap_err();
    assert!(
        matches!(&err, JobConfigError::NonZeroExit { status, .. } if status.starts_with("signal 9")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hanging_config_times_out_and_its_group_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let job = job("hang", dir.path())
        .config_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let err = job.config(&[r("out/1")]).await.unwrap_err();
    assert!(matches!(err, JobConfigError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("did not finish within 3s"),
        "{err}"
    );
    let pids = pids(dir.path());
    assert_eq!(pids.len(), 2, "the fixture and its grandchild");
    assert_gone(&pids).await;
}

#[tokio::test]
async fn huge_output_is_cut_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let job = job("huge", dir.path())
        .max_config_output(1 << 20)
        .build()
        .unwrap();
    let err = job.config(&[r("out/1")]).await.unwrap_err();
    let JobConfigError::OutputTooLarge { limit, output, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*limit, 1 << 20);
    assert!(output.starts_with("\"xxxx"), "{output}");
    assert!(
        err.to_string().len() < 2_000,
        "the error quotes a prefix only"
    );
}

#[tokio::test]
async fn a_hundred_megabytes_of_output_under_the_default_limit_is_malformed_not_held() {
    // 100 MB is above the default 64 MiB cap: reading stops there.
    let err = config("huge").await.unwrap_err();
    assert!(
        matches!(&err, JobConfigError::OutputTooLarge { limit, .. } if *limit == ProcessJob::DEFAULT_MAX_CONFIG_OUTPUT),
        "{err:?}"
    );
}

#[tokio::test]
async fn non_utf8_output_is_malformed_and_quoted_lossily() {
    let err = config("nonutf8").await.unwrap_err();
    let JobConfigError::MalformedOutput { output, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(output.contains('\u{fffd}'), "{output}");
    assert!(output.contains("\\0"), "{output}");
}

#[tokio::test]
async fn a_grandchild_holding_stdout_does_not_hang_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let job = job("grandchild_holds_stdout", dir.path())
        .drain_grace(Duration::from_millis(300))
        .config_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let configs = job.config(&[r("out/1")]).await.unwrap();
    assert_eq!(configs.len(), 1);
    assert_gone(&pids(dir.path())).await;
}

#[tokio::test]
async fn a_missing_entrypoint_is_a_spawn_error() {
    let job = ProcessJob::builder("//gone", vec!["/nonexistent/databuild-job".into()])
        .pattern("out/.*")
        .build()
        .unwrap();
    let err = job.config(&[r("out/1")]).await.unwrap_err();
    assert!(matches!(err, JobConfigError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/databuild-job"),
        "{err}"
    );
}

#[tokio::test]
async fn many_refs_are_split_over_several_calls() {
    let dir = tempfile::tempdir().unwrap();
    let job = job("count_calls", dir.path())
        .max_argv_bytes(4096)
        .build()
        .unwrap();
    let refs: Vec<PartitionRef> = (0..1000).map(|i| r(&format!("out/{i:05}"))).collect();
    let configs = job.config(&refs).await.unwrap();
    assert_eq!(configs.len(), 1000);
    let outputs: Vec<PartitionRef> = configs.iter().map(|c| c.outputs[0].clone()).collect();
    assert_eq!(outputs, refs);
    let calls: Vec<usize> = std::fs::read_to_string(dir.path().join("calls"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(calls.len() >= 3, "{calls:?}");
    assert_eq!(calls.iter().sum::<usize>(), 1000);
}

#[tokio::test]
async fn env_and_working_dir_are_passed() {
    let dir = tempfile::tempdir().unwrap();
    let cwd: PathBuf = dir.path().canonicalize().unwrap();
    let job = job("env_and_cwd", dir.path())
        .env("JOB_SETTING", "eu-west")
        .working_dir(&cwd)
        .build()
        .unwrap();
    let configs = job.config(&[r("out/1")]).await.unwrap();
    assert_eq!(
        configs[0].args,
        ["eu-west".to_owned(), cwd.to_string_lossy().into_owned()]
    );
    let databuild_core::Launch::Process(launch) = job.launch() else {
        panic!("a process job launches a process")
    };
    assert_eq!(
        launch.env.get("JOB_SETTING").map(String::as_str),
        Some("eu-west")
    );
    assert_eq!(launch.working_dir.as_deref(), Some(cwd.as_path()));
}

#[tokio::test]
async fn the_planner_plans_through_a_process_job() {
    let dir = tempfile::tempdir().unwrap();
    let raw = databuild_core::FnJob::builder("//raw")
        .pattern("in/.*")
        .config(|outs: &[PartitionRef]| {
            Ok(outs
                .iter()
                .map(|o| databuild_core::JobConfig::new([o.clone()]))
                .collect())
        })
        .build()
        .unwrap();
    let graph = databuild_core::Graph::builder()
        .job(job("good", dir.path()).build().unwrap())
        .job(raw)
        .build()
        .unwrap();
    let plan = databuild_core::Planner::new(graph)
        .analyze(&[r("out/1"), r("out/2")])
        .await
        .unwrap();
    assert_eq!(plan.len(), 4);
    assert_eq!(plan.edge_count(), 2);
    let producer = plan.producer(&r("out/1")).unwrap();
    assert_eq!(plan.task(producer).job.as_str(), "//fixture");
    assert_eq!(plan.task(producer).config.args, ["--ref", "out/1"]);
}
