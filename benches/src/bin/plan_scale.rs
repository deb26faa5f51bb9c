//! Plans the synthetic daily graph at the sizes given on the command line
//! (default 10k, 100k, 1M partitions) and the 10k self-dependent chain,
//! printing time, peak RSS, config calls, and the time ratio per 10x.
//!
//! Run: `cargo run --release -p databuild-benches --bin plan_scale [-- 10000 100000 1000000]`.
//! Peak RSS is the process's high-water mark, so sizes run smallest first.

use std::sync::Arc;
use std::time::Instant;

use databuild_benches::{ConfigCalls, JOBS, chain_graph, daily_graph, peak_rss_bytes};
use databuild_core::Planner;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000, 1_000_000];
    }
    sizes.sort_unstable();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;

    println!(
        "shape            partitions    tasks      edges   configs   time(s)  in config(s)  peak RSS(MiB)"
    );
    let calls = Arc::new(ConfigCalls::default());
    let (graph, requested) = chain_graph(10_000, &calls);
    let planner = Planner::new(graph);
    let t = Instant::now();
    let plan = rt.block_on(planner.analyze(&requested))?;
    report("chain", 10_000, &plan, &calls, t.elapsed().as_secs_f64());
    drop(plan);

    let mut previous: Option<(usize, f64)> = None;
    for size in sizes {
        let calls = Arc::new(ConfigCalls::default());
        let (graph, requested) = daily_graph(size / JOBS, &calls);
        let planner = Planner::new(graph);
        let t = Instant::now();
        let plan = rt.block_on(planner.analyze(&requested))?;
        let secs = t.elapsed().as_secs_f64();
        report("daily x10 jobs", size, &plan, &calls, secs);
        assert_eq!(plan.len(), size / JOBS * JOBS, "one config per output");
        if let Some((prev_size, prev_secs)) = previous {
            println!(
                "    {}x the partitions took {:.2}x the time",
                size / prev_size,
                secs / prev_secs
            );
        }
        previous = Some((size, secs));
        // Dropping a large plan takes time too; keep it out of the next timing.
        drop(plan);
    }
    Ok(())
}

fn report(
    shape: &str,
    size: usize,
    plan: &databuild_core::JobGraph,
    calls: &ConfigCalls,
    secs: f64,
) {
    let rss = peak_rss_bytes().map_or("?".to_owned(), |b| format!("{:.0}", b as f64 / 1048576.0));
    println!(
        "{shape:<16} {size:>10} {:>8} {:>10} {:>9} {secs:>9.3} {:>13.3} {rss:>14}",
        plan.len(),
        plan.edge_count(),
        calls.get(),
        calls.time().as_secs_f64(),
    );
}
