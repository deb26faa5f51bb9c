//! Direct mode after a crash: the next executor on the same runs directory
//! kills the job process groups a SIGKILLed one left running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use databuild_core::job::{JobLabel, Launch, ProcessLaunch};
use databuild_core::{Executor, JobConfig, JobRunSpec};
use databuild_executor_local::{LocalConfig, LocalExecutor};

const CHILD: &str = "DATABUILD_LEFTOVER_CHILD";

fn config(dir: &Path) -> LocalConfig {
    LocalConfig::new(dir.join("state")).runs_dir(dir.join("runs"))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test]
async fn a_new_executor_kills_what_a_killed_one_left() {
    if let Some(dir) = std::env::var_os(CHILD) {
        // The doomed executor: start a job, then wait to be killed.
        let dir = PathBuf::from(dir);
        let exec = LocalExecutor::new(config(&dir));
        let pid_file = dir.join("job.pid");
        let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
        let spec = JobRunSpec::new(
            "run-1",
            "req",
            JobLabel::new("//j").unwrap(),
            JobConfig::default(),
            Launch::Process(ProcessLaunch::new(vec![
                "sh".into(),
                "-c".into(),
                script,
                "sh".into(),
            ])),
            dir.join("logs/run-1.jsonl"),
        );
        let _updates = exec.launch(spec).await.unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_new_executor_kills_what_a_killed_one_left",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("job.pid");
    let job: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Give the executor the moment to record the run's pid, then crash it.
    for _ in 0..200 {
        if dir.path().join("runs/run-1.pid").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive(job), "the job outlived its executor");

    // A new executor on the same runs directory kills it.
    let _exec = LocalExecutor::new(config(dir.path()));
    for _ in 0..200 {
        if !alive(job) {
            assert!(!dir.path().join("runs/run-1.pid").exists());
            assert!(!dir.path().join("runs/run-1.json").exists());
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {job} was left running");
}

#[tokio::test]
async fn a_live_executor_keeps_its_runs_from_a_second_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalExecutor::new(config(dir.path()));
    let spec = JobRunSpec::new(
        "run-live",
        "req",
        JobLabel::new("//j").unwrap(),
        JobConfig::default(),
        Launch::Process(ProcessLaunch::new(vec!["sleep".into(), "30".into()])),
        dir.path().join("logs/run-live.jsonl"),
    );
    let _updates = first.launch(spec).await.unwrap();
    assert!(dir.path().join("runs/run-live.pid").exists());
    // Another executor on the same directory while the first lives: no sweep.
    let _second = LocalExecutor::new(config(dir.path()));
    assert!(dir.path().join("runs/run-live.pid").exists());
    first.cancel("run-live", "done").await.unwrap();
}
