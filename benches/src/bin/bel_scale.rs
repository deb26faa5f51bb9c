//! The SQLite BEL at scale: append throughput with group commit (with and
//! without the kept state's rows), the replay of a 1,000,000-event log into
//! `BuildState`, and a restart's load from the kept state instead.
//!
//! Run: `cargo run --release -p databuild-benches --bin bel_scale [-- <events>]`
//! (default 1,000,000). The log is a realistic one: every job run goes
//! through the success path of the orchestrator (eight events).

use std::sync::Arc;
use std::time::Instant;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::{BelSink, BuildEvent, Event};
use databuild_core::proto::{self, PartitionStatus};
use databuild_core::state::BuildState;
use databuild_core::{JobConfig, PartitionRef};

type Error = Box<dyn std::error::Error>;

/// The eight events of run `n`'s success path, in request `request`.
fn run_events(request: &str, n: u64) -> Vec<BuildEvent> {
    let run = format!("run-{n:08}");
    let out = PartitionRef::from_fmt(format_args!("t/{n}")).unwrap_or_else(|_| unreachable!());
    let task = proto::Task {
        job: Some(proto::JobLabel {
            label: "//bench".into(),
        }),
        config: Some(JobConfig::new([out.clone()]).to_proto()),
        job_definition_digest: "0".repeat(64),
    };
    let t = 1_700_000_000_000_000_000 + n as i64;
    let ev = |event| {
        BuildEvent::at(t, event)
            .for_request(request)
            .for_job_run(&run)
    };
    let status = |s: PartitionStatus| {
        Event::PartitionStatusChanged(proto::PartitionStatusChanged {
            partition: Some(out.to_proto()),
            status: s as i32,
            job_run_id: run.clone(),
        })
    };
    vec![
        ev(Event::JobRunQueued(proto::JobRunQueued {
            task: Some(Box::new(task.clone())),
            attempt: 1,
            previous_job_run_id: String::new(),
        })),
        ev(Event::JobScheduled(proto::JobScheduled {
            job_run_id: run.clone(),
        })),
        ev(status(PartitionStatus::Building)),
        ev(Event::JobRunConfigValidated(
            proto::JobRunConfigValidated {},
        )),
        ev(Event::JobRunRunning(proto::JobRunRunning {
            executor: "local".into(),
            handle: format!("pid:{n}"),
        })),
        ev(Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {})),
        ev(Event::JobRunSucceeded(proto::JobRunSucceeded {
            manifest: Some(Box::new(proto::PartitionManifest {
                outputs: vec![out.to_proto()],
                task: Some(task),
                ..Default::default()
            })),
        })),
        ev(status(PartitionStatus::Available)),
    ]
}

fn main() -> Result<(), Error> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let runs = total / 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        // Append: concurrent appenders, each appending one run's eight
        // events per batch, as an orchestrator's batches are. Group commit
        // takes what waits when a transaction starts, so throughput grows
        // with the number of appenders; the main figure is 8.
        for appenders in [1u64, 32, 128] {
            let bel = Arc::new(SqliteBel::open(dir.path().join(format!("a{appenders}.sqlite")))?);
            let runs = runs.min(200_000 / 8);
            let start = Instant::now();
            let tasks: Vec<_> = (0..appenders)
                .map(|k| {
                    let bel = Arc::clone(&bel);
                    tokio::spawn(async move {
                        let mut n = k;
                        while n < runs {
                            bel.append(run_events(&format!("req-{k}"), n)).await?;
                            n += appenders;
                        }
                        Ok::<(), databuild_core::BelError>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            let t = start.elapsed().as_secs_f64();
            println!(
                "append: {appenders:>3} appenders, 8-event batches: {:.0} events/s",
                (runs * 8) as f64 / t
            );
        }
        let bel = Arc::new(SqliteBel::open(dir.path().join("bel.sqlite"))?);
        let head = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..8u64)
            .map(|k| {
                let bel = Arc::clone(&bel);
                let head = Arc::clone(&head);
                tokio::spawn(async move {
                    let mut n = k;
                    while n < runs {
                        let r = bel.append(run_events(&format!("req-{k}"), n)).await?;
                        head.fetch_max(r.last, std::sync::atomic::Ordering::Relaxed);
                        n += 8;
                    }
                    Ok::<(), databuild_core::BelError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let append = start.elapsed().as_secs_f64();
        let events = head.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "append: {events} events in {append:.2} s = {:.0} events/s (8 appenders, 8-event batches, group commit)",
            events as f64 / append
        );
        // The same with the kept state: each batch also stores the rows it
        // changes (one run, one partition), as an orchestrator's commits do.
        let kept = Arc::new(SqliteBel::open(dir.path().join("kept.sqlite"))?);
        let runs_kept = runs.min(200_000 / 8);
        let start = Instant::now();
        let tasks: Vec<_> = (0..8u64)
            .map(|k| {
                let bel = Arc::clone(&kept);
                tokio::spawn(async move {
                    let mut n = k;
                    while n < runs_kept {
                        let batch = run_events(&format!("req-{k}"), n);
                        let rows = BuildState::replay(&batch)
                            .map_err(|e| databuild_core::BelError::Backend {
                                backend: "bench",
                                source: Box::new(e),
                            })?
                            .to_rows();
                        bel.append_with_state(batch, rows).await?;
                        n += 8;
                    }
                    Ok::<(), databuild_core::BelError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let t = start.elapsed().as_secs_f64();
        println!(
            "append with kept state: {:.0} events/s (8 appenders, 8-event batches, rows of one run and one partition each)",
            (runs_kept * 8) as f64 / t
        );
        drop(kept);
        // One appender, one event per batch: every append waits for its own
        // commit (the worst case for group commit).
        let single = SqliteBel::open(dir.path().join("single.sqlite"))?;
        let n = 20_000u64;
        let start = Instant::now();
        for i in 0..n {
            let mut e = run_events("single", i);
            e.truncate(1);
            single.append(e).await?;
        }
        let t = start.elapsed().as_secs_f64();
        println!(
            "append: {n} single-event batches, one appender: {:.0} events/s ({:.1} us per commit)",
            n as f64 / t,
            t * 1e6 / n as f64
        );
        drop(single);
        // Replay into BuildState, as a restart does.
        drop(bel);
        let bel = SqliteBel::open(dir.path().join("bel.sqlite"))?;
        // The read alone (pages of 10,000, decoded), for where the time goes.
        let start = Instant::now();
        let mut since = 0;
        let mut read = 0usize;
        loop {
            let page = bel
                .read(since, &databuild_core::EventFilter::all(), 10_000)
                .await?;
            read += page.len();
            match page.last() {
                Some(e) if page.len() == 10_000 => since = e.seq,
                _ => break,
            }
        }
        println!(
            "read: {read} events (decoded, no reducer) in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        let start = Instant::now();
        let state = BuildState::load(&bel).await?;
        let replay = start.elapsed().as_secs_f64();
        println!(
            "replay: {} events into BuildState in {replay:.2} s = {:.0} events/s ({} runs, {} partitions)",
            state.last_seq(),
            state.last_seq() as f64 / replay,
            state.runs().count(),
            state.partitions().count()
        );
        // A restart from the kept state: the whole state saved as rows,
        // then loaded (no event replayed).
        let head = bel.head().await?;
        bel.save_state(state.to_rows(), head).await?;
        drop(state);
        drop(bel);
        let bel = SqliteBel::open(dir.path().join("bel.sqlite"))?;
        let start = Instant::now();
        let state = BuildState::load(&bel).await?;
        let load = start.elapsed().as_secs_f64();
        println!(
            "restart from kept state: {} runs, {} partitions in {load:.2} s ({:.1}x the replay)",
            state.runs().count(),
            state.partitions().count(),
            replay / load
        );
        println!(
            "peak RSS {} MiB",
            databuild_benches::peak_rss_bytes().unwrap_or(0) >> 20
        );
        Ok(())
    })
}
