//! The BEL sink conformance suite on the sinks in core.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use databuild_core::bel::{BelError, BelSink, FsyncPolicy, JsonlBel, JsonlOptions, MemoryBel};
use databuild_core::testkit::sink::{self, SinkHarness};

struct Memory;

#[async_trait]
impl SinkHarness for Memory {
    fn name(&self) -> &str {
        "memory"
    }
    async fn open(&self, _: &Path) -> Result<Arc<dyn BelSink>, BelError> {
        Ok(Arc::new(MemoryBel::new()))
    }
    fn durable(&self) -> bool {
        false
    }
}

struct Jsonl(FsyncPolicy);

#[async_trait]
impl SinkHarness for Jsonl {
    fn name(&self) -> &str {
        "jsonl"
    }
    async fn open(&self, location: &Path) -> Result<Arc<dyn BelSink>, BelError> {
        let (bel, _) = JsonlBel::open(location, JsonlOptions::default().fsync(self.0)).await?;
        Ok(Arc::new(bel))
    }
    fn durable(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sink_conforms() {
    sink::run_all(&Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_sink_conforms() {
    sink::run_all(&Jsonl(FsyncPolicy::Always)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_sink_conforms_without_fsync() {
    sink::run_all(&Jsonl(FsyncPolicy::Never)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_sigkilled_writer_keeps_acknowledged_appends() {
    sink::sigkilled_writer_keeps_acknowledged_appends(
        &Jsonl(FsyncPolicy::Never),
        "jsonl_sigkilled_writer_keeps_acknowledged_appends",
    )
    .await;
}
