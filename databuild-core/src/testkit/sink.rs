//! The BEL sink conformance suite.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::bel::{BelError, BelSink, BlobDigest, BuildEvent, Event, EventFilter};
use crate::proto;

/// How the suite makes sinks of one kind.
#[async_trait]
pub trait SinkHarness: Send + Sync {
    /// The sink's name, for messages.
    fn name(&self) -> &str;

    /// Opens the sink stored at `location` (a path inside a fresh temporary
    /// directory the suite made), creating it when absent. A sink that keeps
    /// nothing between opens ignores `location` and returns a new sink.
    async fn open(&self, location: &Path) -> Result<Arc<dyn BelSink>, BelError>;

    /// True when a sink reopened at the same location holds what was
    /// appended before.
    fn durable(&self) -> bool;
}

/// Runs every check that needs no child process, panicking with the name of
/// the sink and of the check that failed.
pub async fn run_all(h: &dyn SinkHarness) {
    appends_get_gap_free_seqs(h).await;
    empty_batch_is_rejected(h).await;
    read_honours_since_limit_and_filter(h).await;
    events_round_trip_exactly(h).await;
    concurrent_appends_are_atomic_and_gap_free(h).await;
    read_then_subscribe_has_no_gap_and_no_duplicate(h).await;
    subscribe_honours_the_filter(h).await;
    blobs_are_content_addressed(h).await;
    kept_state_follows_the_log(h).await;
    if h.durable() {
        reopen_keeps_events_and_continues_seqs(h).await;
    }
}

/// A fresh temporary directory and the sink opened inside it.
async fn fresh(h: &dyn SinkHarness) -> (tempfile::TempDir, PathBuf, Arc<dyn BelSink>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let location = dir.path().join("bel");
    let sink = h
        .open(&location)
        .await
        .unwrap_or_else(|e| panic!("{}: open failed: {e}", h.name()));
    (dir, location, sink)
}

/// A job-run event for tests: request `request`, job run `run`.
pub fn sample_event(request: &str, run: &str, n: u64) -> BuildEvent {
    BuildEvent::at(
        1_700_000_000_000_000_000 + n as i64,
        Event::JobRunHeartbeat(proto::JobRunHeartbeat {
            cpu_ms: n,
            rss_bytes: n * 1024,
        }),
    )
    .for_request(request)
    .for_job_run(run)
}

fn check<T: std::fmt::Debug + PartialEq>(h: &dyn SinkHarness, what: &str, got: T, want: T) {
    assert_eq!(got, want, "{}: {what}", h.name());
}

/// Appends get consecutive seqs from 1, and the returned range says so.
pub async fn appends_get_gap_free_seqs(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    check(h, "empty head", sink.head().await.unwrap(), 0);
    let r = sink.append(vec![sample_event("a", "r", 1)]).await.unwrap();
    check(h, "first range", (r.first, r.last), (1, 1));
    let r = sink
        .append((2..=4).map(|n| sample_event("a", "r", n)).collect())
        .await
        .unwrap();
    check(h, "second range", (r.first, r.last), (2, 4));
    check(h, "head", sink.head().await.unwrap(), 4);
    let all = sink.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    check(h, "seqs", seqs, vec![1, 2, 3, 4]);
    let payload: Vec<u64> = all.iter().map(cpu).collect();
    check(h, "batch order", payload, vec![1, 2, 3, 4]);
}

fn cpu(e: &BuildEvent) -> u64 {
    match &e.event {
        Some(Event::JobRunHeartbeat(hb)) => hb.cpu_ms,
        other => panic!("unexpected event {other:?}"),
    }
}

/// An empty batch is a typed error and stores nothing.
pub async fn empty_batch_is_rejected(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    let err = sink.append(Vec::new()).await.unwrap_err();
    assert!(matches!(err, BelError::EmptyBatch), "{}: {err:?}", h.name());
    check(h, "head after empty batch", sink.head().await.unwrap(), 0);
}

/// `read` returns events after `since`, at most `limit`, matching the filter.
pub async fn read_honours_since_limit_and_filter(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    let mut batch = Vec::new();
    for n in 1..=10u64 {
        let request = if n % 2 == 0 { "even" } else { "odd" };
        batch.push(sample_event(request, &format!("run{}", n % 3), n));
    }
    batch.push(
        BuildEvent::at(
            5,
            Event::BuildFailed(proto::BuildFailed { reason: "x".into() }),
        )
        .for_request("odd"),
    );
    sink.append(batch).await.unwrap();
    let seqs = |v: Vec<BuildEvent>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    let all = EventFilter::all();
    check(
        h,
        "since 7",
        seqs(sink.read(7, &all, usize::MAX).await.unwrap()),
        vec![8, 9, 10, 11],
    );
    check(
        h,
        "limit 3",
        seqs(sink.read(2, &all, 3).await.unwrap()),
        vec![3, 4, 5],
    );
    check(
        h,
        "past the end",
        seqs(sink.read(11, &all, 10).await.unwrap()),
        vec![],
    );
    check(
        h,
        "limit 0",
        seqs(sink.read(0, &all, 0).await.unwrap()),
        vec![],
    );
    check(
        h,
        "by request",
        seqs(
            sink.read(0, &EventFilter::build_request("even"), usize::MAX)
                .await
                .unwrap(),
        ),
        vec![2, 4, 6, 8, 10],
    );
    check(
        h,
        "by request, since and limit",
        seqs(
            sink.read(4, &EventFilter::build_request("even"), 2)
                .await
                .unwrap(),
        ),
        vec![6, 8],
    );
    check(
        h,
        "by job run",
        seqs(
            sink.read(0, &EventFilter::job_run("run0"), usize::MAX)
                .await
                .unwrap(),
        ),
        vec![3, 6, 9],
    );
    check(
        h,
        "by kind",
        seqs(
            sink.read(
                0,
                &EventFilter::all().with_kinds(["build_failed"]),
                usize::MAX,
            )
            .await
            .unwrap(),
        ),
        vec![11],
    );
}

/// Every field of an event comes back as it went in (seq assigned).
pub async fn events_round_trip_exactly(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    let r = |s: &str| proto::PartitionRef { str: s.into() };
    let mut rich = BuildEvent::at(
        -1,
        Event::JobRunSucceeded(proto::JobRunSucceeded {
            manifest: Some(Box::new(proto::PartitionManifest {
                outputs: vec![r("a/1"), r("ü/\"quoted\"\\")],
                inputs: vec![],
                start_time_ns: i64::MIN,
                end_time_ns: i64::MAX,
                task: Some(proto::Task {
                    job: Some(proto::JobLabel {
                        label: "//j".into(),
                    }),
                    config: Some(proto::JobConfig {
                        outputs: vec![r("a/1")],
                        inputs: vec![proto::DataDep {
                            dep_type_code: 1,
                            dep_type_name: "materialize".into(),
                            partition_ref: Some(r("b/1")),
                        }],
                        args: vec!["--x".into(), String::new()],
                        env: [("K".to_owned(), "V\n".to_owned())].into(),
                        hints: None,
                    }),
                    job_definition_digest: "d".into(),
                }),
                partitions: vec![proto::PartitionMetadata {
                    partition: Some(r("a/1")),
                    row_count: u64::MAX,
                    bytes: 1,
                    version: "v".into(),
                    extra: Default::default(),
                }],
            })),
        }),
    )
    .for_request("req")
    .for_job_run("run");
    rich.origin = Some(proto::EventOrigin {
        node: "node-1".into(),
        seq: u64::MAX,
    });
    let plain = sample_event("", "", 0);
    sink.append(vec![rich.clone(), plain.clone()])
        .await
        .unwrap();
    let back = sink.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    rich.seq = 1;
    let mut plain = plain;
    plain.seq = 2;
    check(h, "round trip", back, vec![rich, plain]);
}

/// Concurrent appenders get gap-free seqs, and each batch's events are
/// contiguous and in order.
pub async fn concurrent_appends_are_atomic_and_gap_free(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    const WRITERS: u64 = 8;
    const BATCHES: u64 = 25;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let sink = Arc::clone(&sink);
        tasks.push(tokio::spawn(async move {
            let mut ranges = Vec::new();
            for b in 0..BATCHES {
                let size = 1 + (w * 7 + b * 3) % 5;
                let batch = (0..size)
                    .map(|i| sample_event(&format!("w{w}"), &format!("b{b}"), i))
                    .collect();
                let r = sink.append(batch).await.expect("append");
                assert_eq!(r.last - r.first + 1, size);
                ranges.push((r, w, b));
            }
            ranges
        }));
    }
    let mut ranges = Vec::new();
    for t in tasks {
        ranges.extend(t.await.expect("writer task"));
    }
    let all = sink.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    let total: u64 = ranges.iter().map(|(r, _, _)| r.last - r.first + 1).sum();
    check(h, "event count", all.len() as u64, total);
    for (i, e) in all.iter().enumerate() {
        check(h, "gap-free seq", e.seq, i as u64 + 1);
    }
    for (r, w, b) in ranges {
        for seq in r.first..=r.last {
            let e = &all[(seq - 1) as usize];
            assert_eq!(
                (e.build_request_id.as_str(), e.job_run_id.as_str(), cpu(e)),
                (
                    format!("w{w}").as_str(),
                    format!("b{b}").as_str(),
                    seq - r.first
                ),
                "{}: batch w{w}/b{b} is not contiguous at seq {seq}",
                h.name()
            );
        }
    }
}

/// A subscription from any point sees every later event exactly once,
/// stored and live, while appends go on concurrently.
pub async fn read_then_subscribe_has_no_gap_and_no_duplicate(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    sink.append((1..=50).map(|n| sample_event("r", "x", n)).collect())
        .await
        .unwrap();
    let seen = sink.read(0, &EventFilter::all(), 20).await.unwrap();
    let since = seen.last().unwrap().seq;
    let writer = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            for n in 0..100u64 {
                sink.append(vec![sample_event("r", "x", 1000 + n)])
                    .await
                    .unwrap();
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut stream = sink.subscribe(since, EventFilter::all());
    let mut got = Vec::new();
    while got.len() < 130 {
        let next = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: subscription stalled after {} events",
                    h.name(),
                    got.len()
                )
            });
        let e = next
            .unwrap_or_else(|| panic!("{}: subscription ended early", h.name()))
            .unwrap();
        got.push(e.seq);
    }
    writer.await.unwrap();
    let want: Vec<u64> = (since + 1..=150).collect();
    check(h, "subscribed seqs", got, want);
}

/// A filtered subscription sees only matching events, stored then live.
pub async fn subscribe_honours_the_filter(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    sink.append(vec![sample_event("a", "1", 1), sample_event("b", "1", 2)])
        .await
        .unwrap();
    let mut stream = sink.subscribe(0, EventFilter::build_request("b"));
    sink.append(vec![sample_event("a", "1", 3), sample_event("b", "1", 4)])
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("subscription delivers")
            .expect("stream open")
            .unwrap();
        got.push((e.seq, e.build_request_id));
    }
    check(
        h,
        "filtered subscription",
        got,
        vec![(2, "b".to_owned()), (4, "b".to_owned())],
    );
}

/// Blobs round-trip, the same bytes give the same digest, and an unknown
/// digest is `None`.
pub async fn blobs_are_content_addressed(h: &dyn SinkHarness) {
    let (_dir, _, sink) = fresh(h).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let d1 = sink.put_blob(bytes.clone()).await.unwrap();
    let d2 = sink.put_blob(bytes.clone()).await.unwrap();
    check(h, "same digest", &d1, &d2);
    check(h, "digest", d1.clone(), BlobDigest::of(&bytes));
    check(h, "blob", sink.get_blob(&d1).await.unwrap(), Some(bytes));
    let empty = sink.put_blob(Vec::new()).await.unwrap();
    check(
        h,
        "empty blob",
        sink.get_blob(&empty).await.unwrap(),
        Some(Vec::new()),
    );
    let unknown = BlobDigest::of(b"never stored");
    check(
        h,
        "unknown blob",
        sink.get_blob(&unknown).await.unwrap(),
        None,
    );
}

/// Reopening keeps every event and blob, and appends continue the seqs.
pub async fn reopen_keeps_events_and_continues_seqs(h: &dyn SinkHarness) {
    let (_dir, location, sink) = fresh(h).await;
    sink.append((1..=5).map(|n| sample_event("r", "x", n)).collect())
        .await
        .unwrap();
    let digest = sink.put_blob(b"plan".to_vec()).await.unwrap();
    let before = sink.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    drop(sink);
    let sink = h.open(&location).await.unwrap();
    check(
        h,
        "events after reopen",
        sink.read(0, &EventFilter::all(), usize::MAX).await.unwrap(),
        before,
    );
    check(h, "head after reopen", sink.head().await.unwrap(), 5);
    check(
        h,
        "blob after reopen",
        sink.get_blob(&digest).await.unwrap(),
        Some(b"plan".to_vec()),
    );
    let r = sink.append(vec![sample_event("r", "x", 6)]).await.unwrap();
    check(h, "seq after reopen", (r.first, r.last), (6, 6));
}

/// A sink that keeps the build state ([`BelSink::keeps_state`]) stores
/// the rows each batch leaves in the batch's transaction and loads them
/// back as the state the log replays to; rows lag (and the events after
/// them are replayed) after a plain append, until a whole state is saved;
/// a durable sink keeps them across a reopen. Sinks that keep no state
/// skip it.
pub async fn kept_state_follows_the_log(h: &dyn SinkHarness) {
    use crate::state::BuildState;
    let (_dir, location, sink) = fresh(h).await;
    if !sink.keeps_state() {
        return;
    }
    let all = || EventFilter::all();
    let request = |event| BuildEvent::at(1, event).for_request("q");
    let run = |event| BuildEvent::at(2, event).for_request("q").for_job_run("r");
    let task = proto::Task {
        job: Some(proto::JobLabel {
            label: "//a".into(),
        }),
        config: Some(proto::JobConfig {
            outputs: vec![proto::PartitionRef { str: "a/1".into() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let batches = vec![
        vec![
            request(Event::BuildRequestReceived(proto::BuildRequestReceived {
                requested: vec![proto::PartitionRef { str: "a/1".into() }],
                options: Some(proto::BuildOptions {
                    force: false,
                    keep_going: true,
                }),
            })),
            request(Event::BuildPlanning(proto::BuildPlanning {})),
        ],
        vec![
            request(Event::BuildExecuting(proto::BuildExecuting::default())),
            run(Event::JobRunQueued(proto::JobRunQueued {
                task: Some(Box::new(task)),
                attempt: 1,
                previous_job_run_id: String::new(),
            })),
        ],
        vec![
            run(Event::JobScheduled(proto::JobScheduled {
                job_run_id: "r".into(),
            })),
            run(Event::PartitionStatusChanged(
                proto::PartitionStatusChanged {
                    partition: Some(proto::PartitionRef { str: "a/1".into() }),
                    status: proto::PartitionStatus::Building as i32,
                    job_run_id: "r".into(),
                },
            )),
        ],
    ];
    if sink.load_state().await.unwrap().is_none() {
        sink.save_state(crate::bel::StateRows::default(), 0)
            .await
            .unwrap();
    }
    let mut live = BuildState::new();
    for batch in batches {
        let overlay = live
            .overlay(&batch)
            .expect("the batch follows the diagrams");
        let statuses = BuildState::status_positions(&batch);
        let rows = overlay.delta_rows(&statuses);
        let range = sink.append_with_state(batch, rows).await.unwrap();
        live.merge(overlay, &statuses, range.first, range.last);
    }
    let stored = |sink: Arc<dyn BelSink>| async move {
        let (rows, at) = sink
            .load_state()
            .await
            .unwrap()
            .expect("the sink keeps state");
        (BuildState::from_rows(rows, at).unwrap(), at)
    };
    let (loaded, at) = stored(Arc::clone(&sink)).await;
    check(h, "stored state's seq", at, 6);
    check(h, "stored state", &loaded, &live);
    let replayed = BuildState::replay(&sink.read(0, &all(), usize::MAX).await.unwrap()).unwrap();
    check(
        h,
        "stored state against the replayed log",
        &loaded,
        &replayed,
    );

    // A plain append leaves the rows behind; a load replays it on top.
    sink.append(vec![run(Event::JobRunRunning(proto::JobRunRunning {
        executor: "x".into(),
        handle: "h".into(),
    }))])
    .await
    .unwrap();
    let (_, at) = stored(Arc::clone(&sink)).await;
    check(h, "stored state's seq after a plain append", at, 6);
    let events = sink.read(0, &all(), usize::MAX).await.unwrap();
    let replayed = BuildState::replay(&events).unwrap();
    check(
        h,
        "loaded state after a plain append",
        &BuildState::load(&*sink).await.unwrap(),
        &replayed,
    );
    // Saving the whole state catches the rows up.
    sink.save_state(replayed.to_rows(), 7).await.unwrap();
    let (loaded, at) = stored(Arc::clone(&sink)).await;
    check(h, "stored state's seq after a save", at, 7);
    check(h, "stored state after a save", &loaded, &replayed);
    if h.durable() {
        drop(sink);
        let sink = h.open(&location).await.unwrap();
        let (loaded, at) = stored(sink).await;
        check(h, "stored state's seq after reopen", at, 7);
        check(h, "stored state after reopen", &loaded, &replayed);
    }
}

/// The environment variable that turns the SIGKILL check's child into the
/// writer.
pub const WRITER_ENV: &str = "DATABUILD_TESTKIT_WRITER";

/// A writer process killed with SIGKILL loses no acknowledged append.
///
/// The check runs the current test binary again as a child, running only
/// `test_name` (the test that calls this function) with [`WRITER_ENV`] set:
/// in the child this function opens the sink and appends batches forever,
/// printing each acknowledgement. The parent kills it after some
/// acknowledgements, reopens the sink, and checks that every acknowledged
/// batch is there, whole.
pub async fn sigkilled_writer_keeps_acknowledged_appends(h: &dyn SinkHarness, test_name: &str) {
    if let Some(location) = std::env::var_os(WRITER_ENV) {
        writer_child(h, Path::new(&location)).await;
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let location = dir.path().join("bel");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, &location)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer child");
    let stdout = child.stdout.take().expect("child stdout");
    // The reader is handed back and dropped only after the kill, so the
    // child is killed while appending, never stopped by a closed pipe.
    let (acked, reader) = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).expect("child output") == 0 {
                break;
            }
            if let Some(rest) = line.trim_end().strip_prefix("ACK ") {
                let mut parts = rest.split(' ');
                let batch: u64 = parts.next().and_then(|p| p.parse().ok()).expect("batch");
                let last: u64 = parts.next().and_then(|p| p.parse().ok()).expect("seq");
                acked.push((batch, last));
                if acked.len() >= 200 {
                    break;
                }
            }
        }
        (acked, reader)
    })
    .await
    .expect("reading acknowledgements");
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("reap the writer");
    drop(reader);
    use std::os::unix::process::ExitStatusExt;
    check(h, "the writer died of SIGKILL", status.signal(), Some(9));
    assert!(
        acked.len() >= 200,
        "{}: the writer acknowledged only {} batches",
        h.name(),
        acked.len()
    );

    let sink = h.open(&location).await.expect("reopen after the kill");
    let all = sink.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    for (i, e) in all.iter().enumerate() {
        check(h, "gap-free after kill", e.seq, i as u64 + 1);
    }
    let batches: BTreeSet<&str> = all.iter().map(|e| e.build_request_id.as_str()).collect();
    for (batch, last) in &acked {
        let name = format!("batch-{batch}");
        assert!(
            batches.contains(name.as_str()),
            "{}: acknowledged {name} is lost",
            h.name()
        );
        let events: Vec<&BuildEvent> = all.iter().filter(|e| e.build_request_id == name).collect();
        check(h, "whole batch", events.len(), 3);
        check(
            h,
            "acknowledged seq",
            events.last().map(|e| e.seq),
            Some(*last),
        );
    }
    // Whatever was not acknowledged is all or nothing, too.
    for b in &batches {
        let n = all.iter().filter(|e| e.build_request_id == *b).count();
        check(h, "batch is all or nothing", n, 3);
    }
}

async fn writer_child(h: &dyn SinkHarness, location: &Path) {
    use std::io::Write;
    let sink = h.open(location).await.expect("child opens the sink");
    for batch in 0u64.. {
        let events = (0..3)
            .map(|i| sample_event(&format!("batch-{batch}"), "w", i))
            .collect();
        let r = sink.append(events).await.expect("child append");
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {batch} {}", r.last).expect("stdout");
        out.flush().expect("stdout");
    }
}
