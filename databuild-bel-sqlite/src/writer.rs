//! The writer thread: owns the write connection and commits queued appends
//! in groups.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use databuild_core::bel::{HeadWatch, SeqRange, StateRows};
use databuild_core::{BelError, BuildEvent};
use prost::Message;
use rusqlite::{Connection, ErrorCode, params};
use tokio::sync::oneshot;

/// Most requests one transaction takes.
const MAX_GROUP: usize = 4096;

/// One event, encoded by the appender (so encoding runs on the callers'
/// threads, not the writer's), with the columns reads filter on.
pub(crate) struct Encoded {
    pub(crate) timestamp_ns: i64,
    pub(crate) build_request_id: String,
    pub(crate) job_run_id: String,
    pub(crate) kind: &'static str,
    /// The envelope with `seq` 0; the stored form is this with the seq
    /// field (1) appended, see [`with_seq`].
    pub(crate) bytes: Vec<u8>,
}

impl Encoded {
    pub(crate) fn new(e: BuildEvent) -> Self {
        let kind = e.kind();
        let mut e = e;
        e.seq = 0;
        let mut bytes = Vec::with_capacity(e.encoded_len() + 11);
        e.encode(&mut bytes)
            .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
        Self {
            timestamp_ns: e.timestamp_ns,
            build_request_id: std::mem::take(&mut e.build_request_id),
            job_run_id: std::mem::take(&mut e.job_run_id),
            kind,
            bytes,
        }
    }
}

/// The stored bytes of an event: protobuf lets a field appear anywhere, so
/// the seq (field 1, varint) is appended to the encoding made without it.
fn with_seq(bytes: &mut Vec<u8>, seq: u64) -> usize {
    let len = bytes.len();
    bytes.push(0x08);
    prost::encoding::encode_varint(seq, bytes);
    len
}

/// Work for the writer thread.
pub(crate) enum Request {
    Append {
        batch: Vec<Encoded>,
        /// The state the batch leaves, for what it changed.
        rows: Option<StateRows>,
        reply: oneshot::Sender<Result<SeqRange, BelError>>,
    },
    /// Replace the stored state with the whole state as of seq `at`.
    SaveState {
        rows: StateRows,
        at: u64,
        reply: oneshot::Sender<Result<(), BelError>>,
    },
    PutBlob {
        digest: String,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), BelError>>,
    },
}

/// The writer thread's handle. Dropping it lets the thread finish what is
/// queued, then waits for it, so the store's lock is free when the drop
/// returns.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    /// Dropped to stop the checkpoint thread.
    stop_checkpoints: Option<mpsc::Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

/// How often the write-ahead log is checkpointed into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Writer {
    /// Starts the thread. `lock` (the held sidecar lock) lives as long as
    /// the thread; `head` is the last stored seq.
    pub(crate) fn start(
        conn: Connection,
        checkpoints: Connection,
        path: PathBuf,
        lock: File,
        head: HeadWatch,
    ) -> std::io::Result<Self> {
        let (stop_checkpoints, stop) = mpsc::channel::<()>();
        let checkpoint_path = path.clone();
        let checkpointer = std::thread::Builder::new()
            .name("databuild-bel-ckpt".into())
            .spawn(move || {
                // A timed PASSIVE checkpoint: copies what no reader still
                // needs, never waits for readers, and fsyncs off the
                // writer's path.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = checkpoints.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(path = %checkpoint_path.display(), error = %e, "a BEL checkpoint failed");
                    }
                }
            })?;
        let (tx, rx) = mpsc::channel();
        let next = head.get() + 1;
        let state_seq = stored_state_seq(&conn).map_err(std::io::Error::other)?;
        let thread = std::thread::Builder::new()
            .name("databuild-bel-sqlite".into())
            .spawn(move || {
                let _lock = lock;
                run(conn, &path, &head, next, state_seq, &rx);
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            stop_checkpoints: Some(stop_checkpoints),
            checkpointer: Some(checkpointer),
        })
    }

    /// Queues a request.
    pub(crate) fn send(&self, request: Request) -> Result<(), BelError> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(request).ok())
            .ok_or(BelError::Closed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx = None;
        self.stop_checkpoints = None;
        for thread in [self.thread.take(), self.checkpointer.take()]
            .into_iter()
            .flatten()
        {
            if thread.join().is_err() {
                tracing::error!("a SQLite BEL thread panicked");
            }
        }
    }
}

/// The seq the stored state is current to (`None`: it keeps none yet).
pub(crate) fn stored_state_seq(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    use rusqlite::OptionalExtension;
    let value: Option<i64> = conn
        .query_row(
            "SELECT value FROM state_meta WHERE key = 'state_seq'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.map(|v| u64::try_from(v).unwrap_or(0)))
}

fn run(
    mut conn: Connection,
    path: &Path,
    head: &HeadWatch,
    mut next: u64,
    mut state_seq: Option<u64>,
    rx: &mpsc::Receiver<Request>,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        (next, state_seq) = commit(&mut conn, path, head, next, state_seq, group);
    }
}

/// Stores state rows (replacing rows with the same keys); partition rows'
/// seqs are offset by `base`.
fn store_rows(
    txn: &rusqlite::Transaction<'_>,
    rows: &StateRows,
    base: u64,
) -> rusqlite::Result<()> {
    let mut run = txn.prepare_cached(
        "INSERT OR REPLACE INTO state_runs (job_run_id, ended, record) VALUES (?1, ?2, ?3)",
    )?;
    for r in &rows.runs {
        run.execute(params![r.job_run_id, r.ended, r.record])?;
    }
    let mut request = txn.prepare_cached(
        "INSERT OR REPLACE INTO state_requests (build_request_id, ended, record) VALUES (?1, ?2, ?3)",
    )?;
    for r in &rows.requests {
        request.execute(params![r.build_request_id, r.ended, r.record])?;
    }
    let mut partition = txn.prepare_cached(
        "INSERT OR REPLACE INTO state_partitions (partition, status, job_run_id, seq) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for p in &rows.partitions {
        partition.execute(params![
            p.partition,
            p.status,
            p.job_run_id,
            (base + p.seq) as i64
        ])?;
    }
    Ok(())
}

/// What to answer once the transaction is decided.
enum Answer {
    Append(oneshot::Sender<Result<SeqRange, BelError>>, SeqRange),
    Done(oneshot::Sender<Result<(), BelError>>),
}

/// Commits a group of requests in one transaction; returns the next seq
/// and the seq the stored state is then current to.
fn commit(
    conn: &mut Connection,
    path: &Path,
    head: &HeadWatch,
    next: u64,
    state_seq: Option<u64>,
    group: Vec<Request>,
) -> (u64, Option<u64>) {
    let mut answers = Vec::with_capacity(group.len());
    let mut seq = next;
    let mut state_at = state_seq;
    let mut pending: std::collections::VecDeque<Request> = group.into();
    let result = (|| -> rusqlite::Result<()> {
        let txn = conn.transaction()?;
        {
            let mut insert = txn.prepare_cached(
                "INSERT INTO events (seq, timestamp_ns, build_request_id, job_run_id, kind, event) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut blob =
                txn.prepare_cached("INSERT OR IGNORE INTO blobs (digest, bytes) VALUES (?1, ?2)")?;
            while let Some(request) = pending.pop_front() {
                match request {
                    Request::Append {
                        mut batch,
                        rows,
                        reply,
                    } => {
                        if batch.is_empty() {
                            let _ = reply.send(Err(BelError::EmptyBatch));
                            continue;
                        }
                        // The rows go in when the stored state is current
                        // up to this batch; it then is up to the batch's
                        // end. Otherwise it stays at its seq (and a load
                        // replays the events after it).
                        if let Some(rows) = rows
                            && state_at == Some(seq - 1)
                        {
                            store_rows(&txn, &rows, seq)?;
                            state_at = Some(seq + batch.len() as u64 - 1);
                        }
                        // Answered whatever happens below, once the
                        // transaction is decided.
                        answers.push(Answer::Append(
                            reply,
                            SeqRange {
                                first: seq,
                                last: seq + batch.len() as u64 - 1,
                            },
                        ));
                        for e in &mut batch {
                            let len = with_seq(&mut e.bytes, seq);
                            let inserted = insert.execute(params![
                                seq as i64,
                                e.timestamp_ns,
                                e.build_request_id,
                                e.job_run_id,
                                e.kind,
                                e.bytes,
                            ]);
                            e.bytes.truncate(len);
                            inserted?;
                            seq += 1;
                        }
                    }
                    Request::PutBlob {
                        digest,
                        bytes,
                        reply,
                    } => {
                        answers.push(Answer::Done(reply));
                        blob.execute(params![digest, bytes])?;
                    }
                    Request::SaveState { rows, at, reply } => {
                        answers.push(Answer::Done(reply));
                        if at == seq - 1 {
                            txn.execute_batch(
                                "DELETE FROM state_runs; DELETE FROM state_requests; \
                                 DELETE FROM state_partitions;",
                            )?;
                            store_rows(&txn, &rows, 0)?;
                            state_at = Some(at);
                        }
                    }
                }
            }
        }
        if state_at != state_seq {
            txn.execute(
                "INSERT OR REPLACE INTO state_meta (key, value) VALUES ('state_seq', ?1)",
                params![state_at.unwrap_or(0) as i64],
            )?;
        }
        txn.commit()
    })();
    match result {
        Ok(()) => {
            if seq > next {
                head.advance(seq - 1);
            }
            for a in answers {
                match a {
                    Answer::Append(reply, range) => {
                        let _ = reply.send(Ok(range));
                    }
                    Answer::Done(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            (seq, state_at)
        }
        Err(e) => {
            // The transaction rolled back: nothing of the group is stored.
            let code = e.sqlite_error_code();
            let message = e.to_string();
            tracing::error!(path = %path.display(), error = %message, "a BEL commit failed");
            for request in pending {
                let err = failure(path, code, &message);
                match request {
                    Request::Append { reply, .. } => {
                        let _ = reply.send(Err(err));
                    }
                    Request::PutBlob { reply, .. } | Request::SaveState { reply, .. } => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
            for a in answers {
                let err = failure(path, code, &message);
                match a {
                    Answer::Append(reply, _) => {
                        let _ = reply.send(Err(err));
                    }
                    Answer::Done(reply) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
            (next, state_seq)
        }
    }
}

/// The error each request of a failed group gets.
fn failure(path: &Path, code: Option<ErrorCode>, message: &str) -> BelError {
    match code {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::ReadOnly) => {
            BelError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(message.to_owned()),
            }
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => BelError::Unreadable {
            path: path.to_path_buf(),
            reason: message.to_owned(),
        },
        _ => BelError::Backend {
            backend: "sqlite",
            source: message.to_owned().into(),
        },
    }
}
