//! The JSONL sink's file format under damage: torn tails, flipped bits,
//! readers following a writer, locks, and I/O errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use databuild_core::bel::{
    BelError, BelSink, BlobDigest, BuildEvent, Event, EventFilter, JsonlBel, JsonlOptions, TornTail,
};
use databuild_core::proto;
use futures::StreamExt;

fn event(n: u64) -> BuildEvent {
    BuildEvent::at(
        n as i64,
        Event::BuildFailed(proto::BuildFailed {
            reason: format!("reason {n} ünïcode \"quoted\""),
        }),
    )
    .for_request(format!("req-{n}"))
}

async fn write_log(path: &Path, n: u64) {
    let (bel, report) = JsonlBel::open_default(path).await.unwrap();
    assert_eq!(report.events, 0);
    for i in 1..=n {
        bel.append(vec![event(i)]).await.unwrap();
    }
}

async fn all(bel: &JsonlBel) -> Vec<BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

/// Start offsets of the lines of a file.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i + 1 < bytes.len() {
            starts.push(i + 1);
        }
    }
    starts
}

#[tokio::test]
async fn lines_are_checksummed_proto_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.jsonl");
    write_log(&path, 1).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert!(line["crc32c"].is_u64());
    // proto3 JSON: field names as in the schema, 64-bit integers as strings.
    assert_eq!(line["event"]["seq"], "1");
    assert_eq!(line["event"]["build_request_id"], "req-1");
    assert_eq!(
        line["event"]["build_failed"]["reason"],
        "reason 1 ünïcode \"quoted\""
    );
}

#[tokio::test]
async fn a_torn_tail_at_every_byte_offset_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    write_log(&full, 3).await;
    let bytes = std::fs::read(&full).unwrap();
    let start = *line_starts(&bytes).last().unwrap();
    for cut in start + 1..bytes.len() {
        let path = dir.path().join(format!("cut-{cut}.jsonl"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (bel, report) = JsonlBel::open_default(&path).await.unwrap();
        assert_eq!(report.events, 2, "cut at {cut}");
        assert_eq!(
            report.torn_tail,
            Some(TornTail {
                offset: start as u64,
                bytes: (cut - start) as u64
            }),
            "cut at {cut}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), start as u64);
        let events = all(&bel).await;
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        // The next append continues after the last whole record.
        let r = bel.append(vec![event(9)]).await.unwrap();
        assert_eq!((r.first, r.last), (3, 3));
        drop(bel);
        let (bel, report) = JsonlBel::open_default(&path).await.unwrap();
        assert_eq!((report.events, report.torn_tail), (3, None));
        assert_eq!(all(&bel).await[2].build_request_id, "req-9");
        std::fs::remove_file(&path).unwrap();
    }
    // Cut exactly at a line boundary: nothing torn.
    let path = dir.path().join("boundary.jsonl");
    std::fs::write(&path, &bytes[..start]).unwrap();
    let (_, report) = JsonlBel::open_default(&path).await.unwrap();
    assert_eq!((report.events, report.torn_tail), (2, None));
}

async fn open_err(path: &Path) -> BelError {
    JsonlBel::open_default(path).await.unwrap_err()
}

#[tokio::test]
async fn a_flipped_checksum_mid_file_is_corrupt_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.jsonl");
    write_log(&path, 3).await;
    let bytes = std::fs::read(&path).unwrap();
    let starts = line_starts(&bytes);
    // The checksum's first digit on line 2.
    let mut damaged = bytes.clone();
    let at = starts[1] + "{\"crc32c\":".len();
    damaged[at] = if damaged[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&path, &damaged).unwrap();
    let err = open_err(&path).await;
    match &err {
        BelError::Corrupt {
            line,
            offset,
            reason,
            ..
        } => {
            assert_eq!((*line, *offset), (2, starts[1] as u64));
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("line 2"), "{err}");
    // Nothing was cut.
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
}

#[tokio::test]
async fn a_flipped_bit_in_an_event_is_corrupt_even_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.jsonl");
    write_log(&path, 3).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let starts = line_starts(&bytes);
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = starts[2] + text[starts[2]..].find("reason 3").unwrap() + "reason ".len();
    bytes[at] = b'7';
    std::fs::write(&path, &bytes).unwrap();
    match open_err(&path).await {
        BelError::Corrupt { line, reason, .. } => {
            assert_eq!(line, 3);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn garbage_and_wrong_seqs_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.jsonl");
    std::fs::write(&path, b"not json\xff\n").unwrap();
    match open_err(&path).await {
        BelError::Corrupt {
            line: 1, reason, ..
        } => assert!(reason.contains("not json"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Two valid logs concatenated: line 2 holds seq 1.
    let one = dir.path().join("one.jsonl");
    write_log(&one, 1).await;
    let line = std::fs::read(&one).unwrap();
    let path = dir.path().join("twice.jsonl");
    std::fs::write(&path, [line.clone(), line].concat()).unwrap();
    match open_err(&path).await {
        BelError::Corrupt {
            line: 2, reason, ..
        } => assert!(reason.contains("seq 1 on line 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_a_partial_last_line_as_pending_and_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    // The bytes of a log with 3 events, written by a writer elsewhere.
    let source = dir.path().join("source.jsonl");
    write_log(&source, 3).await;
    let bytes = std::fs::read(&source).unwrap();
    let starts = line_starts(&bytes);

    let path = dir.path().join("live.jsonl");
    let middle = starts[2] + 10;
    std::fs::write(&path, &bytes[..middle]).unwrap();
    let options = JsonlOptions::default().poll_interval(Duration::from_millis(10));
    let reader = JsonlBel::open_read_only(&path, options).await.unwrap();
    assert_eq!(all(&reader).await.len(), 2);
    assert_eq!(reader.head().await.unwrap(), 2);
    // The reader never cuts the pending line.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), middle as u64);
    let mut follow = reader.subscribe(2, EventFilter::all());

    // The writer finishes the line.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&bytes[middle..]).unwrap();
    drop(f);
    let next = tokio::time::timeout(Duration::from_secs(60), follow.next())
        .await
        .expect("the reader follows the file")
        .unwrap()
        .unwrap();
    assert_eq!(next.seq, 3);
    assert_eq!(all(&reader).await.len(), 3);
    let err = reader.append(vec![event(4)]).await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[tokio::test]
async fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.jsonl");
    let (first, _) = JsonlBel::open_default(&path).await.unwrap();
    let err = open_err(&path).await;
    assert!(matches!(err, BelError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked"), "{err}");
    drop(first);
    JsonlBel::open_default(&path).await.unwrap();
}

#[tokio::test]
async fn an_unusable_path_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regular-file");
    std::fs::write(&file, b"x").unwrap();
    // CI runs as root, so a path under a regular file (ENOTDIR) stands in
    // for an unwritable directory.
    let path: PathBuf = file.join("bel.jsonl");
    match open_err(&path).await {
        BelError::Io { path: p, .. } => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    assert!(
        JsonlBel::open_read_only(dir.path().join("missing.jsonl"), JsonlOptions::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_damaged_blob_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.jsonl");
    let (bel, _) = JsonlBel::open_default(&path).await.unwrap();
    let digest = bel.put_blob(b"the plan".to_vec()).await.unwrap();
    let blob_file = dir.path().join("bel.jsonl.blobs").join(digest.as_str());
    std::fs::write(&blob_file, b"another plan").unwrap();
    match bel.get_blob(&digest).await.unwrap_err() {
        BelError::BlobMismatch { digest: d, actual } => {
            assert_eq!(d, digest.to_string());
            assert_eq!(actual, BlobDigest::of(b"another plan").to_string());
        }
        other => panic!("{other:?}"),
    }
}

/// SECURITY.md: a new JSONL log is its owner's alone.
#[tokio::test]
async fn a_new_log_file_is_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.jsonl");
    let (_bel, _) = databuild_core::JsonlBel::open_default(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}
