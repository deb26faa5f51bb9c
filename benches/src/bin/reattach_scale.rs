//! Re-entrance at scale: 1,000 running jobs (each `sleep`) launched in the
//! local executor's runner mode, the executor dropped (as a crashed
//! orchestrator's would be), then the time for a new executor to list the
//! surviving runs and re-attach to every one (its first update received).
//!
//! Run: `cargo run --release -p databuild-benches --bin reattach_scale [-- <runs>]`
//! (needs the runner: `cargo build --release -p databuild-executor-local
//! --bin databuild-runner` first).

use std::time::{Duration, Instant};

use databuild_core::job::{JobLabel, Launch, ProcessLaunch};
use databuild_core::{Executor, JobConfig, JobRunSpec, PartitionRef};
use databuild_executor_local::{LocalConfig, LocalExecutor};
use futures::StreamExt;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000);
    let runner = std::env::current_exe()?
        .with_file_name("databuild-runner")
        .to_string_lossy()
        .into_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let config = || {
            LocalConfig::new(dir.path().join("state"))
                .runner(vec![runner.clone()])
                .kill_grace(Duration::from_secs(1))
        };
        let first = LocalExecutor::new(config());
        let start = Instant::now();
        for i in 0..n {
            let spec = JobRunSpec::new(
                format!("run-{i:05}"),
                "req",
                JobLabel::new("//sleep")?,
                JobConfig::new([PartitionRef::from_fmt(format_args!("s/{i}"))?]),
                Launch::Process(ProcessLaunch::new(vec![
                    "sh".into(),
                    "-c".into(),
                    "exec sleep 120".into(),
                    "sh".into(),
                ])),
                dir.path().join(format!("logs/run-{i:05}.jsonl")),
            );
            drop(first.launch(spec).await?);
        }
        println!(
            "launched {n} runs in runner mode in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        drop(first);
        // Let every runner start its job.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let second = LocalExecutor::new(config());
        let start = Instant::now();
        let runs = second.list_runs().await?;
        let listed = start.elapsed();
        let mut streams = Vec::with_capacity(runs.len());
        for r in &runs {
            let mut updates = second.reattach(&r.job_run_id).await?;
            updates.next().await.ok_or("no first update")?;
            streams.push(updates);
        }
        let all = start.elapsed();
        println!(
            "re-attached {} of {n} running runs in {:.3} s (listing {:.3} s)",
            runs.iter().filter(|r| r.running).count(),
            all.as_secs_f64(),
            listed.as_secs_f64()
        );
        for r in &runs {
            let _ = second.cancel(&r.job_run_id, "bench done").await;
        }
        for mut s in streams {
            while s.next().await.is_some() {}
        }
        Ok(())
    })
}
