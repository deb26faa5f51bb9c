//! A sink wrapper for fault and crash tests.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::bel::{BelError, BelSink, BlobDigest, BuildEvent, EventFilter, SeqRange, StateRows};

type Before = dyn Fn(&[BuildEvent]) -> Result<(), BelError> + Send + Sync;
type After = dyn Fn(SeqRange) + Send + Sync;

/// Forwards to another sink and lets a test act around each append: fail
/// it (a full disk), stop the process at a chosen batch (a crash point), or
/// note where batches end (to cut a log only where a crash can).
///
/// ```
/// use std::sync::Arc;
/// use databuild_core::MemoryBel;
/// use databuild_core::bel::BelError;
/// use databuild_core::testkit::hooked::HookedSink;
///
/// let full = HookedSink::new(Arc::new(MemoryBel::new())).before_append(|_| {
///     Err(BelError::Io {
///         path: "/full".into(),
///         source: std::io::Error::from_raw_os_error(28),
///     })
/// });
/// # let _ = full;
/// ```
#[derive(Clone)]
pub struct HookedSink {
    inner: Arc<dyn BelSink>,
    before: Option<Arc<Before>>,
    after: Option<Arc<After>>,
}

impl fmt::Debug for HookedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookedSink")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HookedSink {
    /// A sink that only forwards to `inner`.
    pub fn new(inner: Arc<dyn BelSink>) -> Self {
        Self {
            inner,
            before: None,
            after: None,
        }
    }

    /// Called with each batch before it is appended; an error fails the
    /// append (and nothing is stored).
    #[must_use]
    pub fn before_append(
        mut self,
        f: impl Fn(&[BuildEvent]) -> Result<(), BelError> + Send + Sync + 'static,
    ) -> Self {
        self.before = Some(Arc::new(f));
        self
    }

    /// Called with the seqs each stored batch was given.
    #[must_use]
    pub fn after_append(mut self, f: impl Fn(SeqRange) + Send + Sync + 'static) -> Self {
        self.after = Some(Arc::new(f));
        self
    }
}

#[async_trait]
impl BelSink for HookedSink {
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        if let Some(before) = &self.before {
            before(&batch)?;
        }
        let range = self.inner.append(batch).await?;
        if let Some(after) = &self.after {
            after(range);
        }
        Ok(range)
    }
    fn keeps_state(&self) -> bool {
        self.inner.keeps_state()
    }
    async fn append_with_state(
        &self,
        batch: Vec<BuildEvent>,
        rows: StateRows,
    ) -> Result<SeqRange, BelError> {
        if let Some(before) = &self.before {
            before(&batch)?;
        }
        let range = self.inner.append_with_state(batch, rows).await?;
        if let Some(after) = &self.after {
            after(range);
        }
        Ok(range)
    }
    async fn save_state(&self, rows: StateRows, at: u64) -> Result<(), BelError> {
        self.inner.save_state(rows, at).await
    }
    async fn load_state(&self) -> Result<Option<(StateRows, u64)>, BelError> {
        self.inner.load_state().await
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
