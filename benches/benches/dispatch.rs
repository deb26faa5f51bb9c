//! Criterion bench: dispatch through the orchestrator with the scripted
//! executor (every run succeeds at once) and the memory BEL, so what is
//! measured is the orchestrator itself: planning, queueing, slots, events
//! checked by the reducer and appended, wake-ups. Throughput is in job runs
//! per second (`Elements`).
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use databuild_benches::dag::{DagJob, Shape};
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{Graph, MemoryBel, Orchestrator};

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("dispatch");
    group.sample_size(10);
    let n = 10_000;
    group.throughput(Throughput::Elements(n as u64));
    for shape in Shape::ALL {
        group.bench_with_input(BenchmarkId::new(shape.name(), n), &shape, |b, &shape| {
            b.iter(|| {
                let job = DagJob::new(shape, n, vec!["true".into()]);
                let requested = job.requested();
                let o = Orchestrator::builder()
                    .graph(Graph::builder().job(job).build().expect("graph"))
                    .bel(Arc::new(MemoryBel::new()))
                    .executor(Arc::new(ScriptedExecutor::with_script(|_| {
                        Script::succeed()
                    })))
                    .state_dir(dir.path())
                    .parallelism(2)
                    .build()
                    .expect("orchestrator");
                let outcome = rt.block_on(o.build(&requested)).expect("build");
                assert_eq!(outcome.built.len(), n);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
