//! Partition-oriented data builds: declare jobs, ask for partitions, and let
//! databuild plan the work, run it, and record every state transition.
//!
//! (The guided tour is written at the end of this issue.)

pub mod bel;
pub mod graph;
pub mod job;
pub mod partition;
pub mod plan;
pub mod planner;
pub mod proto;
#[cfg(any(feature = "testkit", test))]
pub mod testkit;

pub use bel::{BelError, BelSink, BuildEvent, EventFilter, JsonlBel, MemoryBel};
pub use graph::{DataBuildGraph, Graph, GraphBuilder, GraphError};
#[cfg(feature = "process")]
pub use job::ProcessJob;
pub use job::{
    DataBuildJob, DataDep, DepType, FnJob, JobConfig, JobConfigError, JobLabel, Launch,
    SchedulingHints,
};
pub use partition::{PartitionPattern, PartitionRef, PartitionRefError, PatternError};
pub use plan::{InProgress, JobGraph, Task, TaskId};
pub use planner::{
    AnalyzeRequest, Availability, NothingAvailable, PartitionStatusView, PlanError, Planner,
};
