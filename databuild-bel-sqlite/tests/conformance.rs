//! The BEL sink conformance suite on SQLite.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use databuild_bel_sqlite::SqliteBel;
use databuild_core::BelError;
use databuild_core::bel::BelSink;
use databuild_core::testkit::sink::{self, SinkHarness};

struct Sqlite;

#[async_trait]
impl SinkHarness for Sqlite {
    fn name(&self) -> &str {
        "sqlite"
    }
    async fn open(&self, location: &Path) -> Result<Arc<dyn BelSink>, BelError> {
        Ok(Arc::new(SqliteBel::open(location)?))
    }
    fn durable(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sink_conforms() {
    sink::run_all(&Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkilled_writer_keeps_acknowledged_appends() {
    sink::sigkilled_writer_keeps_acknowledged_appends(
        &Sqlite,
        "sqlite_sigkilled_writer_keeps_acknowledged_appends",
    )
    .await;
}
