//! Partition-oriented data builds: declare jobs, ask for partitions, and let
//! databuild plan the work, run it, and record every state transition.
//!
//! # Key types
//!
//! - [`PartitionRef`]: the name of one atomic unit of data
//!   (`reviews/date=2024-01-03`), validated and cheap to clone.
//! - [`PartitionPattern`]: an anchored regex with named captures describing
//!   the refs a job produces.
//! - [`DataBuildJob`]: a job. It declares patterns, answers `config(outputs)`
//!   with [`JobConfig`]s (what those outputs read, with which args and env),
//!   and describes its [`Launch`]. Ready-made: [`FnJob`] (Rust closures) and
//!   `ProcessJob` (an external program speaking the job protocol).
//! - [`Graph`]: the registered jobs, and the lookup of a ref to exactly one.
//! - [`Planner`]: graph.analyze. Walks back from requested partitions to a
//!   [`JobGraph`] of [`Task`]s.
//! - [`Orchestrator`]: graph.build. Runs a plan on [`Executor`]s and
//!   returns a [`BuildOutcome`]; its live view is a
//!   [`BuildState`](state::BuildState), the reducer over the log.
//! - [`BelSink`]: the build event log. [`MemoryBel`] and [`JsonlBel`] live
//!   here; the SQLite store is its own crate.
//!
//! # How the pieces fit
//!
//! Jobs only declare; executors run. The planner calls each job's `config`
//! once per wave with every ref asked of it, adds the returned configs as
//! tasks, and follows their `MATERIALIZE` inputs until nothing is missing.
//! The orchestrator then runs the plan: a task whose inputs are built gets a
//! job run, launched as slots (a global limit, named pools) allow; failed
//! runs are retried per the job's policy, silent ones are declared lost,
//! and a job that reports missing inputs at run time gets them built and
//! runs again. Every transition of the seeds' state diagrams (graph.analyze,
//! job.config, graph.build, job.exec and the job-run lifecycle) is an event
//! in the BEL,
//! which is the single source of truth: views such as the partition catalog
//! are reductions over it, so the state after a crash is rebuilt from the log
//! with the same code that maintained it live.
//!
//! ```
//! use std::sync::Arc;
//! use databuild_core::{FnJob, Graph, JobConfig, MemoryBel, Orchestrator, PartitionRef, Planner};
//! use databuild_core::bel::{BelSink, EventFilter};
//!
//! // Raw data lands per day; a summary of a day needs that day's raw data.
//! let raw = FnJob::builder("//raw")
//!     .pattern(r"raw/date=(?P<date>[-0-9]+)")
//!     .config(|outs: &[PartitionRef]| Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect()))
//!     .build()?;
//! let summary = FnJob::builder("//summary")
//!     .pattern(r"summary/date=(?P<date>[-0-9]+)")
//!     .config(|outs: &[PartitionRef]| {
//!         outs.iter()
//!             .map(|o| {
//!                 let date = o.as_str().trim_start_matches("summary/date=");
//!                 Ok(JobConfig::new([o.clone()]).materialize(PartitionRef::new(format!("raw/date={date}"))?))
//!             })
//!             .collect()
//!     })
//!     .build()?;
//! let graph = Graph::builder().job(raw).job(summary).build()?;
//!
//! let bel = MemoryBel::new();
//! let planner = Planner::new(graph).with_bel(Arc::new(bel.clone()));
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let plan = planner.analyze(&[PartitionRef::new("summary/date=2024-01-03")?]).await?;
//! assert_eq!(plan.len(), 2);
//! println!("{}", plan.to_mermaid());
//!
//! let events = bel.read(0, &EventFilter::all(), 100).await?;
//! assert_eq!(events.first().unwrap().kind(), "analyze_started");
//! assert_eq!(events.last().unwrap().kind(), "job_graph_emitted");
//!
//! // Build it: in-process jobs run on the built-in executor; process jobs
//! // need one (`databuild-executor-local`).
//! let orchestrator = Orchestrator::builder()
//!     .graph(planner.graph().clone())
//!     .bel(Arc::new(bel.clone()))
//!     .state_dir(std::env::temp_dir().join("databuild-doc"))
//!     .build()?;
//! let outcome = orchestrator.build(&[PartitionRef::new("summary/date=2024-01-03")?]).await?;
//! assert!(outcome.succeeded());
//! assert_eq!(outcome.built.len(), 2);
//! let events = bel.read(0, &EventFilter::all(), usize::MAX).await?;
//! assert_eq!(events.last().unwrap().kind(), "build_succeeded");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Decisions worth knowing
//!
//! - A ref is checked against every job's patterns when it is looked up, not
//!   when the graph is built: regexes cannot be compared for overlap in
//!   general, so two jobs matching one ref is reported for that ref.
//! - `QUERY` inputs never expand a plan and add no edge: a task that merely
//!   reads a partition if present does not wait for it.
//! - A config that covers refs nobody asked for, misses asked refs, or covers
//!   one twice fails that job's config (job.exec's `validate_config`, applied
//!   at plan time).
//! - Scheduling hints are shared between configs (`Arc`), since plans hold
//!   millions of configs and a job's configs usually share their hints.
//!
//! # Feature flags
//!
//! - `process` (default): [`ProcessJob`], external jobs in the job protocol.
//! - `testkit`: the `testkit` module: the conformance suites every BEL sink
//!   and every executor runs from its own tests, and the `ScriptedExecutor`
//!   for orchestrator tests.
//!
//! # Supported Rust versions
//!
//! The minimum is the workspace's `rust-version` (1.89); it rises only with a
//! minor release.

pub mod bel;
pub mod clock;
pub mod executor;
pub mod graph;
pub mod job;
pub mod orchestrator;
pub mod partition;
pub mod plan;
pub mod planner;
pub mod proto;
pub mod settings;
pub mod state;
#[cfg(any(feature = "testkit", test))]
pub mod testkit;

pub use bel::{BelError, BelSink, BuildEvent, EventFilter, JsonlBel, MemoryBel};
pub use executor::{Executor, ExecutorError, InProcessExecutor, JobRunSpec, Outcome, RunUpdate};
pub use graph::{DataBuildGraph, Graph, GraphBuilder, GraphError};
#[cfg(feature = "process")]
pub use job::ProcessJob;
pub use job::{
    DataBuildJob, DataDep, DepType, FnJob, JobConfig, JobConfigError, JobLabel, Launch,
    SchedulingHints, SubgraphJob,
};
pub use orchestrator::{
    BuildError, BuildHandle, BuildOptions, BuildOutcome, Orchestrator, OrchestratorSettings,
};
pub use partition::{PartitionPattern, PartitionRef, PartitionRefError, PatternError};
pub use plan::{InProgress, JobGraph, Task, TaskId};
pub use planner::{
    AnalyzeRequest, Availability, NothingAvailable, PartitionStatusView, PlanError, Planner,
};
