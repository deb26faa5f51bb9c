//! A job writing 1 GiB to stdout leaves the orchestrator's memory flat: the
//! output is streamed line by line into the run's log, never held. (Its own
//! test binary, so no other test's allocations blur the measure.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use databuild_core::job::ProcessJob;
use databuild_core::{Graph, MemoryBel, Orchestrator, PartitionRef};
use databuild_executor_local::{LocalConfig, LocalExecutor};

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

const GIB: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_of_stdout_leaves_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB of 1,000-byte lines (the `config` answer comes from a script
    // too: the job is a real protocol job).
    let script = format!(
        r#"case "$1" in
  config) shift; printf '{{"configs":[{{"outputs":[{{"str":"%s"}}],"inputs":[],"args":[]}}]}}' "$1" ;;
  exec) yes "$(printf '%0999d' 0)" | head -c {GIB} ;;
esac"#
    );
    let argv = vec!["sh".into(), "-c".into(), script, "sh".into()];
    let job = ProcessJob::builder("//loud", argv)
        .pattern("loud/.*")
        .build()
        .unwrap();
    let state = dir.path().join("state");
    let o = Orchestrator::builder()
        .graph(Graph::builder().job(job).build().unwrap())
        .bel(Arc::new(MemoryBel::new()))
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(&state))))
        .state_dir(&state)
        .build()
        .unwrap();
    let baseline = rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = tokio::spawn({
        let peak = Arc::clone(&peak);
        async move {
            loop {
                peak.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let outcome = o
        .build(&[PartitionRef::new("loud/1").unwrap()])
        .await
        .unwrap();
    sampler.abort();
    assert!(outcome.succeeded(), "{:?}", outcome.not_built);
    let logs: u64 = walk(&state.join("logs"));
    assert!(
        logs > GIB,
        "the whole output went to the log ({logs} bytes)"
    );
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    println!(
        "baseline {} MiB, growth {} MiB over 1 GiB of output",
        baseline >> 20,
        growth >> 20
    );
    assert!(
        growth < 64 << 20,
        "memory grew by {} MiB while 1 GiB streamed through",
        growth >> 20
    );
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}
