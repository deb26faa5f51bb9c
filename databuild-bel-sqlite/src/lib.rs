//! Durable build event log on SQLite: databuild's embedded default store.
//!
//! [`SqliteBel`] implements [`BelSink`](databuild_core::BelSink) on one
//! SQLite database file in WAL mode. One writer thread owns the write
//! connection; appends from any number of tasks are queued to it and
//! committed together (*group commit*: the batches waiting when a
//! transaction starts share it, and each append is answered after that
//! commit). Readers use connections of their own, so `read`, `head` and
//! subscriptions never wait for a build that is writing. Another process
//! can read the same file while a build writes ([`SqliteBel::open_read_only`]).
//!
//! ```
//! use databuild_bel_sqlite::SqliteBel;
//! use databuild_core::bel::{BelSink, EventFilter};
//! use databuild_core::testkit::sink::sample_event;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let bel = SqliteBel::open(dir.path().join("bel.sqlite"))?;
//! let range = bel.append(vec![sample_event("req-1", "run-1", 1)]).await?;
//! assert_eq!((range.first, range.last), (1, 1));
//! let events = bel.read(0, &EventFilter::build_request("req-1"), 10).await?;
//! assert_eq!(events[0].seq, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The kept build state
//!
//! Next to the events, the store keeps the build state the orchestrator
//! reduces them to (schema version 2): one row per job run, build request
//! and partition, written in the transaction of the events that change it
//! ([`BelSink::append_with_state`](databuild_core::BelSink::append_with_state)),
//! with the seq the rows are current to. A restarting orchestrator reads
//! the rows ([`BelSink::load_state`](databuild_core::BelSink::load_state))
//! and replays only the events after them, so its start does not grow with
//! the log's length. The rows are derived data: a store from version 1, or
//! rows left behind by plain appends, are written whole on the next load,
//! and damaged rows are rebuilt from the log.
//!
//! # Durability
//!
//! Commits run with `synchronous=NORMAL`: an acknowledged append is in the
//! write-ahead log, in the operating system's hands, so a killed process
//! loses nothing acknowledged; fsync happens at checkpoints, so a power cut
//! can lose the last commits. This keeps fsync off the launch path (DESIGN,
//! "Exactly-once launch").
//!
//! # Errors
//!
//! Opening a database another writer holds is [`BelError::Locked`]
//! (naming the holder's pid, from the `<file>.lock` sidecar); a database
//! written by a newer schema is [`BelError::SchemaTooNew`]; a file that is
//! not a database, or is damaged, is [`BelError::Unreadable`]. None of them
//! panics.
//!
//! [`BelError::Locked`]: databuild_core::BelError::Locked
//! [`BelError::SchemaTooNew`]: databuild_core::BelError::SchemaTooNew
//! [`BelError::Unreadable`]: databuild_core::BelError::Unreadable

mod schema;
mod sink;
mod writer;

pub use schema::SCHEMA_VERSION;
pub use sink::SqliteBel;
