use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

use super::{BelError, BuildEvent, EventFilter, StateRows};

/// The sequence numbers an append was given, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// Sequence number of the first event of the batch.
    pub first: u64,
    /// Sequence number of the last event of the batch.
    pub last: u64,
}

/// The SHA-256 digest of a blob, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobDigest(String);

impl BlobDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(crate::job::launch_hex(&Sha256::digest(bytes)))
    }

    /// Parses a hex digest (64 lowercase hex characters).
    pub fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(hex.to_owned()))
    }

    /// The digest as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where build events are stored.
///
/// The trait is object-safe and held as `Arc<dyn BelSink>`. Every
/// implementation runs the conformance suite in `databuild_core::testkit`.
///
/// Contract:
/// * [`append`](Self::append) stores a batch all-or-nothing and assigns its
///   events consecutive sequence numbers (`seq`), gap-free from 1, in batch
///   order; concurrent appends never interleave within a batch. When it
///   returns `Ok`, a reader in another process sees the batch even if this
///   process dies right after (durability against power loss is the sink's
///   fsync policy).
/// * [`read`](Self::read) returns stored events with `seq > since` that
///   match the filter, in `seq` order, at most `limit` of them.
/// * [`subscribe`](Self::subscribe) yields every matching event with
///   `seq > since`: first the stored ones, then new ones as they are
///   appended, with no gap and no duplicate.
/// * Blobs are content-addressed by SHA-256 and stored once.
#[async_trait]
pub trait BelSink: Send + Sync + fmt::Debug {
    /// Appends a non-empty batch atomically and returns its sequence numbers.
    /// The `seq` field of the given events is ignored.
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError>;

    /// Reads up to `limit` stored events with `seq > since` matching `filter`.
    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError>;

    /// The sequence number of the last stored event (0 when empty).
    async fn head(&self) -> Result<u64, BelError>;

    /// Every event with `seq > since` matching `filter`: stored, then live.
    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>>;

    /// Stores a blob (a plan, say) and returns its digest. Storing the same
    /// bytes twice stores them once.
    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError>;

    /// The blob with `digest`, if stored.
    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError>;

    /// Whether the sink keeps the build state materialized next to the log
    /// (then the orchestrator appends with
    /// [`append_with_state`](Self::append_with_state) and loads with
    /// [`load_state`](Self::load_state)). Default: no.
    fn keeps_state(&self) -> bool {
        false
    }

    /// Appends `batch` and, in the same transaction, stores `rows`: the
    /// state the batch leaves for the runs, requests and partitions it
    /// changed. The rows are stored only when the stored state is current
    /// up to the batch (so it stays the state as of one seq). Default:
    /// [`append`](Self::append), the rows dropped.
    async fn append_with_state(
        &self,
        batch: Vec<BuildEvent>,
        rows: StateRows,
    ) -> Result<SeqRange, BelError> {
        let _ = rows;
        self.append(batch).await
    }

    /// Replaces the stored state with `rows`, the whole state as of seq
    /// `at`; ignored unless `at` is the head. Default: nothing is stored.
    async fn save_state(&self, rows: StateRows, at: u64) -> Result<(), BelError> {
        let _ = (rows, at);
        Ok(())
    }

    /// The stored state and the seq it is current to (the events after it
    /// are replayed on top), or `None` when the sink keeps none. Default:
    /// `None`.
    async fn load_state(&self) -> Result<Option<(StateRows, u64)>, BelError> {
        Ok(None)
    }
}

macro_rules! forward_sink {
    ($($ptr:ty),*) => {$(
        #[async_trait]
        impl<T: BelSink + ?Sized> BelSink for $ptr {
            async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
                (**self).append(batch).await
            }
            async fn read(
                &self,
                since: u64,
                filter: &EventFilter,
                limit: usize,
            ) -> Result<Vec<BuildEvent>, BelError> {
                (**self).read(since, filter, limit).await
            }
            async fn head(&self) -> Result<u64, BelError> {
                (**self).head().await
            }
            fn subscribe(
                &self,
                since: u64,
                filter: EventFilter,
            ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
                (**self).subscribe(since, filter)
            }
            async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
                (**self).put_blob(bytes).await
            }
            async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
                (**self).get_blob(digest).await
            }
            fn keeps_state(&self) -> bool {
                (**self).keeps_state()
            }
            async fn append_with_state(
                &self,
                batch: Vec<BuildEvent>,
                rows: StateRows,
            ) -> Result<SeqRange, BelError> {
                (**self).append_with_state(batch, rows).await
            }
            async fn save_state(&self, rows: StateRows, at: u64) -> Result<(), BelError> {
                (**self).save_state(rows, at).await
            }
            async fn load_state(&self) -> Result<Option<(StateRows, u64)>, BelError> {
                (**self).load_state().await
            }
        }
    )*};
}

forward_sink!(std::sync::Arc<T>, Box<T>, &T);
