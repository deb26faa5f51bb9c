//! Conformance suites that every backend runs from its own tests, the way
//! object_store's shared integration suite is run by each store.
//!
//! - [`executor`]: checks every [`Executor`](crate::Executor) must pass. A
//!   backend's `tests/` implements [`executor::ExecutorHarness`] and calls
//!   [`executor::run_all`].
//! - [`hooked`]: a sink wrapper that fails appends or stops the process at
//!   chosen batches, for fault and crash tests.
//! - [`jobs`]: a job for tests (`<name>/<key>` partitions, inputs by key,
//!   run as a process).
//! - [`scripted`]: a test-driven executor for orchestrator tests; it passes
//!   the executor suite too.
//! - [`sink`]: checks every [`BelSink`](crate::BelSink) must pass. A sink's
//!   `tests/` implements [`sink::SinkHarness`] and calls
//!   [`sink::run_all`], plus [`sink::sigkilled_writer_keeps_acknowledged_appends`]
//!   for durable sinks.
//!
//! Compiled with the `testkit` feature. Not covered by semver: checks are
//! added as the contract is sharpened.

pub mod executor;
pub mod hooked;
pub mod jobs;
pub mod scripted;
pub mod sink;
