//! Bad stores give typed errors, never a panic: a second writer, a newer
//! schema, a file that is not a database, a damaged one; and readers work
//! beside a writer.

use std::io::{Seek, SeekFrom, Write};

use databuild_bel_sqlite::{SCHEMA_VERSION, SqliteBel};
use databuild_core::BelError;
use databuild_core::bel::{BelSink, EventFilter};
use databuild_core::testkit::sink::sample_event;
use futures::StreamExt;

#[tokio::test]
async fn a_second_writer_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    let first = SqliteBel::open(&path).unwrap();
    let err = SqliteBel::open(&path).unwrap_err();
    assert!(
        matches!(&err, BelError::Locked { holder: Some(pid), .. } if *pid == std::process::id()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("locked by another writer"),
        "{err}"
    );
    drop(first);
    SqliteBel::open(&path).expect("free once the writer is gone");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    drop(SqliteBel::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    for err in [
        SqliteBel::open(&path).unwrap_err(),
        SqliteBel::open_read_only(&path).unwrap_err(),
    ] {
        assert!(
            matches!(err, BelError::SchemaTooNew { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    std::fs::write(
        &path,
        b"{\"this is\": \"a JSON file, not SQLite\"}\n".repeat(200),
    )
    .unwrap();
    let err = SqliteBel::open(&path).unwrap_err();
    assert!(matches!(err, BelError::Unreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("bel.sqlite"), "{err}");
    // Nothing was lost: the file is as it was.
    assert!(std::fs::read(&path).unwrap().starts_with(b"{\"this is\""));

    // A SQLite database of something else is not taken over either.
    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE mine (x)")
        .unwrap();
    let err = SqliteBel::open(&other).unwrap_err();
    assert!(
        matches!(&err, BelError::Unreadable { reason, .. } if reason.contains("other tables")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_damaged_database_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    {
        let bel = SqliteBel::open(&path).unwrap();
        for n in 0..200 {
            bel.append(vec![sample_event("r", "x", n)]).await.unwrap();
        }
    }
    // Checkpointed into the main file on close; now scribble over its pages
    // past the header.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    assert!(len > 8192, "{len}");
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(&vec![0xA5; (len - 4096) as usize]).unwrap();
    drop(f);
    match SqliteBel::open(&path) {
        Err(e) => assert!(
            matches!(e, BelError::Unreadable { .. } | BelError::Backend { .. }),
            "{e:?}"
        ),
        Ok(bel) => {
            let err = bel
                .read(0, &EventFilter::all(), usize::MAX)
                .await
                .unwrap_err();
            assert!(
                matches!(err, BelError::Unreadable { .. } | BelError::Backend { .. }),
                "{err:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_a_writer_from_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    let writer = SqliteBel::open(&path).unwrap();
    writer
        .append(vec![sample_event("r", "x", 1)])
        .await
        .unwrap();
    let reader = SqliteBel::open_read_only(&path).unwrap();
    assert_eq!(reader.head().await.unwrap(), 1);
    let mut live = reader.subscribe(0, EventFilter::all());
    assert_eq!(live.next().await.unwrap().unwrap().seq, 1);
    writer
        .append(vec![sample_event("r", "x", 2), sample_event("r", "x", 3)])
        .await
        .unwrap();
    // The reader's subscription polls, and sees the new events.
    assert_eq!(live.next().await.unwrap().unwrap().seq, 2);
    assert_eq!(live.next().await.unwrap().unwrap().seq, 3);
    // A read-only handle refuses to write.
    let err = reader
        .append(vec![sample_event("r", "x", 4)])
        .await
        .unwrap_err();
    assert!(matches!(err, BelError::Io { .. }), "{err:?}");
    // A missing store is an error naming it.
    let err = SqliteBel::open_read_only(dir.path().join("nope.sqlite")).unwrap_err();
    assert!(err.to_string().contains("nope.sqlite"), "{err}");
}

/// SECURITY.md: a store and its lock, WAL and shared-memory files are
/// readable and writable by their owner only.
#[tokio::test]
async fn a_new_store_is_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    let bel = databuild_bel_sqlite::SqliteBel::open(&path).unwrap();
    databuild_core::BelSink::append(
        &bel,
        vec![databuild_core::BuildEvent::new(
            databuild_core::bel::Event::BuildFailed(databuild_core::proto::BuildFailed {
                reason: "x".into(),
            }),
        )],
    )
    .await
    .unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: mode {mode:o}", entry.path().display());
        checked += 1;
    }
    assert!(checked >= 3, "the store, its lock and its WAL");
}
