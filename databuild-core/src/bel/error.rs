use std::path::PathBuf;

use thiserror::Error;

use crate::job::BoxError;

/// Why a BEL operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BelError {
    /// Reading or writing the store failed.
    #[error("BEL {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A stored record is damaged (not a torn tail, which is recovered).
    #[error("BEL {} is corrupt at line {line} (byte offset {offset}): {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// One-based line number of the damaged record.
        line: u64,
        /// Byte offset where the record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Another writer holds the store.
    #[error("BEL {} is locked by another writer{}", path.display(), holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The store.
        path: PathBuf,
        /// The holder's pid, when known.
        holder: Option<u32>,
    },
    /// The store was written by a newer version of its schema.
    #[error("BEL {} has schema version {found}; this build reads versions up to {supported} (upgrade databuild to open it)", path.display())]
    SchemaTooNew {
        /// The store.
        path: PathBuf,
        /// The version it holds.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// The store is not a BEL, or is damaged beyond reading.
    #[error("BEL {} cannot be read: {reason}", path.display())]
    Unreadable {
        /// The store.
        path: PathBuf,
        /// What is wrong, from the storage engine.
        reason: String,
    },
    /// An event could not be encoded.
    #[error("cannot encode event: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
    /// An append was given no events.
    #[error("an appended batch must hold at least one event")]
    EmptyBatch,
    /// The sink was closed.
    #[error("the BEL sink is closed")]
    Closed,
    /// A blob's content does not match its digest.
    #[error("blob {digest} is damaged: its content hashes to {actual}")]
    BlobMismatch {
        /// The digest asked for.
        digest: String,
        /// The digest of what is stored.
        actual: String,
    },
    /// A backend-specific failure.
    #[error("BEL backend {backend}: {source}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}
