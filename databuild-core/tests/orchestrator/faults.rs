//! A BEL that fails mid-build (a full disk): the build ends with a typed
//! error naming the cause, the live state holds exactly what the log holds,
//! and the orchestrator goes on serving requests once the disk has room.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use databuild_core::bel::BelError;
use databuild_core::state::BuildState;
use databuild_core::testkit::hooked::HookedSink;
use databuild_core::testkit::scripted::ScriptedExecutor;
use databuild_core::{BuildError, BuildOptions};

use super::*;

#[tokio::test(start_paused = true)]
async fn a_full_disk_fails_the_build_and_loses_nothing() {
    let memory = MemoryBel::new();
    let full = Arc::new(AtomicBool::new(false));
    // Appends fail with ENOSPC while `full` is set.
    let bel = {
        let full = Arc::clone(&full);
        HookedSink::new(Arc::new(memory.clone())).before_append(move |_| {
            if full.load(Ordering::SeqCst) {
                return Err(BelError::Io {
                    path: "/full/bel".into(),
                    source: std::io::Error::from_raw_os_error(28),
                });
            }
            Ok(())
        })
    };
    let executor = ScriptedExecutor::new();
    let dir = tempfile::tempdir().unwrap();
    let o = Orchestrator::builder()
        .graph(
            Graph::builder()
                .job(job("a", &[]))
                .job(job("b", &["a"]))
                .build()
                .unwrap(),
        )
        .bel(Arc::new(bel))
        .executor(Arc::new(executor.clone()))
        .state_dir(dir.path())
        .build()
        .unwrap();
    let first = o.start(&[r("b/1")], BuildOptions::default());
    let a = executor.next_launch().await;
    // The disk fills while a/1 runs; its success cannot be recorded.
    full.store(true, Ordering::SeqCst);
    a.control.succeed();
    let err = first.outcome().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::Bel(BelError::Io { source, .. }) if source.raw_os_error() == Some(28)),
        "{err:?}"
    );
    assert!(err.to_string().contains("/full/bel"), "{err}");
    // The live state is exactly what the log holds: nothing half-applied.
    let events = memory
        .read(0, &EventFilter::all(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(BuildState::replay(&events).unwrap(), o.state());
    assert!(!events.iter().any(|e| e.kind() == "job_run_succeeded"));

    // With room again, the orchestrator serves the next request.
    full.store(false, Ordering::SeqCst);
    let second = o.start(&[r("a/2")], BuildOptions::default());
    executor.next_launch().await.control.succeed();
    assert!(second.outcome().await.unwrap().succeeded());
    let events = memory
        .read(0, &EventFilter::all(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(BuildState::replay(&events).unwrap(), o.state());
}

/// An executor's health reports (an engine that stopped answering, and came
/// back) are recorded as `executor_health` events.
#[tokio::test(start_paused = true)]
async fn executor_health_reports_are_recorded() {
    let executor = ScriptedExecutor::new();
    let rig = rig(vec![job("a", &[])], executor.clone());
    rig.o.load().await.unwrap();
    for up in [false, true] {
        executor.report_health(databuild_core::executor::HealthReport {
            engine: "engine1".into(),
            up,
            detail: "keep-alive".into(),
        });
    }
    let mut seen = Vec::new();
    for _ in 0..1000 {
        seen = rig
            .bel
            .read(0, &EventFilter::all(), usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.event {
                Some(databuild_core::bel::Event::ExecutorHealth(h)) => Some((h.engine, h.up)),
                _ => None,
            })
            .collect::<Vec<_>>();
        if seen.len() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        seen,
        [("engine1".to_owned(), false), ("engine1".to_owned(), true)]
    );
    rig.log().await;
}
