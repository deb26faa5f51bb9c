//! [`SqliteBel`]: the sink.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use databuild_core::bel::{
    BelSink, BlobDigest, BlockingPages, EventFilter, HeadWatch, PartitionRow, RequestRow, RunRow,
    SeqRange, StateRows, Wake, subscribe_via_reads,
};
use databuild_core::{BelError, BuildEvent};
use futures::stream::BoxStream;
use prost::Message;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::schema::{error, prepare};
use crate::writer::{Encoded, Request, Writer};

/// How often a read-only handle's subscriptions look for new events.
const POLL: Duration = Duration::from_millis(200);

/// A build event log in one SQLite database. Clones share one store.
#[derive(Debug, Clone)]
pub struct SqliteBel {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// The writer, for a handle opened for writing.
    writer: Option<Writer>,
    head: HeadWatch,
    /// Idle read connections.
    readers: Mutex<Vec<Connection>>,
}

impl SqliteBel {
    /// Opens (creating if needed) the store at `path` for writing. Only one
    /// writer holds a store: a second gets [`BelError::Locked`] naming the
    /// first one's pid.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BelError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| BelError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = take_lock(&path)?;
        // A new store is its owner's alone (mode 0600; SQLite gives its WAL
        // and shared-memory files the same mode).
        {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
        }
        let conn = Connection::open(&path).map_err(|e| error(&path, e))?;
        prepare(&conn, &path, true)?;
        let head = HeadWatch::new(stored_head(&conn, &path)?);
        let checkpoints = Connection::open(&path).map_err(|e| error(&path, e))?;
        let writer =
            Writer::start(conn, checkpoints, path.clone(), lock, head.clone()).map_err(io)?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                writer: Some(writer),
                head,
                readers: Mutex::default(),
            }),
        })
    }

    /// Opens the store at `path` for reading, alongside a writer in another
    /// process (or none). Appends are refused; subscriptions poll.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, BelError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_reader(&path)?;
        let head = HeadWatch::new(stored_head(&conn, &path)?);
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                writer: None,
                head,
                readers: Mutex::new(vec![conn]),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Appends `batch` (encoded here, on the caller's thread) with the
    /// state rows it leaves, if any, through the writer thread.
    async fn append_rows(
        &self,
        batch: Vec<BuildEvent>,
        rows: Option<StateRows>,
    ) -> Result<SeqRange, BelError> {
        if batch.is_empty() {
            return Err(BelError::EmptyBatch);
        }
        let writer = self.writer()?;
        let batch = batch.into_iter().map(Encoded::new).collect();
        let (reply, answer) = oneshot::channel();
        writer.send(Request::Append { batch, rows, reply })?;
        answer.await.map_err(|_| BelError::Closed)?
    }

    fn writer(&self) -> Result<&Writer, BelError> {
        self.shared.writer.as_ref().ok_or_else(|| BelError::Io {
            path: self.shared.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "opened read-only"),
        })
    }
}

/// Takes the exclusive lock on `<path>.lock` and writes our pid into it.
fn take_lock(path: &Path) -> Result<File, BelError> {
    let lock_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    };
    let io = |source| BelError::Io {
        path: lock_path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(BelError::Locked {
                path: path.to_path_buf(),
                holder: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

fn open_reader(path: &Path) -> Result<Connection, BelError> {
    if !path.exists() {
        return Err(BelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such BEL"),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| error(path, e))?;
    prepare(&conn, path, false)?;
    Ok(conn)
}

fn stored_head(conn: &Connection, path: &Path) -> Result<u64, BelError> {
    let head: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(|e| error(path, e))?;
    Ok(u64::try_from(head).unwrap_or(0))
}

impl Shared {
    /// Runs `f` on an idle read connection (opening one if none is idle).
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BelError>,
    ) -> Result<T, BelError> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&mut conn);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        result
    }

    /// Up to `limit` events after `since` matching `filter`, and the head,
    /// from one snapshot.
    fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<(Vec<BuildEvent>, u64), BelError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let err = |e| error(path, e);
            let txn = conn.transaction().map_err(err)?;
            let mut sql = String::from("SELECT seq, event FROM events WHERE seq > ?");
            let mut args: Vec<rusqlite::types::Value> =
                vec![(since.min(i64::MAX as u64) as i64).into()];
            if let Some(r) = &filter.build_request_id {
                sql.push_str(" AND build_request_id = ?");
                args.push(r.clone().into());
            }
            if let Some(r) = &filter.job_run_id {
                sql.push_str(" AND job_run_id = ?");
                args.push(r.clone().into());
            }
            if let Some(kinds) = &filter.kinds {
                sql.push_str(" AND kind IN (");
                for (i, k) in kinds.iter().enumerate() {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                    args.push(k.clone().into());
                }
                if kinds.is_empty() {
                    sql.push_str("NULL");
                }
                sql.push(')');
            }
            sql.push_str(" ORDER BY seq LIMIT ?");
            args.push((limit.min(i64::MAX as usize) as i64).into());
            let events = {
                let mut stmt = txn.prepare_cached(&sql).map_err(err)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(err)?;
                let mut events = Vec::new();
                while let Some(row) = rows.next().map_err(err)? {
                    // Decoded straight from SQLite's buffer, no copy.
                    let bytes = row.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(err)?;
                    let event = BuildEvent::decode(bytes).map_err(|e| BelError::Unreadable {
                        path: path.clone(),
                        reason: format!(
                            "event seq {} does not decode: {e}",
                            row.get::<_, i64>(0).unwrap_or_default()
                        ),
                    })?;
                    events.push(event);
                }
                events
            };
            let head = stored_head(&txn, path)?;
            txn.finish().map_err(err)?;
            Ok((events, head))
        })
    }

    /// The stored state and its seq, from one snapshot.
    fn load_state(&self) -> Result<Option<(StateRows, u64)>, BelError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let err = |e| error(path, e);
            let txn = conn.transaction().map_err(err)?;
            // A store of version 1 (read-only handles do not migrate) keeps
            // no state.
            let version: u32 = txn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(err)?;
            if version < 2 {
                return Ok(None);
            }
            let Some(at) = crate::writer::stored_state_seq(&txn).map_err(err)? else {
                return Ok(None);
            };
            let mut rows = StateRows::default();
            {
                let mut stmt = txn
                    .prepare("SELECT job_run_id, ended, record FROM state_runs")
                    .map_err(err)?;
                let mut q = stmt.query([]).map_err(err)?;
                while let Some(r) = q.next().map_err(err)? {
                    rows.runs.push(RunRow {
                        job_run_id: r.get(0).map_err(err)?,
                        ended: r.get(1).map_err(err)?,
                        record: r.get(2).map_err(err)?,
                    });
                }
                let mut stmt = txn
                    .prepare("SELECT build_request_id, ended, record FROM state_requests")
                    .map_err(err)?;
                let mut q = stmt.query([]).map_err(err)?;
                while let Some(r) = q.next().map_err(err)? {
                    rows.requests.push(RequestRow {
                        build_request_id: r.get(0).map_err(err)?,
                        ended: r.get(1).map_err(err)?,
                        record: r.get(2).map_err(err)?,
                    });
                }
                let mut stmt = txn
                    .prepare("SELECT partition, status, job_run_id, seq FROM state_partitions")
                    .map_err(err)?;
                let mut q = stmt.query([]).map_err(err)?;
                while let Some(r) = q.next().map_err(err)? {
                    rows.partitions.push(PartitionRow {
                        partition: r.get(0).map_err(err)?,
                        status: r.get(1).map_err(err)?,
                        job_run_id: r.get(2).map_err(err)?,
                        seq: u64::try_from(r.get::<_, i64>(3).map_err(err)?).unwrap_or(0),
                    });
                }
            }
            txn.finish().map_err(err)?;
            Ok(Some((rows, at)))
        })
    }

    fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        let path = &self.path;
        let bytes: Option<Vec<u8>> = self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT bytes FROM blobs WHERE digest = ?1")
                .map_err(|e| error(path, e))?;
            let mut rows = stmt.query([digest.as_str()]).map_err(|e| error(path, e))?;
            match rows.next().map_err(|e| error(path, e))? {
                Some(row) => Ok(Some(row.get(0).map_err(|e| error(path, e))?)),
                None => Ok(None),
            }
        })?;
        if let Some(b) = &bytes {
            let actual = BlobDigest::of(b);
            if &actual != digest {
                return Err(BelError::BlobMismatch {
                    digest: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(bytes)
    }
}

/// Runs blocking database work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BelError> + Send + 'static,
) -> Result<T, BelError> {
    databuild_core::bel::run_blocking("sqlite", f).await
}

#[async_trait]
impl BelSink for SqliteBel {
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        self.append_rows(batch, None).await
    }

    fn keeps_state(&self) -> bool {
        true
    }

    async fn append_with_state(
        &self,
        batch: Vec<BuildEvent>,
        rows: StateRows,
    ) -> Result<SeqRange, BelError> {
        self.append_rows(batch, Some(rows)).await
    }

    async fn save_state(&self, rows: StateRows, at: u64) -> Result<(), BelError> {
        let (reply, answer) = oneshot::channel();
        self.writer()?
            .send(Request::SaveState { rows, at, reply })?;
        answer.await.map_err(|_| BelError::Closed)?
    }

    async fn load_state(&self) -> Result<Option<(StateRows, u64)>, BelError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || shared.load_state()).await
    }

    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError> {
        let shared = Arc::clone(&self.shared);
        let filter = filter.clone();
        blocking(move || shared.read(since, &filter, limit).map(|(e, _)| e)).await
    }

    async fn head(&self) -> Result<u64, BelError> {
        if self.shared.writer.is_some() {
            return Ok(self.shared.head.get());
        }
        let shared = Arc::clone(&self.shared);
        blocking(move || shared.with_reader(|conn| stored_head(conn, &shared.path))).await
    }

    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
        let wake = if self.shared.writer.is_some() {
            self.shared.head.wake()
        } else {
            Wake::Poll(POLL)
        };
        let shared = Arc::clone(&self.shared);
        let pages = BlockingPages::new("sqlite", move |since, filter: &EventFilter, limit| {
            shared.read(since, filter, limit)
        });
        subscribe_via_reads(Arc::new(pages), wake, since, filter)
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
        let digest = BlobDigest::of(&bytes);
        let (reply, answer) = oneshot::channel();
        self.writer()?.send(Request::PutBlob {
            digest: digest.to_string(),
            bytes,
            reply,
        })?;
        answer.await.map_err(|_| BelError::Closed)??;
        Ok(digest)
    }

    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        let shared = Arc::clone(&self.shared);
        let digest = digest.clone();
        blocking(move || shared.get_blob(&digest)).await
    }
}
