//! Jobs: the atomic unit of work.
//!
//! A job declares the partitions it can produce ([`DataBuildJob::patterns`]),
//! tells the planner what a set of outputs needs ([`DataBuildJob::config`],
//! seed 001's job.config), and describes how an executor launches it
//! ([`DataBuildJob::launch`]). Jobs only declare; executors run.
//!
//! Three kinds are ready-made: [`FnJob`], Rust closures run in process,
//! `ProcessJob` (feature `process`), an external program in the DataBuild job
//! protocol, and [`SubgraphJob`], part of another graph run by a node agent
//! as one task per group of partitions.

mod config;
mod error;
mod fn_job;
mod label;
mod launch;
#[cfg(feature = "process")]
mod process;
pub mod protocol;
mod subgraph;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

pub use config::{BufferingWindow, DataDep, DepType, JobConfig, RetryPolicy, SchedulingHints};
pub use error::{JobConfigError, JobDefinitionError};
pub use fn_job::{BoxError, FnJob, FnJobBuilder, FnJobContext};
pub use label::{JobLabel, JobLabelError};
pub(crate) use launch::hex as launch_hex;
pub use launch::{InProcessExec, Launch, ProcessLaunch, SubgraphLaunch};
#[cfg(feature = "process")]
pub use process::{ProcessJob, ProcessJobBuilder};
pub use subgraph::{GroupKey, SubgraphJob, SubgraphJobBuilder};

use crate::partition::{PartitionPattern, PartitionRef};

/// A job: declares which partitions it produces, what each needs, and how it
/// is launched.
///
/// The trait is object-safe; graphs hold jobs as `Arc<dyn DataBuildJob>`.
#[async_trait]
pub trait DataBuildJob: Send + Sync + fmt::Debug {
    /// The job's stable label.
    fn label(&self) -> &JobLabel;

    /// The patterns of the partitions the job produces.
    fn patterns(&self) -> &[PartitionPattern];

    /// job.config's `validate_args`: checks requested outputs beyond the
    /// pattern match the planner already made. The default accepts all.
    fn validate_args(&self, outputs: &[PartitionRef]) -> Result<(), String> {
        let _ = outputs;
        Ok(())
    }

    /// job.config's `run_config`: the configurations that produce `outputs`.
    ///
    /// One call may batch many outputs; the job returns one config per output
    /// or configs that each cover several. The planner checks that together
    /// they cover exactly `outputs`.
    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError>;

    /// How an executor launches a run of this job.
    fn launch(&self) -> Launch;

    /// SHA-256 (hex) of the job's definition: label and launch description.
    /// A plan records it per task so that it can refuse to run against a
    /// changed definition.
    fn definition_digest(&self) -> String {
        launch::definition_digest(self.label(), &self.launch())
    }
}

/// Compiles a job's patterns, naming the job in errors (job builders).
pub(crate) fn compile_patterns(
    job: &str,
    patterns: &[String],
) -> Result<Vec<PartitionPattern>, JobDefinitionError> {
    if patterns.is_empty() {
        return Err(JobDefinitionError::NoPatterns {
            job: job.to_owned(),
        });
    }
    patterns
        .iter()
        .map(|p| PartitionPattern::new(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| JobDefinitionError::Pattern {
            job: job.to_owned(),
            source,
        })
}

/// Gives a job's default hints to every config that sets none of its own.
pub(crate) fn apply_default_hints(configs: &mut [JobConfig], hints: Option<&Arc<SchedulingHints>>) {
    if let Some(hints) = hints {
        for c in configs {
            if *c.hints == SchedulingHints::default() {
                c.hints = Arc::clone(hints);
            }
        }
    }
}

macro_rules! forward_job {
    ($($ptr:ty),*) => {$(
        #[async_trait]
        impl<T: DataBuildJob + ?Sized> DataBuildJob for $ptr {
            fn label(&self) -> &JobLabel {
                (**self).label()
            }
            fn patterns(&self) -> &[PartitionPattern] {
                (**self).patterns()
            }
            fn validate_args(&self, outputs: &[PartitionRef]) -> Result<(), String> {
                (**self).validate_args(outputs)
            }
            async fn config(
                &self,
                outputs: &[PartitionRef],
            ) -> Result<Vec<JobConfig>, JobConfigError> {
                (**self).config(outputs).await
            }
            fn launch(&self) -> Launch {
                (**self).launch()
            }
            fn definition_digest(&self) -> String {
                (**self).definition_digest()
            }
        }
    )*};
}

forward_job!(Arc<T>, Box<T>, &T);
