//! The per-run log: one JSON object per line, `{"time_ns":…,"stream":…,"text":…}`,
//! in `<state_dir>/logs/<yyyy-mm-dd>/<job_run_id>.jsonl`. Output is streamed
//! line by line and lines are capped, so a run that prints gigabytes, or one
//! endless line, never makes anyone hold it whole.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};

use crate::bel::now_ns;
use crate::clock::utc_date;

/// Which stream a log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The job's stdout.
    Stdout,
    /// The job's stderr.
    Stderr,
    /// The executor's own entries about the run (launch, exit, cancel).
    Executor,
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Unix nanoseconds when the line was read.
    pub time_ns: i64,
    /// Where it came from.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// True when this is a piece of a line longer than the cap; the line
    /// goes on in the next record of the same stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// `<state_dir>/logs/<yyyy-mm-dd>/<job_run_id>.jsonl`, the date in UTC at
/// `time_ns`. File names come from ids, never from partition refs.
pub fn log_path(state_dir: &Path, job_run_id: &str, time_ns: i64) -> PathBuf {
    state_dir
        .join("logs")
        .join(utc_date(time_ns))
        .join(format!("{job_run_id}.jsonl"))
}

/// Splits a byte stream into lines of at most `cap` bytes, holding at most
/// `cap` bytes at a time.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    cap: usize,
}

impl LineSplitter {
    /// Default cap on a line: 1 MiB.
    pub const DEFAULT_CAP: usize = 1 << 20;

    /// A splitter with a cap (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap: cap.max(1),
        }
    }

    /// Feeds a chunk; calls `line(bytes, partial)` for each complete line
    /// (without its newline) and for each `cap`-sized piece of a longer one.
    pub fn push(&mut self, mut chunk: &[u8], mut line: impl FnMut(&[u8], bool)) {
        while !chunk.is_empty() {
            let room = self.cap - self.buf.len();
            let window = &chunk[..chunk.len().min(room + 1)];
            match window.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if self.buf.is_empty() {
                        line(&chunk[..i], false);
                    } else {
                        self.buf.extend_from_slice(&chunk[..i]);
                        line(&self.buf, false);
                        self.buf.clear();
                    }
                    chunk = &chunk[i + 1..];
                }
                None => {
                    let take = chunk.len().min(room);
                    self.buf.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if self.buf.len() == self.cap && !chunk.is_empty() && chunk[0] != b'\n' {
                        line(&self.buf, true);
                        self.buf.clear();
                    }
                }
            }
        }
    }

    /// Ends the stream: a last line without a newline is passed on.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            line(&self.buf, false);
            self.buf.clear();
        }
    }
}

/// Writes one run's log file.
///
/// Writes are synchronous and buffered (64 KiB): a record costs a copy into
/// the buffer, and a full buffer one `write` to the page cache, which is
/// cheaper done in place than handed to a blocking thread and back (the
/// dispatch benchmark's inter-task time counts those hand-offs).
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: BufWriter<std::fs::File>,
    line: Vec<u8>,
}

impl RunLog {
    /// Creates the log (and its directory); appends if it exists. A new
    /// log is readable by its owner only (mode 0600, directories 0700): job
    /// output may hold what other users of the machine must not read.
    pub fn create(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Self {
            path,
            file: BufWriter::with_capacity(64 << 10, file),
            line: Vec::new(),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record.
    pub fn write(&mut self, stream: Stream, text: &[u8], partial: bool) -> std::io::Result<()> {
        self.write_record(&LogRecord {
            time_ns: now_ns(),
            stream,
            text: String::from_utf8_lossy(text).into_owned(),
            partial,
        })
    }

    /// Appends a record made elsewhere (a node agent's combined log keeps
    /// the times its lines were read there).
    pub fn write_record(&mut self, record: &LogRecord) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)
    }

    /// Appends an executor entry.
    pub fn note(&mut self, text: &str) -> std::io::Result<()> {
        self.write(Stream::Executor, text.as_bytes(), false)
    }

    /// Flushes buffered records to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cap: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(cap);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, p| {
                out.push((String::from_utf8_lossy(l).into_owned(), p))
            });
        }
        s.finish(|l, p| out.push((String::from_utf8_lossy(l).into_owned(), p)));
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        let got = split(100, &[b"ab", b"c\nde\n\nf", b"g"]);
        let want = [("abc", false), ("de", false), ("", false), ("fg", false)];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b)));
    }

    #[test]
    fn caps_long_lines_in_pieces() {
        let got = split(4, &[b"0123456789\nxy"]);
        let want = [("0123", true), ("4567", true), ("89", false), ("xy", false)];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b)));
        // A line exactly at the cap is whole.
        assert_eq!(split(4, &[b"abcd\n"]), vec![("abcd".to_owned(), false)]);
        assert_eq!(
            split(4, &[b"ab", b"cd", b"\n"]),
            vec![("abcd".to_owned(), false)]
        );
    }

    #[test]
    fn a_huge_line_is_never_held_whole() {
        let mut s = LineSplitter::new(1024);
        let chunk = vec![b'x'; 64 << 10];
        let mut pieces = 0;
        for _ in 0..160 {
            s.push(&chunk, |l, partial| {
                assert!(l.len() <= 1024 && partial);
                pieces += 1;
            });
            assert!(s.buf.len() <= 1024);
        }
        assert_eq!(pieces, 160 * 64 - 1);
    }

    #[test]
    fn paths_are_dated_and_named_after_the_run() {
        let p = log_path(Path::new("/state"), "0190-run", 1_704_067_200_000_000_000);
        assert_eq!(p, Path::new("/state/logs/2024-01-01/0190-run.jsonl"));
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000_000_000), "2000-02-29");
    }

    /// SECURITY.md: run logs are their owner's alone.
    #[test]
    fn a_new_log_and_its_directory_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "run-1", 0);
        let mut log = RunLog::create(&path).unwrap();
        log.note("hello").unwrap();
        log.flush().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(&path) & 0o077, 0, "{:o}", mode(&path));
        let day = path.parent().unwrap();
        assert_eq!(mode(day) & 0o077, 0, "{:o}", mode(day));
        assert_eq!(mode(day.parent().unwrap()) & 0o077, 0);
    }

    #[test]
    fn writes_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/d/run.jsonl");
        let mut log = RunLog::create(&path).unwrap();
        log.write(Stream::Stdout, b"hello \xff", false).unwrap();
        log.note("exited with exit code 0").unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<LogRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].stream, Stream::Stdout);
        assert_eq!(records[0].text, "hello \u{fffd}");
        assert!(!text.contains("partial"));
        assert_eq!(records[1].stream, Stream::Executor);
    }
}
