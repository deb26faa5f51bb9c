//! Graphs: the unit of composition.
//!
//! A [`Graph`] registers jobs and maps every partition ref to exactly one of
//! them ([`Graph::lookup`]). A ref that two jobs' patterns both match is an
//! error naming both jobs (seed 001: "graphs automatically detect and raise
//! on non-unique job → partition mappings"); since patterns are regular
//! expressions, overlap is checked per ref, when a ref is looked up.
//!
//! [`DataBuildGraph`] is the seeds' graph interface: `analyze` (plan) now,
//! `build`, which the orchestrator implements.

mod error;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use regex::RegexSet;

pub use error::{GraphError, LookupError};

use crate::job::{DataBuildJob, JobLabel};
use crate::orchestrator::{BuildError, BuildOutcome};
use crate::partition::{PartitionPattern, PartitionRef, quote};
use crate::plan::JobGraph;
use crate::planner::PlanError;

/// The seeds' graph operations.
///
/// The trait is object-safe. [`Planner`](crate::Planner) implements
/// `analyze` only; [`Orchestrator`](crate::Orchestrator) implements both.
#[async_trait]
pub trait DataBuildGraph: Send + Sync + fmt::Debug {
    /// graph.analyze: the plan that materializes `outputs`.
    async fn analyze(&self, outputs: &[PartitionRef]) -> Result<JobGraph, PlanError>;

    /// graph.build: analyze, then run the plan. The default is
    /// [`BuildError::Unsupported`] (a planner plans; it does not run).
    async fn build(&self, outputs: &[PartitionRef]) -> Result<BuildOutcome, BuildError> {
        let _ = outputs;
        Err(BuildError::Unsupported {
            operation: "build",
            by: "this graph (only an Orchestrator runs builds)",
        })
    }
}

/// A set of jobs with unique labels, and the lookup from partition refs to
/// the job that produces them.
///
/// ```
/// use databuild_core::{FnJob, Graph, JobConfig, PartitionRef};
///
/// let job = FnJob::builder("//raw")
///     .pattern(r"raw/date=(?P<date>[-0-9]+)")
///     .config(|outs: &[PartitionRef]| Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect()))
///     .build()?;
/// let graph = Graph::builder().job(job).build()?;
/// let r = PartitionRef::new("raw/date=2024-01-01")?;
/// assert_eq!(graph.lookup(&r)?.label().as_str(), "//raw");
/// assert!(graph.lookup(&PartitionRef::new("other")?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Graph {
    jobs: Vec<Arc<dyn DataBuildJob>>,
    by_label: HashMap<JobLabel, usize>,
    /// All jobs' patterns in one automaton: one pass per lookup.
    set: RegexSet,
    /// For each pattern of `set`, the index of its job.
    pattern_job: Vec<usize>,
}

impl Graph {
    /// Starts a graph.
    pub fn builder() -> GraphBuilder {
        GraphBuilder { jobs: Vec::new() }
    }

    /// The job that produces `partition`: exactly one, or an error naming the
    /// ref and the candidate patterns (none matched) or jobs (several did).
    pub fn lookup(&self, partition: &PartitionRef) -> Result<&Arc<dyn DataBuildJob>, LookupError> {
        self.lookup_index(partition).map(|i| &self.jobs[i])
    }

    /// Like [`lookup`](Self::lookup), returning the job's index in
    /// [`jobs`](Self::jobs).
    pub fn lookup_index(&self, partition: &PartitionRef) -> Result<usize, LookupError> {
        let matches = self.set.matches(partition.as_str());
        let mut found: Option<usize> = None;
        for pattern in matches.iter() {
            let job = self.pattern_job[pattern];
            match found {
                None => found = Some(job),
                Some(j) if j == job => {}
                Some(_) => return Err(self.ambiguous(partition, matches.iter())),
            }
        }
        found.ok_or_else(|| self.unmatched(partition))
    }

    fn ambiguous(
        &self,
        partition: &PartitionRef,
        patterns: impl Iterator<Item = usize>,
    ) -> LookupError {
        let mut jobs: Vec<JobLabel> = patterns
            .map(|p| self.jobs[self.pattern_job[p]].label().clone())
            .collect();
        jobs.sort();
        jobs.dedup();
        LookupError::Ambiguous {
            partition: partition.clone(),
            jobs,
        }
    }

    fn unmatched(&self, partition: &PartitionRef) -> LookupError {
        const SHOWN: usize = 5;
        let mut patterns: Vec<(usize, String)> = self
            .jobs
            .iter()
            .flat_map(|j| j.patterns())
            .map(|p| {
                (
                    common_prefix(p.as_str(), partition.as_str()),
                    p.as_str().to_owned(),
                )
            })
            .collect();
        patterns.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let total = patterns.len();
        LookupError::NoJob {
            partition: partition.clone(),
            closest: patterns.into_iter().take(SHOWN).map(|(_, p)| p).collect(),
            total_patterns: total,
        }
    }

    /// The jobs, in registration order.
    pub fn jobs(&self) -> &[Arc<dyn DataBuildJob>] {
        &self.jobs
    }

    /// SHA-256 (hex) of the definition of the job labelled `label`
    /// (entrypoint, image, environment), as plans record it per task: a
    /// saved plan whose tasks name other digests was made for other job
    /// definitions.
    pub fn definition_digest(&self, label: &str) -> Option<String> {
        let job = self.job(label)?;
        Some(job.definition_digest())
    }

    /// The job with `label`.
    pub fn job(&self, label: &str) -> Option<&Arc<dyn DataBuildJob>> {
        let label = JobLabel::new(label).ok()?;
        self.by_label.get(&label).map(|&i| &self.jobs[i])
    }
}

/// Length of the common prefix of a pattern and a ref, as a rough measure of
/// which patterns a user probably meant.
fn common_prefix(pattern: &str, partition: &str) -> usize {
    pattern
        .chars()
        .zip(partition.chars())
        .take_while(|(a, b)| a == b)
        .count()
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field(
                "jobs",
                &self
                    .jobs
                    .iter()
                    .map(|j| j.label().as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Builds a [`Graph`], validating labels and patterns.
#[must_use]
pub struct GraphBuilder {
    jobs: Vec<Arc<dyn DataBuildJob>>,
}

impl fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl GraphBuilder {
    /// Registers a job.
    pub fn job(self, job: impl DataBuildJob + 'static) -> Self {
        self.job_arc(Arc::new(job))
    }

    /// Registers a shared job.
    pub fn job_arc(mut self, job: Arc<dyn DataBuildJob>) -> Self {
        self.jobs.push(job);
        self
    }

    /// Validates the jobs (unique labels, at least one pattern each) and
    /// builds the graph.
    pub fn build(self) -> Result<Graph, GraphError> {
        let mut by_label = HashMap::with_capacity(self.jobs.len());
        let mut anchored = Vec::new();
        let mut pattern_job = Vec::new();
        for (i, job) in self.jobs.iter().enumerate() {
            if by_label.insert(job.label().clone(), i).is_some() {
                return Err(GraphError::DuplicateLabel {
                    label: job.label().clone(),
                });
            }
            if job.patterns().is_empty() {
                return Err(GraphError::NoPatterns {
                    job: job.label().clone(),
                });
            }
            for p in job.patterns() {
                anchored.push(PartitionPattern::anchored(p.as_str()));
                pattern_job.push(i);
            }
        }
        let set = RegexSet::new(&anchored).map_err(|e| GraphError::Patterns {
            reason: quote(&e.to_string(), 400),
        })?;
        Ok(Graph {
            jobs: self.jobs,
            by_label,
            set,
            pattern_job,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{FnJob, JobConfig};

    fn job(label: &str, patterns: &[&str]) -> FnJob {
        let mut b = FnJob::builder(label);
        for p in patterns {
            b = b.pattern(*p);
        }
        b.config(|o| Ok(o.iter().map(|r| JobConfig::new([r.clone()])).collect()))
            .build()
            .unwrap()
    }

    fn r(s: &str) -> PartitionRef {
        PartitionRef::new(s).unwrap()
    }

    #[test]
    fn lookup_finds_the_one_job() {
        let g = Graph::builder()
            .job(job("//a", &["a/.*"]))
            .job(job("//b", &["b/(?P<d>\\d+)", "bb/.*"]))
            .build()
            .unwrap();
        assert_eq!(g.lookup(&r("a/x")).unwrap().label().as_str(), "//a");
        assert_eq!(g.lookup(&r("b/1")).unwrap().label().as_str(), "//b");
        assert_eq!(g.lookup(&r("bb/1")).unwrap().label().as_str(), "//b");
        assert_eq!(g.lookup_index(&r("bb/1")).unwrap(), 1);
        assert!(g.job("//b").is_some());
        assert!(g.job("//c").is_none());
    }

    #[test]
    fn two_patterns_of_one_job_matching_is_not_ambiguous() {
        let g = Graph::builder()
            .job(job("//a", &["a/.*", "a/1"]))
            .build()
            .unwrap();
        assert!(g.lookup(&r("a/1")).is_ok());
    }

    #[test]
    fn ambiguous_ref_names_both_jobs() {
        let g = Graph::builder()
            .job(job("//one", &["x/.*"]))
            .job(job("//two", &["x/[0-9]+"]))
            .build()
            .unwrap();
        assert!(g.lookup(&r("x/a")).is_ok());
        let err = g.lookup(&r("x/1")).unwrap_err();
        match &err {
            LookupError::Ambiguous { partition, jobs } => {
                assert_eq!(partition.as_str(), "x/1");
                assert_eq!(
                    jobs.iter().map(JobLabel::as_str).collect::<Vec<_>>(),
                    ["//one", "//two"]
                );
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("//one") && msg.contains("//two") && msg.contains("x/1"),
            "{msg}"
        );
    }

    #[test]
    fn unmatched_ref_names_the_ref_and_closest_patterns() {
        let g = Graph::builder()
            .job(job("//a", &["reviews/date=.*"]))
            .job(job("//b", &["clicks/.*"]))
            .build()
            .unwrap();
        let err = g.lookup(&r("reviews/day=1")).unwrap_err();
        match &err {
            LookupError::NoJob {
                partition,
                closest,
                total_patterns,
            } => {
                assert_eq!(partition.as_str(), "reviews/day=1");
                assert_eq!(closest[0], "reviews/date=.*");
                assert_eq!(*total_patterns, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("reviews/day=1"));
        assert!(err.to_string().contains("reviews/date=.*"));
    }

    #[test]
    fn duplicate_labels_are_rejected() {
        let err = Graph::builder()
            .job(job("//a", &["a"]))
            .job(job("//a", &["b"]))
            .build()
            .unwrap_err();
        assert!(matches!(err, GraphError::DuplicateLabel { .. }));
        assert!(err.to_string().contains("//a"));
    }
}
