//! The in-memory sink: the reference implementation of [`BelSink`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::subscription::{PageReader, subscribe_via_reads};
use super::{BelError, BelSink, BlobDigest, BuildEvent, EventFilter, HeadWatch, SeqRange};

/// A build event log held in memory: for tests, examples, and hosts that do
/// not need the log to outlive the process. Clones share one log.
#[derive(Debug, Clone, Default)]
pub struct MemoryBel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    events: RwLock<Vec<BuildEvent>>,
    blobs: Mutex<HashMap<BlobDigest, Arc<[u8]>>>,
    head: HeadWatch,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            events: RwLock::default(),
            blobs: Mutex::default(),
            head: HeadWatch::new(0),
        }
    }
}

impl MemoryBel {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<BuildEvent> {
        self.inner.read_events().clone()
    }
}

impl Inner {
    fn read_events(&self) -> std::sync::RwLockReadGuard<'_, Vec<BuildEvent>> {
        // A panic while holding the lock cannot leave a half-appended batch
        // (events are pushed after all are prepared), so poison is harmless.
        self.events.read().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self, since: u64, filter: &EventFilter, limit: usize) -> (Vec<BuildEvent>, u64) {
        let events = self.read_events();
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(events.len());
        let page = events[start..]
            .iter()
            .filter(|e| filter.matches(e))
            .take(limit)
            .cloned()
            .collect();
        (page, events.len() as u64)
    }
}

impl PageReader for Inner {
    fn read_page(
        &self,
        since: u64,
        filter: EventFilter,
        limit: usize,
    ) -> BoxFuture<'static, Result<(Vec<BuildEvent>, u64), BelError>> {
        let page = self.read(since, &filter, limit);
        Box::pin(async move { Ok(page) })
    }
}

#[async_trait]
impl BelSink for MemoryBel {
    async fn append(&self, mut batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        if batch.is_empty() {
            return Err(BelError::EmptyBatch);
        }
        let mut events = self.inner.events.write().unwrap_or_else(|e| e.into_inner());
        let first = events.len() as u64 + 1;
        for (i, e) in batch.iter_mut().enumerate() {
            e.seq = first + i as u64;
        }
        events.append(&mut batch);
        let last = events.len() as u64;
        drop(events);
        self.inner.head.advance(last);
        Ok(SeqRange { first, last })
    }

    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError> {
        Ok(self.inner.read(since, filter, limit).0)
    }

    async fn head(&self) -> Result<u64, BelError> {
        Ok(self.inner.head.get())
    }

    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
        let wake = self.inner.head.wake();
        subscribe_via_reads(
            Arc::clone(&self.inner) as Arc<dyn PageReader>,
            wake,
            since,
            filter,
        )
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
        let digest = BlobDigest::of(&bytes);
        let mut blobs = self.inner.blobs.lock().unwrap_or_else(|e| e.into_inner());
        blobs
            .entry(digest.clone())
            .or_insert_with(|| Arc::from(bytes));
        Ok(digest)
    }

    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        let blobs = self.inner.blobs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(blobs.get(digest).map(|b| b.to_vec()))
    }
}
