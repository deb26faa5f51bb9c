use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::launch::InProcessExec;
use super::{
    DataBuildJob, JobConfig, JobConfigError, JobDefinitionError, JobLabel, Launch, SchedulingHints,
};
use crate::partition::{PartitionPattern, PartitionRef};

/// A boxed error, as returned by job functions.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type ConfigFn = dyn Fn(&[PartitionRef]) -> Result<Vec<JobConfig>, BoxError> + Send + Sync;
type ValidateFn = dyn Fn(&[PartitionRef]) -> Result<(), String> + Send + Sync;

/// What an in-process job run receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FnJobContext {
    /// The job run's id.
    pub job_run_id: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The build request that started the run.
    pub build_request_id: String,
    /// The configuration to run.
    pub config: JobConfig,
    /// The request's shared scratch directory, when there is one.
    pub scratch_dir: Option<PathBuf>,
}

impl FnJobContext {
    /// A context for running `config` (used by executors and tests).
    pub fn new(job_run_id: impl Into<String>, config: JobConfig) -> Self {
        Self {
            job_run_id: job_run_id.into(),
            attempt: 1,
            build_request_id: String::new(),
            config,
            scratch_dir: None,
        }
    }
}

/// A job made of Rust closures: `config` runs in process at plan time, and
/// `exec` runs in process on the core's in-process executor.
///
/// ```
/// use databuild_core::{FnJob, JobConfig, PartitionRef};
///
/// let job = FnJob::builder("//demo:daily")
///     .pattern(r"daily/date=(?P<date>\d{4}-\d{2}-\d{2})")
///     .config(|outputs: &[PartitionRef]| {
///         Ok(outputs.iter().map(|o| JobConfig::new([o.clone()])).collect())
///     })
///     .exec(|ctx| async move {
///         println!("building {:?}", ctx.config.outputs);
///         Ok(())
///     })
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct FnJob {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
    config: Arc<ConfigFn>,
    validate: Option<Arc<ValidateFn>>,
    exec: InProcessExec,
    hints: Option<Arc<SchedulingHints>>,
}

impl FnJob {
    /// Starts building a job with `label`.
    pub fn builder(label: impl Into<String>) -> FnJobBuilder {
        FnJobBuilder {
            label: label.into(),
            patterns: Vec::new(),
            config: None,
            validate: None,
            exec: None,
            hints: None,
        }
    }
}

impl fmt::Debug for FnJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnJob")
            .field("label", &self.label)
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl DataBuildJob for FnJob {
    fn label(&self) -> &JobLabel {
        &self.label
    }

    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }

    fn validate_args(&self, outputs: &[PartitionRef]) -> Result<(), String> {
        match &self.validate {
            Some(v) => v(outputs),
            None => Ok(()),
        }
    }

    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        let mut configs = (self.config)(outputs).map_err(|e| JobConfigError::Failed {
            job: self.label.clone(),
            reason: e.to_string(),
        })?;
        super::apply_default_hints(&mut configs, self.hints.as_ref());
        Ok(configs)
    }

    fn launch(&self) -> Launch {
        Launch::InProcess(self.exec.clone())
    }
}

/// Builds an [`FnJob`].
#[must_use]
pub struct FnJobBuilder {
    label: String,
    patterns: Vec<String>,
    config: Option<Arc<ConfigFn>>,
    validate: Option<Arc<ValidateFn>>,
    exec: Option<InProcessExec>,
    hints: Option<Arc<SchedulingHints>>,
}

impl fmt::Debug for FnJobBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnJobBuilder")
            .field("label", &self.label)
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

impl FnJobBuilder {
    /// Adds an output pattern (an anchored regex with named captures).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Sets the config function: the configurations producing some outputs.
    pub fn config<F>(mut self, f: F) -> Self
    where
        F: Fn(&[PartitionRef]) -> Result<Vec<JobConfig>, BoxError> + Send + Sync + 'static,
    {
        self.config = Some(Arc::new(f));
        self
    }

    /// Sets an argument validator, run before `config` (job.config's
    /// `validate_args`).
    pub fn validate<F>(mut self, f: F) -> Self
    where
        F: Fn(&[PartitionRef]) -> Result<(), String> + Send + Sync + 'static,
    {
        self.validate = Some(Arc::new(f));
        self
    }

    /// Sets the exec function, run once per job run.
    pub fn exec<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(FnJobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.exec = Some(InProcessExec(Arc::new(move |ctx| Box::pin(f(ctx)))));
        self
    }

    /// Scheduling hints applied to every config that sets none of its own.
    pub fn hints(mut self, hints: impl Into<Arc<SchedulingHints>>) -> Self {
        self.hints = Some(hints.into());
        self
    }

    /// Validates the definition and builds the job. A job without an exec
    /// function gets one that does nothing (useful for planning only).
    pub fn build(self) -> Result<FnJob, JobDefinitionError> {
        let label = JobLabel::new(&self.label)?;
        let patterns = super::compile_patterns(&self.label, &self.patterns)?;
        let config = self.config.ok_or_else(|| JobDefinitionError::Missing {
            job: self.label.clone(),
            what: "config function",
        })?;
        let exec = self
            .exec
            .unwrap_or_else(|| InProcessExec(Arc::new(|_| Box::pin(async { Ok(()) }))));
        Ok(FnJob {
            label,
            patterns,
            config,
            validate: self.validate,
            exec,
            hints: self.hints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> PartitionRef {
        PartitionRef::new(s).unwrap()
    }

    #[tokio::test]
    async fn config_errors_name_the_job() {
        let job = FnJob::builder("//j")
            .pattern("x/.*")
            .config(|_| Err("boom".into()))
            .build()
            .unwrap();
        let err = job.config(&[r("x/1")]).await.unwrap_err();
        assert!(matches!(err, JobConfigError::Failed { .. }));
        assert_eq!(err.to_string(), "job //j: config failed: boom");
    }

    #[tokio::test]
    async fn hints_apply_to_configs_without_their_own() {
        let hints = SchedulingHints {
            slots: 3,
            ..Default::default()
        };
        let job = FnJob::builder("//j")
            .pattern("x/.*")
            .config(|o| Ok(vec![JobConfig::new(o.iter().cloned())]))
            .hints(hints.clone())
            .build()
            .unwrap();
        let configs = job.config(&[r("x/1")]).await.unwrap();
        assert_eq!(*configs[0].hints, hints);
    }

    #[tokio::test]
    async fn exec_runs_the_closure() {
        let job = FnJob::builder("//j")
            .pattern("x/.*")
            .config(|_| Ok(vec![]))
            .exec(|ctx| async move {
                if ctx.config.outputs.is_empty() {
                    Err("no outputs".into())
                } else {
                    Ok(())
                }
            })
            .build()
            .unwrap();
        let Launch::InProcess(exec) = job.launch() else {
            panic!("FnJob launches in process");
        };
        assert!(
            exec.call(FnJobContext::new("r1", JobConfig::new([r("x/1")])))
                .await
                .is_ok()
        );
        let err = exec
            .call(FnJobContext::new("r2", JobConfig::default()))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no outputs");
    }

    #[test]
    fn definition_errors() {
        let err = FnJob::builder("//j")
            .config(|_| Ok(vec![]))
            .build()
            .unwrap_err();
        assert!(matches!(err, JobDefinitionError::NoPatterns { .. }));
        let err = FnJob::builder("//j")
            .pattern("(")
            .config(|_| Ok(vec![]))
            .build()
            .unwrap_err();
        assert!(matches!(err, JobDefinitionError::Pattern { .. }));
        assert!(err.to_string().contains("//j"));
        let err = FnJob::builder("//j").pattern("x").build().unwrap_err();
        assert!(matches!(err, JobDefinitionError::Missing { .. }));
        let err = FnJob::builder("")
            .pattern("x")
            .config(|_| Ok(vec![]))
            .build()
            .unwrap_err();
        assert!(matches!(err, JobDefinitionError::Label(_)));
    }
}
