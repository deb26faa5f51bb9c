//! Side-by-side process dispatch: the same DAG of `n` trivial tasks (each
//! `true`) in three shapes, run with parallelism 2 by `ninja -j2`,
//! `make -j2`, a bare spawn loop (two threads spawning and waiting, no
//! dependencies: the floor), and databuild (local executor capturing each
//! run's log, JSONL BEL). Each measure runs in a fresh child process, so
//! peak RSS is that runner's own; wall times are medians of `--reps` runs
//! made in the same session.
//!
//! Run: `cargo run --release -p databuild-benches --bin dispatch [-- --n 1000,10000 --reps 3 --dir /dev/shm]`
//! (needs `ninja` and `make` on PATH). `--dir` says where the work
//! directories go (databuild's logs and BEL; default: the system's temp
//! directory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use databuild_benches::dag::{DagJob, Shape};
use databuild_benches::peak_rss_bytes;
use databuild_core::bel::{EventFilter, JsonlBel};
use databuild_core::proto::build_event::Event;
use databuild_core::{BelSink, Graph, Orchestrator};
use databuild_executor_local::{LocalConfig, LocalExecutor};

type Error = Box<dyn std::error::Error>;

const RUNNERS: [&str; 4] = ["ninja", "make", "bare", "databuild"];

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let mut sizes = vec![1_000, 10_000];
    let mut reps = 3;
    let mut under: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--n" => {
                sizes = it
                    .next()
                    .ok_or("--n needs sizes")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--reps" => reps = it.next().ok_or("--reps needs a count")?.parse()?,
            "--dir" => under = Some(it.next().ok_or("--dir needs a directory")?.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let me = std::env::current_exe()?;
    println!(
        "{:<8} {:>6} | {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>6} {:>6} {:>6} {:>6} | latency p50/p99 (ms)",
        "shape",
        "n",
        "ninja(s)",
        "make(s)",
        "bare(s)",
        "ours(s)",
        "/ninja",
        "/make",
        "/bare",
        "ninjaM",
        "makeM",
        "bareM",
        "oursM"
    );
    for &n in &sizes {
        for shape in Shape::ALL {
            let dir = match &under {
                Some(d) => tempfile::tempdir_in(d)?,
                None => tempfile::tempdir()?,
            };
            std::fs::write(dir.path().join("build.ninja"), shape.ninja(n))?;
            std::fs::write(dir.path().join("Makefile"), shape.makefile(n))?;
            let mut walls: HashMap<&str, Vec<f64>> = HashMap::new();
            let mut rss: HashMap<&str, u64> = HashMap::new();
            let mut latency = String::new();
            for _ in 0..reps {
                for runner in RUNNERS {
                    let work = dir.path().join(format!("work-{runner}"));
                    let _ = std::fs::remove_dir_all(&work);
                    std::fs::create_dir_all(&work)?;
                    let started = Instant::now();
                    let out = Command::new(&me)
                        .args(["--child", runner, shape.name(), &n.to_string()])
                        .arg(dir.path())
                        .arg(&work)
                        .stderr(Stdio::inherit())
                        .output()?;
                    let wall = started.elapsed().as_secs_f64();
                    if !out.status.success() {
                        return Err(format!("{runner} {} {n} failed", shape.name()).into());
                    }
                    let text = String::from_utf8(out.stdout)?;
                    let mut fields = text.split_whitespace();
                    let kib: u64 = fields.next().ok_or("no rss")?.parse()?;
                    if runner == "databuild" {
                        latency = fields.collect::<Vec<_>>().join("/");
                    }
                    walls.entry(runner).or_default().push(wall);
                    let r = rss.entry(runner).or_default();
                    *r = (*r).max(kib);
                }
            }
            let med = |r: &str| {
                let mut v = walls[r].clone();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let ours = med("databuild");
            println!(
                "{:<8} {:>6} | {:>9.3} {:>9.3} {:>9.3} {:>9.3} | {:>8.2} {:>8.2} {:>8.2} | {:>6.1} {:>6.1} {:>6.1} {:>6.1} | {latency}",
                shape.name(),
                n,
                med("ninja"),
                med("make"),
                med("bare"),
                ours,
                ours / med("ninja"),
                ours / med("make"),
                ours / med("bare"),
                rss["ninja"] as f64 / 1024.0,
                rss["make"] as f64 / 1024.0,
                rss["bare"] as f64 / 1024.0,
                rss["databuild"] as f64 / 1024.0,
            );
        }
    }
    Ok(())
}

/// One measure; prints the peak RSS in KiB (and, for databuild, the
/// inter-task latency).
fn child(args: &[String]) -> Result<(), Error> {
    let [runner, shape, n, dir, work] = args else {
        return Err("usage: --child <runner> <shape> <n> <dir> <work>".into());
    };
    let shape = Shape::ALL
        .into_iter()
        .find(|s| s.name() == shape)
        .ok_or("unknown shape")?;
    let n: usize = n.parse()?;
    let dir = Path::new(dir);
    let work = PathBuf::from(work);
    let quiet = |c: &mut Command| -> Result<(), Error> {
        let status = c.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !status.success() {
            return Err(format!("{c:?} failed: {status}").into());
        }
        Ok(())
    };
    match runner.as_str() {
        "ninja" => quiet(
            Command::new("ninja")
                .args(["-j2", "-f"])
                .arg(dir.join("build.ninja"))
                .current_dir(&work),
        )?,
        "make" => quiet(
            Command::new("make")
                .args(["-j2", "-s", "-f"])
                .arg(dir.join("Makefile"))
                .current_dir(&work),
        )?,
        "bare" => {
            let threads: Vec<_> = (0..2)
                .map(|k| {
                    std::thread::spawn(move || {
                        for _ in (k..n).step_by(2) {
                            let ok = Command::new("true")
                                .stdout(Stdio::null())
                                .status()
                                .is_ok_and(|s| s.success());
                            assert!(ok, "true failed");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().map_err(|_| "a spawn thread panicked")?;
            }
        }
        "databuild" => {
            let (kib, latency) = ours(shape, n, &work)?;
            println!("{kib} {latency}");
            return Ok(());
        }
        other => return Err(format!("unknown runner {other}").into()),
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    println!("{}", usage.max_rss());
    Ok(())
}

/// Builds the DAG with databuild; returns the peak RSS (KiB) of the build,
/// and the chain's inter-task latency (job exit seen → dependent running,
/// p50/p99 in ms) or `-`, read from the BEL afterwards.
fn ours(shape: Shape, n: usize, work: &Path) -> Result<(u64, String), Error> {
    let rt = match std::env::var("DISPATCH_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    };
    rt.block_on(async {
        let job = DagJob::new(shape, n, vec!["true".into()]);
        let requested = job.requested();
        let (bel, _) = JsonlBel::open_default(work.join("bel.jsonl")).await?;
        let bel: Arc<dyn BelSink> = Arc::new(bel);
        let state = work.join("state");
        let o = Orchestrator::builder()
            .graph(Graph::builder().job(job).build()?)
            .bel(Arc::clone(&bel))
            .executor(Arc::new(LocalExecutor::new(LocalConfig::new(&state))))
            .state_dir(&state)
            .parallelism(2)
            .build()?;
        let outcome = o.build(&requested).await?;
        if !outcome.succeeded() || outcome.built.len() != n {
            return Err(format!("the build did not build all {n} tasks").into());
        }
        // Before the analysis below reads the whole log into memory.
        let kib = peak_rss_bytes().unwrap_or(0) / 1024;
        if shape != Shape::Chain {
            return Ok((kib, "-".to_owned()));
        }
        // Chain: task i's run starts after task i-1's exit is seen.
        let events = bel.read(0, &EventFilter::all(), usize::MAX).await?;
        let mut task_of = HashMap::new();
        let mut exited = HashMap::new();
        let mut running = HashMap::new();
        for e in &events {
            match &e.event {
                Some(Event::JobRunQueued(q)) => {
                    let out = q
                        .task
                        .as_ref()
                        .and_then(|t| t.config.as_ref())
                        .and_then(|c| c.outputs.first())
                        .map(|o| o.str.clone())
                        .unwrap_or_default();
                    let i: usize = out[2..].parse()?;
                    task_of.insert(e.job_run_id.clone(), i);
                }
                Some(Event::JobRunTaskSucceeded(_)) => {
                    exited.insert(task_of[&e.job_run_id], e.timestamp_ns);
                }
                Some(Event::JobRunRunning(_)) => {
                    running.insert(task_of[&e.job_run_id], e.timestamp_ns);
                }
                _ => {}
            }
        }
        let mut gaps: Vec<i64> = (1..n).map(|i| running[&i] - exited[&(i - 1)]).collect();
        gaps.sort_unstable();
        let ms = |ns: i64| Duration::from_nanos(ns.max(0) as u64).as_secs_f64() * 1e3;
        Ok((
            kib,
            format!(
                "{:.2} {:.2}",
                ms(gaps[gaps.len() / 2]),
                ms(gaps[gaps.len() * 99 / 100])
            ),
        ))
    })
}
