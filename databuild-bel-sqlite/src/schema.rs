//! The schema, and migrations by `PRAGMA user_version`.

use std::path::Path;

use databuild_core::BelError;
use rusqlite::Connection;

/// The schema version this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = 2;

/// Version 1: events (the protobuf-encoded envelope, with the columns the
/// reads filter on) and content-addressed blobs. The secondary indexes are
/// partial: most events belong to a request, but only job-run events carry
/// a run id.
const V1: &str = "
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    timestamp_ns INTEGER NOT NULL,
    build_request_id TEXT NOT NULL,
    job_run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event BLOB NOT NULL
);
CREATE INDEX events_by_request ON events(build_request_id, seq) WHERE build_request_id != '';
CREATE INDEX events_by_run ON events(job_run_id, seq) WHERE job_run_id != '';
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
";

/// Version 2: the build state materialized next to the events (DESIGN.md
/// "Storage"), updated in the transaction of the events that change it, so
/// a restart reads it instead of replaying the log: one row per job run,
/// build request and partition (runs and requests as their protobuf
/// records), and `state_seq`, the seq the rows are current to (no row: the
/// store kept no state yet).
const V2: &str = "
CREATE TABLE state_runs (
    job_run_id TEXT PRIMARY KEY,
    ended INTEGER NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE state_requests (
    build_request_id TEXT PRIMARY KEY,
    ended INTEGER NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE state_partitions (
    partition TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    job_run_id TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE state_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Maps a SQLite error on `path` to the BEL's typed errors.
pub(crate) fn error(path: &Path, e: rusqlite::Error) -> BelError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::NotADatabase | C::DatabaseCorrupt) => BelError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        Some(C::DatabaseBusy | C::DatabaseLocked) => BelError::Locked {
            path: path.to_path_buf(),
            holder: None,
        },
        Some(C::CannotOpen | C::ReadOnly | C::DiskFull | C::SystemIoFailure) => BelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        },
        _ => BelError::Backend {
            backend: "sqlite",
            source: Box::new(e),
        },
    }
}

/// Sets the connection up and brings the schema to [`SCHEMA_VERSION`]
/// (writers), or checks it can be read (readers).
pub(crate) fn prepare(conn: &Connection, path: &Path, writer: bool) -> Result<(), BelError> {
    let err = |e| error(path, e);
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    // Reading the version is the first touch of the file: a file that is not
    // a database fails here.
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(BelError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if !writer {
        if version == 0 {
            return Err(BelError::Unreadable {
                path: path.to_path_buf(),
                reason: "the database holds no BEL (no schema yet)".into(),
            });
        }
        return Ok(());
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    // Checkpoints (the only fsyncs) run on a timer in a thread of their own,
    // not in the middle of a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err)?;
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(err)?;
        if tables > 0 {
            return Err(BelError::Unreadable {
                path: path.to_path_buf(),
                reason: "the database holds other tables and no BEL schema".into(),
            });
        }
        // A new store keeps state from its first event.
        conn.execute_batch(&format!(
            "BEGIN; {V1} {V2} INSERT INTO state_meta (key, value) VALUES ('state_seq', 0); \
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(err)?;
        return Ok(());
    }
    // One step per version, each in a transaction that ends by setting
    // `user_version`.
    if version < 2 {
        // The state of a store from version 1 is written whole by the first
        // orchestrator that loads it.
        conn.execute_batch(&format!("BEGIN; {V2} PRAGMA user_version = 2; COMMIT;"))
            .map_err(err)?;
    }
    Ok(())
}
