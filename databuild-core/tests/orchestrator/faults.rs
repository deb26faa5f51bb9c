//! A BEL that fails mid-build (a full disk): the build ends with a typed
//! error naming the cause, the live state holds exactly what the log holds,
//! and the orchestrator goes on serving requests once the disk has room.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use databuild_core::bel::{BelError, BlobDigest, SeqRange};
use databuild_core::state::BuildState;
use databuild_core::testkit::scripted::ScriptedExecutor;
use databuild_core::{BuildError, BuildOptions};
use futures::stream::BoxStream;

use super::*;

/// A memory sink whose appends fail with ENOSPC while `full` is set.
#[derive(Debug, Clone)]
struct FullDisk {
    inner: MemoryBel,
    full: Arc<AtomicBool>,
}

#[async_trait]
impl BelSink for FullDisk {
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(BelError::Io {
                path: "/full/bel".into(),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        self.inner.append(batch).await
    }
    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError> {
        self.inner.read(since, filter, limit).await
    }
    async fn head(&self) -> Result<u64, BelError> {
        self.inner.head().await
    }
    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
        self.inner.subscribe(since, filter)
    }
    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
        self.inner.put_blob(bytes).await
    }
    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        self.inner.get_blob(digest).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_fails_the_build_and_loses_nothing() {
    let memory = MemoryBel::new();
    let full = Arc::new(AtomicBool::new(false));
    let bel = FullDisk {
        inner: memory.clone(),
        full: Arc::clone(&full),
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
