//! [`SubgraphJob`]: part of another graph, run by a node agent as one task.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    DataBuildJob, JobConfig, JobConfigError, JobDefinitionError, JobLabel, Launch, SchedulingHints,
    SubgraphLaunch,
};
use crate::graph::Graph;
use crate::partition::{PartitionPattern, PartitionRef};
use crate::planner::{Availability, PartitionStatusView, Planner};

/// Groups the partitions asked of a [`SubgraphJob`]: one agent run per group.
pub type GroupKey = Arc<dyn Fn(&PartitionRef) -> String + Send + Sync>;

/// Runs part of another graph (the *subgraph*: some or all of its jobs) as
/// one task per group of asked partitions, each by a node agent that plans
/// nothing and pays no round trip per task (seed 003).
///
/// Its `config` groups the asked partitions (by [`group_by`](SubgraphJobBuilder::group_by),
/// all in one group by default) and plans each group with the subgraph's
/// jobs, on this host: the subplan holds every task of the subgraph's jobs
/// the group needs, and every partition those tasks read that no job of
/// the subgraph makes becomes an input of the task, which this graph must
/// provide. The subplan travels in the task's config (a saved plan, see
/// [`SubgraphLaunch`]), so the plan the orchestrator records is exactly
/// what the agent runs. A backend that can launch agents (the Docker
/// executor) runs it; the agent's events come back tagged with their
/// origin.
///
/// Partitions the agent builds on the way (intermediate ones nobody asked
/// of this job) are recorded in the log as relayed events, not in this
/// graph's catalog: asked for later, they are planned again.
pub struct SubgraphJob {
    label: JobLabel,
    inner: Arc<Graph>,
    patterns: Vec<PartitionPattern>,
    group: GroupKey,
    launch: SubgraphLaunch,
    hints: Option<Arc<SchedulingHints>>,
}

impl fmt::Debug for SubgraphJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubgraphJob")
            .field("label", &self.label)
            .field("patterns", &self.patterns)
            .field("launch", &self.launch)
            .finish_non_exhaustive()
    }
}

impl SubgraphJob {
    /// A subgraph job labelled `label`, over the jobs of `inner` (all of
    /// them unless [`jobs`](SubgraphJobBuilder::jobs) names some).
    pub fn builder(label: &str, inner: Graph) -> SubgraphJobBuilder {
        SubgraphJobBuilder {
            label: label.to_owned(),
            inner,
            jobs: None,
            group: None,
            launch: SubgraphLaunch {
                agent: vec!["databuild".into(), "agent".into()],
                image: None,
                env: BTreeMap::new(),
                graph_file: None,
                definitions: String::new(),
            },
            hints: None,
        }
    }

    /// The subgraph the agents run.
    pub fn inner(&self) -> &Graph {
        &self.inner
    }
}

/// Builds a [`SubgraphJob`].
pub struct SubgraphJobBuilder {
    label: String,
    inner: Graph,
    jobs: Option<Vec<String>>,
    group: Option<GroupKey>,
    launch: SubgraphLaunch,
    hints: Option<SchedulingHints>,
}

impl fmt::Debug for SubgraphJobBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubgraphJobBuilder")
            .field("label", &self.label)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl SubgraphJobBuilder {
    /// Runs only these jobs of the inner graph; partitions of its other
    /// jobs are inputs the outer graph provides.
    #[must_use]
    pub fn jobs<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.jobs = Some(labels.into_iter().map(Into::into).collect());
        self
    }

    /// One agent run per value of `key` over the asked partitions (a date,
    /// say); without it, one run takes everything asked at once.
    #[must_use]
    pub fn group_by(
        mut self,
        key: impl Fn(&PartitionRef) -> String + Send + Sync + 'static,
    ) -> Self {
        self.group = Some(Arc::new(key));
        self
    }

    /// The image the agent and the subplan's tasks run in.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.launch.image = Some(image.into());
        self
    }

    /// The agent's argv (default `["databuild", "agent"]`).
    #[must_use]
    pub fn agent<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.launch.agent = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The graph file on this host the inner graph was read from, given to
    /// each agent. Without it the image must hold it at the agent's default
    /// path.
    #[must_use]
    pub fn graph_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.launch.graph_file = Some(path.into());
        self
    }

    /// An environment variable of the agent (its `DATABUILD_*` settings:
    /// `DATABUILD_KEEPALIVE_INTERVAL`, `DATABUILD_PARALLELISM`, ...).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.launch.env.insert(key.into(), value.into());
        self
    }

    /// Hints of every agent run (retries, pool, timeout, labels).
    #[must_use]
    pub fn hints(mut self, hints: SchedulingHints) -> Self {
        self.hints = Some(hints);
        self
    }

    /// The job, or what is wrong with its definition.
    pub fn build(self) -> Result<SubgraphJob, JobDefinitionError> {
        let label = JobLabel::new(&self.label)?;
        let mut patterns = Vec::new();
        match &self.jobs {
            None => {
                for j in self.inner.jobs() {
                    patterns.extend(j.patterns().iter().cloned());
                }
            }
            Some(labels) => {
                for l in labels {
                    let job = self
                        .inner
                        .job(l)
                        .ok_or_else(|| JobDefinitionError::Invalid {
                            job: self.label.clone(),
                            reason: format!("the subgraph has no job {l}"),
                        })?;
                    patterns.extend(job.patterns().iter().cloned());
                }
            }
        }
        if patterns.is_empty() {
            return Err(JobDefinitionError::NoPatterns { job: self.label });
        }
        if self.launch.agent.is_empty() {
            return Err(JobDefinitionError::Invalid {
                job: self.label,
                reason: "the agent's argv is empty".into(),
            });
        }
        let mut launch = self.launch;
        launch.definitions = crate::plan::definitions_digest(&self.inner);
        Ok(SubgraphJob {
            label,
            inner: Arc::new(self.inner),
            patterns,
            group: self.group.unwrap_or_else(|| Arc::new(|_| String::new())),
            launch,
            hints: self.hints.map(Arc::new),
        })
    }
}

/// What the subgraph does not make counts as there: the planner stops at
/// it, and it becomes an input of the agent's task.
#[derive(Debug)]
struct Outside(Vec<PartitionPattern>);

impl Availability for Outside {
    fn status(&self, partition: &PartitionRef) -> PartitionStatusView {
        if self.0.iter().any(|p| p.is_match(partition)) {
            PartitionStatusView::Missing
        } else {
            PartitionStatusView::Available
        }
    }
}

#[async_trait]
impl DataBuildJob for SubgraphJob {
    fn label(&self) -> &JobLabel {
        &self.label
    }

    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }

    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        use base64::Engine as _;
        let mut groups: BTreeMap<String, Vec<PartitionRef>> = BTreeMap::new();
        for o in outputs {
            groups.entry((self.group)(o)).or_default().push(o.clone());
        }
        let planner = Planner::new(Arc::clone(&self.inner))
            .with_availability(Arc::new(Outside(self.patterns.clone())));
        let mut configs = Vec::with_capacity(groups.len());
        for (key, refs) in groups {
            let plan = planner
                .analyze(&refs)
                .await
                .map_err(|e| JobConfigError::Failed {
                    job: self.label.clone(),
                    reason: format!("planning the subgraph for group {key:?}: {e}"),
                })?;
            let inputs: BTreeSet<&PartitionRef> = plan.available().iter().collect();
            let saved = crate::plan::encode_saved(&self.inner, &plan);
            let mut config =
                JobConfig::new(refs).arg(base64::engine::general_purpose::STANDARD.encode(saved));
            for i in inputs {
                config = config.materialize(i.clone());
            }
            if let Some(h) = &self.hints {
                config = config.hints(Arc::clone(h));
            }
            configs.push(config);
        }
        Ok(configs)
    }

    fn launch(&self) -> Launch {
        Launch::Subgraph(self.launch.clone())
    }
}
