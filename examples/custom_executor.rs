//! A custom executor backend: a worker pool that runs job runs as processes
//! through a configurable remote-shell style wrapper, written only against
//! the public API of `databuild-core`. The backend is in
//! `custom_executor/pool.rs`, commented as a guide to writing your own; its
//! test runs the executor conformance suite on it.
//!
//! This program builds a small graph of shell jobs on it
//! (`custom_executor/graph.rs`): three days of reports, each of which finds
//! out at run time that it needs a partition nobody asked for. It prints
//! which worker ran what, and how each run ended.
//!
//! Run: `cargo run -p databuild-examples --example custom_executor [-- <wrapper>...]`,
//! for instance `-- env` or `-- nice -n 10` to run every job through that
//! command. State goes under `./.databuild/custom-executor`.

#[path = "custom_executor/graph.rs"]
mod graph;
#[path = "custom_executor/pool.rs"]
mod pool;

use std::sync::Arc;

use databuild_core::bel::{BelSink, Event, EventFilter};
use databuild_core::{MemoryBel, Orchestrator};
use pool::{PoolConfig, WorkerPool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let home = std::env::current_dir()?.join(".databuild/custom-executor");
    let data = home.join("data");
    // The build event log below lives in memory and starts empty, so the
    // data starts empty too.
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let config = PoolConfig {
        wrapper: std::env::args().skip(1).collect(),
        ..PoolConfig::new(&home)
    };
    let wrapper = if config.wrapper.is_empty() {
        "none".to_owned()
    } else {
        config.wrapper.join(" ")
    };
    println!(
        "worker pool: {} workers, wrapper: {wrapper}",
        config.workers
    );

    // The orchestrator sends process jobs to the pool; everything around
    // the runs (order, limits, retries, missing deps, the event log) is its
    // own work.
    let bel = MemoryBel::new();
    let orchestrator = Orchestrator::builder()
        .graph(graph::graph(&data)?)
        .executor(Arc::new(WorkerPool::new(config)))
        .bel(Arc::new(bel.clone()))
        .state_dir(&home)
        // More slots than workers: some launches wait in the pool's queue.
        .parallelism(4)
        .build()?;
    let requested = graph::requested()?;
    let outcome = orchestrator.build(&requested).await?;

    // Each run, in the order they started: what it built, where it ran (the
    // handle the pool reported with `Running`) and how it ended.
    println!("job runs:");
    let state = orchestrator.state();
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await?;
    for event in &events {
        let Some(Event::JobRunRunning(running)) = &event.event else {
            continue;
        };
        let Some(run) = state.run(&event.job_run_id) else {
            continue;
        };
        let config = run.task.config.iter();
        let outputs: Vec<&str> = config
            .flat_map(|c| &c.outputs)
            .map(|o| o.str.as_str())
            .collect();
        println!(
            "  {:<22} on {:<20} {:?}",
            outputs.join(" "),
            running.handle,
            run.state
        );
    }
    println!(
        "built {} partitions, {} not built",
        outcome.built.len(),
        outcome.not_built.len()
    );
    for missing in &outcome.not_built {
        println!("  NOT BUILT {}: {}", missing.partition, missing.reason);
    }
    for report in &requested {
        if let Ok(text) = std::fs::read_to_string(data.join(report.as_str())) {
            println!("{report}: {}", text.trim_end());
        }
    }
    println!("each run's log is under {}", home.join("logs").display());
    if outcome.succeeded() {
        Ok(())
    } else {
        Err("the build failed".into())
    }
}
