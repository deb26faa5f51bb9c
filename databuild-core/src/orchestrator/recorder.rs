//! The sink the orchestrator's planner writes through: its analysis events
//! take the orchestrator's commit path (checked, applied to the build state,
//! and stored with the state's rows), like every other event.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{BuildError, Inner};
use crate::bel::{BelError, BelSink, BlobDigest, BuildEvent, EventFilter, SeqRange};

/// Appends through [`Inner::commit_range`]; everything else goes to the BEL.
#[derive(Debug)]
pub(crate) struct Recorder(pub(crate) Arc<Inner>);

#[async_trait]
impl BelSink for Recorder {
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        match self.0.commit_range(batch).await {
            Ok(Some(range)) => Ok(range),
            Ok(None) => Err(BelError::EmptyBatch),
            Err(BuildError::Bel(e)) => Err(e),
            Err(other) => Err(BelError::Backend {
                backend: "build state",
                source: Box::new(other),
            }),
        }
    }
    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError> {
        self.0.bel.read(since, filter, limit).await
    }
    async fn head(&self) -> Result<u64, BelError> {
        self.0.bel.head().await
    }
    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
        self.0.bel.subscribe(since, filter)
    }
    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
        self.0.bel.put_blob(bytes).await
    }
    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        self.0.bel.get_blob(digest).await
    }
}
