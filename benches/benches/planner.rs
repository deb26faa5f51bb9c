//! Criterion bench: graph.analyze on the synthetic daily graph at 10k and
//! 100k partitions, and the 10k-day self-dependent chain. The 1M size runs in
//! `plan_scale` (one pass, with peak memory), see `benches/README.md`.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use databuild_benches::{ConfigCalls, JOBS, chain_graph, daily_graph};
use databuild_core::Planner;

fn planner(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("analyze");
    group.sample_size(10);
    for size in [10_000usize, 100_000] {
        let calls = Arc::new(ConfigCalls::default());
        let (graph, requested) = daily_graph(size / JOBS, &calls);
        let planner = Planner::new(graph);
        group.bench_with_input(
            BenchmarkId::new("daily", size),
            &requested,
            |b, requested| {
                b.iter(|| rt.block_on(planner.analyze(requested)).expect("plan"));
            },
        );
    }
    let calls = Arc::new(ConfigCalls::default());
    let (graph, requested) = chain_graph(10_000, &calls);
    let planner = Planner::new(graph);
    group.bench_function("chain/10000", |b| {
        b.iter(|| rt.block_on(planner.analyze(&requested)).expect("plan"));
    });
    group.finish();
}

criterion_group!(benches, planner);
criterion_main!(benches);
