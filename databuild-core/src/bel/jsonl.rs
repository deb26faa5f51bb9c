//! The JSONL sink: one event per line, readable with `jq`.
//!
//! Each line is `{"crc32c":<u32>,"event":{…}}\n`, where the event is the
//! proto3 JSON mapping of [`BuildEvent`] (proto field names; 64-bit integers
//! are strings) and the checksum (CRC32C) covers the event's JSON bytes
//! exactly as written. Line *n* holds the event with `seq` *n*.
//!
//! Opening a file for writing takes an exclusive lock on it (a second writer
//! gets [`BelError::Locked`]), checks every line, and cuts a torn last line
//! (bytes after the last newline, left by a crash mid-append), reporting it in
//! [`OpenReport::torn_tail`] and with a `tracing` warning. A damaged line that
//! is not the torn tail is [`BelError::Corrupt`], naming the line: nothing is
//! cut silently. A read-only handle ([`JsonlBel::open_read_only`]) can read
//! and follow a file another process writes; to it, a partial last line is
//! pending, not an error.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::subscription::{BlockingPages, Wake, subscribe_via_reads};
use super::{BelError, BelSink, BlobDigest, BuildEvent, EventFilter, HeadWatch, SeqRange};
use crate::partition::quote_bytes;

/// When the JSONL sink forces appended events to stable storage.
///
/// Every append reaches the operating system before `append` returns, so a
/// killed process loses nothing acknowledged under any policy; the policy
/// governs power loss only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// `fdatasync` after every appended batch.
    Always,
    /// At most once per interval, on the first append after it passed. The
    /// default is once a second: an append is committed once it is written
    /// to the operating system (a reader sees it after the writer dies), and
    /// fsync only guards against power loss, so it stays off the launch path
    /// (DESIGN "Exactly-once launch").
    Interval(Duration),
    /// Never; the operating system writes back when it likes.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// Options of a [`JsonlBel`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JsonlOptions {
    /// When appends are forced to stable storage.
    pub fsync: FsyncPolicy,
    /// How often a read-only handle's subscriptions look for new lines.
    pub poll_interval: Duration,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::default(),
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl JsonlOptions {
    /// Sets the fsync policy.
    #[must_use]
    pub fn fsync(mut self, fsync: FsyncPolicy) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets the poll interval of read-only subscriptions.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// A torn last line that opening for writing cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset where the torn line started (the file's new length).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
}

/// What opening a JSONL file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OpenReport {
    /// Events in the file.
    pub events: u64,
    /// A torn last line that was cut (writers only).
    pub torn_tail: Option<TornTail>,
}

/// A build event log in a JSONL file. Clones share one handle.
#[derive(Debug, Clone)]
pub struct JsonlBel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    blob_dir: PathBuf,
    options: JsonlOptions,
    writable: bool,
    file: File,
    state: Mutex<State>,
    head: HeadWatch,
    background: Arc<Mutex<BackgroundSync>>,
}

#[derive(Debug)]
struct State {
    /// Start offset of each line; line `i` holds seq `i + 1`.
    offsets: Vec<u64>,
    /// End of the last complete line.
    end: u64,
    last_sync: Option<Instant>,
}

/// The interval policy's background fsync, shared with its task (which
/// holds no handle of the sink, so dropping the sink releases its lock at
/// once).
#[derive(Debug, Default)]
struct BackgroundSync {
    /// A background fsync is running.
    running: bool,
    /// A background fsync failed: the next append reports it.
    failed: Option<std::io::Error>,
}

/// One stored line, borrowing the event's JSON bytes exactly as written.
#[derive(Deserialize)]
struct Line<'a> {
    crc32c: u32,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Reads a file at a position without moving a shared cursor.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Lines of bad input quoted in errors are cut to this many characters.
const QUOTE: usize = 120;

impl JsonlBel {
    /// Opens (creating if needed) `path` for writing with default options.
    pub async fn open_default(path: impl AsRef<Path>) -> Result<(Self, OpenReport), BelError> {
        Self::open(path, JsonlOptions::default()).await
    }

    /// Opens (creating if needed) `path` for writing: locks it, checks every
    /// line, and cuts a torn last line.
    pub async fn open(
        path: impl AsRef<Path>,
        options: JsonlOptions,
    ) -> Result<(Self, OpenReport), BelError> {
        let path = path.as_ref().to_path_buf();
        blocking(move || Self::open_blocking(path, options, true)).await
    }

    /// Opens `path` for reading and following while another handle or
    /// process writes it. Never changes the file.
    pub async fn open_read_only(
        path: impl AsRef<Path>,
        options: JsonlOptions,
    ) -> Result<Self, BelError> {
        let path = path.as_ref().to_path_buf();
        blocking(move || Self::open_blocking(path, options, false).map(|(s, _)| s)).await
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn open_blocking(
        path: PathBuf,
        options: JsonlOptions,
        writable: bool,
    ) -> Result<(Self, OpenReport), BelError> {
        let io = |source| BelError::Io {
            path: path.clone(),
            source,
        };
        let file = if writable {
            {
                use std::os::unix::fs::OpenOptionsExt;
                // The log is its owner's alone (mode 0600 when created).
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?
            }
        } else {
            File::open(&path).map_err(io)?
        };
        if writable {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(BelError::Locked {
                        path: path.clone(),
                        holder: None,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let mut state = State {
            offsets: Vec::new(),
            end: 0,
            last_sync: None,
        };
        let partial = scan(&path, &file, &mut state)?;
        let mut report = OpenReport {
            events: state.offsets.len() as u64,
            torn_tail: None,
        };
        if writable && let Some(bytes) = partial {
            tracing::warn!(
                path = %path.display(),
                offset = state.end,
                bytes,
                "cutting a torn last line of the build event log"
            );
            file.set_len(state.end).map_err(io)?;
            file.sync_data().map_err(io)?;
            report.torn_tail = Some(TornTail {
                offset: state.end,
                bytes,
            });
        }
        let mut blob_dir = path.clone().into_os_string();
        blob_dir.push(".blobs");
        let head = HeadWatch::new(report.events);
        let inner = Inner {
            blob_dir: PathBuf::from(blob_dir),
            path,
            options,
            writable,
            file,
            state: Mutex::new(state),
            head,
            background: Arc::default(),
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            report,
        ))
    }
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BelError> + Send + 'static,
) -> Result<T, BelError> {
    super::run_blocking("jsonl", f).await
}

/// Checks the lines after `state.end`, adding complete ones to `state`.
/// Returns the length of a partial last line, if there is one.
fn scan(path: &Path, file: &File, state: &mut State) -> Result<Option<u64>, BelError> {
    let mut reader = BufReader::with_capacity(
        1 << 16,
        ReadAt {
            file,
            pos: state.end,
        },
    );
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| BelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Ok(Some(n as u64));
        }
        let number = state.offsets.len() as u64 + 1;
        parse_line(&line[..n - 1], number).map_err(|reason| BelError::Corrupt {
            path: path.to_path_buf(),
            line: number,
            offset: state.end,
            reason,
        })?;
        state.offsets.push(state.end);
        state.end += n as u64;
    }
}

/// Decodes and checks one line of a JSONL log (without its newline) as the
/// sink reads it: the record's shape, its checksum, and that it holds
/// event `number`. For tools that read logs line by line, and for fuzzing.
pub fn decode_line(bytes: &[u8], number: u64) -> Result<BuildEvent, String> {
    parse_line(bytes, number)
}

/// Encodes one event as a JSONL line (without its newline), as the sink
/// writes it.
pub fn encode_event_line(event: &BuildEvent) -> Result<Vec<u8>, BelError> {
    let mut buf = Vec::new();
    encode_line(event, &mut buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(buf)
}

/// Decodes and checks one line (without its newline).
fn parse_line(bytes: &[u8], number: u64) -> Result<BuildEvent, String> {
    let line: Line<'_> = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a BEL record ({e}): {}", quote_bytes(bytes, QUOTE)))?;
    let json = line.event.get();
    let actual = crc32c::crc32c(json.as_bytes());
    if actual != line.crc32c {
        return Err(format!(
            "checksum mismatch: the line says {}, its event hashes to {actual}",
            line.crc32c
        ));
    }
    let event: BuildEvent = serde_json::from_str(json).map_err(|e| {
        format!(
            "not a build event ({e}): {}",
            quote_bytes(json.as_bytes(), QUOTE)
        )
    })?;
    if event.seq != number {
        return Err(format!("holds seq {} on line {number}", event.seq));
    }
    Ok(event)
}

/// Appends one event's line to `buf`.
fn encode_line(event: &BuildEvent, buf: &mut Vec<u8>) -> Result<(), BelError> {
    let json = serde_json::to_vec(event).map_err(|e| BelError::Encode {
        reason: e.to_string(),
    })?;
    write!(buf, "{{\"crc32c\":{},\"event\":", crc32c::crc32c(&json)).map_err(|e| {
        BelError::Encode {
            reason: e.to_string(),
        }
    })?;
    buf.extend_from_slice(&json);
    buf.extend_from_slice(b"}\n");
    Ok(())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // State changes only after the file write succeeded, so a panic
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self, source: std::io::Error) -> BelError {
        BelError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends a batch; returns its range and whether an fsync is due that
    /// the caller should run in the background (interval policy).
    fn append(&self, mut batch: Vec<BuildEvent>) -> Result<(SeqRange, bool), BelError> {
        if batch.is_empty() {
            return Err(BelError::EmptyBatch);
        }
        if !self.writable {
            return Err(self.io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "opened read-only",
            )));
        }
        if let Some(e) = self.background().failed.take() {
            return Err(self.io(e));
        }
        let mut state = self.lock();
        let first = state.offsets.len() as u64 + 1;
        let mut buf = Vec::with_capacity(batch.len() * 256);
        let mut offsets = Vec::with_capacity(batch.len());
        for (i, event) in batch.iter_mut().enumerate() {
            event.seq = first + i as u64;
            offsets.push(state.end + buf.len() as u64);
            encode_line(event, &mut buf)?;
        }
        let mut background = false;
        let written = (&self.file).write_all(&buf).and_then(|()| {
            match self.options.fsync {
                FsyncPolicy::Always => {
                    self.file.sync_data()?;
                    state.last_sync = Some(Instant::now());
                }
                FsyncPolicy::Interval(every) => {
                    if state.last_sync.is_none_or(|t| t.elapsed() >= every) {
                        let mut sync = self.background();
                        if !sync.running {
                            sync.running = true;
                            state.last_sync = Some(Instant::now());
                            background = true;
                        }
                    }
                }
                FsyncPolicy::Never => {}
            }
            Ok(())
        });
        if let Err(e) = written {
            // Nothing of a failed append may stay: cut back to the last
            // acknowledged line (a full disk leaves a partial write).
            let _ = self.file.set_len(state.end);
            return Err(self.io(e));
        }
        state.offsets.extend(offsets);
        state.end += buf.len() as u64;
        let last = state.offsets.len() as u64;
        drop(state);
        self.head.advance(last);
        Ok((SeqRange { first, last }, background))
    }

    fn background(&self) -> MutexGuard<'_, BackgroundSync> {
        self.background.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the interval policy's fsync on a blocking thread, through a
    /// descriptor of its own (fsync applies to the file, whichever
    /// descriptor asks).
    fn sync_in_background(&self) {
        let path = self.path.clone();
        let shared = Arc::clone(&self.background);
        tokio::task::spawn_blocking(move || {
            let result = File::open(&path).and_then(|f| f.sync_data());
            let mut sync = shared.lock().unwrap_or_else(|e| e.into_inner());
            sync.running = false;
            if let Err(e) = result {
                tracing::error!(path = %path.display(), error = %e, "fsync of the BEL failed");
                sync.failed = Some(e);
            }
        });
    }

    /// Picks up lines another process appended (read-only handles).
    fn refresh(&self) -> Result<(), BelError> {
        if self.writable {
            return Ok(());
        }
        let mut state = self.lock();
        scan(&self.path, &self.file, &mut state)?;
        let head = state.offsets.len() as u64;
        drop(state);
        self.head.advance(head);
        Ok(())
    }

    fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<(Vec<BuildEvent>, u64), BelError> {
        self.refresh()?;
        let (start, end, count) = {
            let state = self.lock();
            let count = state.offsets.len() as u64;
            match usize::try_from(since)
                .ok()
                .and_then(|i| state.offsets.get(i))
            {
                Some(start) => (*start, state.end, count),
                None => return Ok((Vec::new(), count)),
            }
        };
        let mut reader = BufReader::with_capacity(
            1 << 16,
            ReadAt {
                file: &self.file,
                pos: start,
            }
            .take(end - start),
        );
        let mut events = Vec::new();
        let mut line = Vec::new();
        let mut number = since;
        let mut offset = start;
        while events.len() < limit {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| self.io(e))?;
            if n == 0 {
                break;
            }
            number += 1;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let event = parse_line(body, number).map_err(|reason| BelError::Corrupt {
                path: self.path.clone(),
                line: number,
                offset,
                reason,
            })?;
            offset += n as u64;
            if filter.matches(&event) {
                events.push(event);
            }
        }
        Ok((events, count))
    }

    fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        self.blob_dir.join(digest.as_str())
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<BlobDigest, BelError> {
        let digest = BlobDigest::of(bytes);
        let path = self.blob_path(&digest);
        let io = |source| BelError::Io {
            path: path.clone(),
            source,
        };
        if path.exists() {
            return Ok(digest);
        }
        std::fs::create_dir_all(&self.blob_dir).map_err(|source| BelError::Io {
            path: self.blob_dir.clone(),
            source,
        })?;
        let tmp = self
            .blob_dir
            .join(format!(".{}.{}.tmp", digest.as_str(), std::process::id()));
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        if self.options.fsync != FsyncPolicy::Never {
            f.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(digest)
    }

    fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        let path = self.blob_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let actual = BlobDigest::of(&bytes);
                if &actual != digest {
                    return Err(BelError::BlobMismatch {
                        digest: digest.to_string(),
                        actual: actual.to_string(),
                    });
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BelError::Io { path, source }),
        }
    }
}

#[async_trait]
impl BelSink for JsonlBel {
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        let inner = Arc::clone(&self.inner);
        if inner.options.fsync == FsyncPolicy::Always {
            return blocking(move || inner.append(batch).map(|(range, _)| range)).await;
        }
        // Without an fsync, an append is a `write` to the page cache: done
        // in place, as handing it to a blocking thread and back costs more
        // (it sits on the launch path). A due fsync runs in the background.
        let (range, sync) = inner.append(batch)?;
        if sync {
            inner.sync_in_background();
        }
        Ok(range)
    }

    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError> {
        let inner = Arc::clone(&self.inner);
        let filter = filter.clone();
        blocking(move || inner.read(since, &filter, limit).map(|(events, _)| events)).await
    }

    async fn head(&self) -> Result<u64, BelError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.refresh()?;
            Ok(inner.head.get())
        })
        .await
    }

    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
        let wake = if self.inner.writable {
            self.inner.head.wake()
        } else {
            Wake::Poll(self.inner.options.poll_interval)
        };
        let inner = Arc::clone(&self.inner);
        let pages = BlockingPages::new("jsonl", move |since, filter: &EventFilter, limit| {
            inner.read(since, filter, limit)
        });
        subscribe_via_reads(Arc::new(pages), wake, since, filter)
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.put_blob(&bytes)).await
    }

    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        let inner = Arc::clone(&self.inner);
        let digest = digest.clone();
        blocking(move || inner.get_blob(&digest)).await
    }
}
