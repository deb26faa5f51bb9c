//! Plans: the task graphs graph.analyze produces.
//!
//! A [`JobGraph`] holds [`Task`]s (a job label and one [`JobConfig`]) as the
//! nodes of a petgraph graph and partition refs as its edges, from the task
//! that produces a partition to each task that reads it. It keeps a
//! topological order as it grows, so the planner can extend a live plan
//! (missing dependencies found at run time, a second request) without
//! replanning. Plans serialize to the `JobGraph` proto message, so they can be
//! stored as blobs, saved to files and shipped, and render as Mermaid or
//! Graphviz DOT text.

mod order;
mod render;
mod saved;

pub use saved::{SavedPlanError, cut_saved, decode_saved, definitions_digest, encode_saved};

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use foldhash::fast::RandomState;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::job::{JobConfig, JobLabel};
use crate::partition::PartitionRef;
use crate::planner::PlanError;
use crate::proto;
use order::TopoOrder;

/// Identifies a task within one [`JobGraph`].
pub type TaskId = NodeIndex;

/// A node of the plan: one job with one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The job that runs.
    pub job: JobLabel,
    /// What it produces and reads.
    pub config: JobConfig,
    /// SHA-256 (hex) of the job's definition when the plan was made.
    pub definition_digest: Arc<str>,
}

impl Task {
    /// The proto form of the task.
    pub fn to_proto(&self) -> proto::Task {
        proto::Task {
            job: Some(self.job.to_proto()),
            config: Some(self.config.to_proto()),
            job_definition_digest: self.definition_digest.to_string(),
        }
    }
}

/// A partition the plan needs but does not build because another job run is
/// already building it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    /// The partition.
    pub partition: PartitionRef,
    /// The job run building it.
    pub job_run_id: String,
}

/// The plan for a set of requested partitions.
#[derive(Debug, Clone, Default)]
pub struct JobGraph {
    requested: Vec<PartitionRef>,
    /// The tasks, indexed by their node's index.
    tasks: Vec<Task>,
    /// The topology: one node per task, partitions on the edges. Tasks are
    /// kept apart so that walking and growing the topology touches small,
    /// dense nodes.
    graph: DiGraph<(), PartitionRef>,
    /// Every ref the plan knows: produced by a task, awaited by tasks
    /// (while the planner extends the plan), or settled (available, or
    /// built elsewhere). One map, so the planner hashes each ref once per
    /// visit.
    index: HashMap<PartitionRef, Slot, RandomState>,
    order: TopoOrder,
    available: Vec<PartitionRef>,
    in_progress: Vec<InProgress>,
}

/// What the plan knows of a ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A task of the plan produces it.
    Produced(TaskId),
    /// No task yet; the planner will plan one. `first` is the first task
    /// reading it (none when only requested), `more` indexes the planner's
    /// list of further readers (`u32::MAX`: none).
    Waiting { first: Option<TaskId>, more: u32 },
    /// Not planned: available, or built by another job run.
    Settled,
}

/// A cycle found while adding an edge: the tasks of the path that the new
/// edge would close, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CycleFound(pub(crate) Vec<TaskId>);

impl JobGraph {
    /// An empty plan for `requested`.
    pub fn new(requested: impl IntoIterator<Item = PartitionRef>) -> Self {
        Self {
            requested: requested.into_iter().collect(),
            ..Self::default()
        }
    }

    /// The partitions the plan was made for.
    pub fn requested(&self) -> &[PartitionRef] {
        &self.requested
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when the plan has no task (everything was available).
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Number of edges (partition hand-overs between tasks).
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// The task with `id`.
    pub fn task(&self, id: TaskId) -> &Task {
        &self.tasks[id.index()]
    }

    /// All tasks, in the order they were planned.
    pub fn tasks(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (TaskId::new(i), t))
    }

    /// All tasks, producers before consumers.
    pub fn topological_order(&self) -> Vec<TaskId> {
        self.order.sorted()
    }

    /// The task that produces `partition`, if the plan builds it.
    pub fn producer(&self, partition: &PartitionRef) -> Option<TaskId> {
        match self.index.get(partition) {
            Some(Slot::Produced(id)) => Some(*id),
            _ => None,
        }
    }

    /// The planned producers of a task's inputs, with the partition each
    /// hands over.
    pub fn upstream(&self, id: TaskId) -> impl Iterator<Item = (TaskId, &PartitionRef)> {
        self.graph
            .edges_directed(id, Direction::Incoming)
            .map(|e| (e.source(), e.weight()))
    }

    /// The planned consumers of a task's outputs, with the partition each
    /// reads.
    pub fn downstream(&self, id: TaskId) -> impl Iterator<Item = (TaskId, &PartitionRef)> {
        self.graph
            .edges_directed(id, Direction::Outgoing)
            .map(|e| (e.target(), e.weight()))
    }

    /// Inputs that were already available when planned.
    pub fn available(&self) -> &[PartitionRef] {
        &self.available
    }

    /// Inputs another job run was already building when planned.
    pub fn in_progress(&self) -> &[InProgress] {
        &self.in_progress
    }

    /// The plan's topology as a petgraph graph: one node per task (its
    /// index is the [`TaskId`]; see [`task`](Self::task)), one edge per
    /// partition handed from a producer to a consumer.
    pub fn graph(&self) -> &DiGraph<(), PartitionRef> {
        &self.graph
    }

    /// A task, to change (the planner adds inputs found at run time).
    pub(crate) fn task_mut(&mut self, id: TaskId) -> &mut Task {
        &mut self.tasks[id.index()]
    }

    pub(crate) fn add_requested(&mut self, partition: PartitionRef) {
        self.requested.push(partition);
    }

    /// Records an input that is available (the caller marks it settled).
    pub(crate) fn add_available(&mut self, partition: PartitionRef) {
        self.available.push(partition);
    }

    /// Records an input built elsewhere (the caller marks it settled).
    pub(crate) fn add_in_progress(&mut self, partition: PartitionRef, job_run_id: String) {
        self.in_progress.push(InProgress {
            partition,
            job_run_id,
        });
    }

    /// Adds a task without registering its outputs (the planner does that
    /// through [`index_mut`](Self::index_mut)).
    pub(crate) fn push_task(&mut self, task: Task) -> TaskId {
        let id = self.graph.add_node(());
        self.tasks.push(task);
        self.order.push_node();
        id
    }

    /// Adds a task and registers it as the producer of its outputs. Returns
    /// an output another task already produces, if any.
    fn add_task(&mut self, task: Task) -> (TaskId, Option<PartitionRef>) {
        let id = self.push_task(task);
        for o in &self.tasks[id.index()].config.outputs {
            match self.index.entry(o.clone()) {
                Entry::Occupied(e) if matches!(e.get(), Slot::Produced(_)) => {
                    return (id, Some(o.clone()));
                }
                Entry::Occupied(mut e) => *e.get_mut() = Slot::Produced(id),
                Entry::Vacant(v) => {
                    v.insert(Slot::Produced(id));
                }
            }
        }
        (id, None)
    }

    /// The ref index, for the planner.
    pub(crate) fn index_mut(&mut self) -> &mut HashMap<PartitionRef, Slot, RandomState> {
        &mut self.index
    }

    /// Makes room for `tasks` more tasks producing `outputs` partitions.
    pub(crate) fn reserve(&mut self, tasks: usize, outputs: usize) {
        self.graph.reserve_nodes(tasks);
        self.tasks.reserve(tasks);
        self.graph.reserve_edges(outputs);
        self.index.reserve(outputs);
    }

    /// Adds the edge `from -> to` carrying `partition`, unless it would close
    /// a cycle.
    pub(crate) fn connect(
        &mut self,
        from: TaskId,
        to: TaskId,
        partition: PartitionRef,
    ) -> Result<(), CycleFound> {
        self.order
            .insert_edge(&self.graph, from, to)
            .map_err(CycleFound)?;
        self.graph.add_edge(from, to, partition);
        Ok(())
    }

    /// The partition an edge `from -> to` carries, if there is one.
    pub(crate) fn edge_partition(&self, from: TaskId, to: TaskId) -> Option<&PartitionRef> {
        self.graph.find_edge(from, to).map(|e| &self.graph[e])
    }

    /// The proto form of the plan: tasks in topological order, edges as
    /// indexes into that order.
    pub fn to_proto(&self) -> proto::JobGraph {
        let order = self.topological_order();
        let mut position = vec![0u32; order.len()];
        for (pos, id) in order.iter().enumerate() {
            position[id.index()] = u32::try_from(pos).unwrap_or(u32::MAX);
        }
        proto::JobGraph {
            requested: self.requested.iter().map(PartitionRef::to_proto).collect(),
            tasks: order.iter().map(|id| self.task(*id).to_proto()).collect(),
            edges: self
                .graph
                .edge_references()
                .map(|e| proto::JobGraphEdge {
                    from: position[e.source().index()],
                    to: position[e.target().index()],
                    partition: Some(e.weight().to_proto()),
                })
                .collect(),
            available: self.available.iter().map(PartitionRef::to_proto).collect(),
        }
    }

    /// The binary proto encoding of the plan.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// SHA-256 (hex) of [`encode`](Self::encode): the plan's address as a blob.
    pub fn digest(&self) -> String {
        crate::job::launch_hex(&Sha256::digest(self.encode()))
    }

    /// Validates a proto plan: refs, labels, edge indexes, and acyclicity.
    pub fn from_proto(p: &proto::JobGraph) -> Result<Self, PlanError> {
        let invalid = |reason: String| PlanError::InvalidPlan { reason };
        let refs = |list: &[proto::PartitionRef]| -> Result<Vec<PartitionRef>, PlanError> {
            list.iter()
                .map(|r| PartitionRef::try_from(r).map_err(|e| invalid(e.to_string())))
                .collect()
        };
        let mut plan = JobGraph::new(refs(&p.requested)?);
        plan.available = refs(&p.available)?;
        let mut ids = Vec::with_capacity(p.tasks.len());
        for (i, t) in p.tasks.iter().enumerate() {
            let job = t
                .job
                .as_ref()
                .ok_or_else(|| invalid(format!("task {i} has no job")))?;
            let job = JobLabel::new(&job.label).map_err(|e| invalid(format!("task {i}: {e}")))?;
            let config = t
                .config
                .as_ref()
                .ok_or_else(|| invalid(format!("task {i} has no config")))?;
            let config =
                JobConfig::from_proto(config).map_err(|e| invalid(format!("task {i}: {e}")))?;
            let (id, clash) = plan.add_task(Task {
                job,
                config,
                definition_digest: Arc::from(t.job_definition_digest.as_str()),
            });
            if let Some(c) = clash {
                return Err(invalid(format!("partition {c} is produced by two tasks")));
            }
            ids.push(id);
        }
        // Tasks come producers first: rank them so, and edges that respect
        // the order are free to add.
        plan.order.reverse_ranks();
        for e in &p.edges {
            let get = |i: u32| {
                ids.get(i as usize).copied().ok_or_else(|| {
                    invalid(format!("edge names task {i}, the plan has {}", ids.len()))
                })
            };
            let (from, to) = (get(e.from)?, get(e.to)?);
            let partition = e
                .partition
                .as_ref()
                .ok_or_else(|| invalid("edge without partition".to_owned()))?;
            let partition =
                PartitionRef::try_from(partition).map_err(|e| invalid(e.to_string()))?;
            plan.connect(from, to, partition)
                .map_err(|_| invalid(format!("edge {} -> {} closes a cycle", e.from, e.to)))?;
        }
        Ok(plan)
    }

    /// The plan without the tasks whose outputs are all `available` (a
    /// saved plan run again later: what was built since is not rebuilt).
    /// Their outputs join [`available`](Self::available); edges from them
    /// go, since what they carried exists.
    pub fn without_available(
        &self,
        available: impl Fn(&PartitionRef) -> bool,
    ) -> Result<JobGraph, PlanError> {
        let mut p = self.to_proto();
        let keep: Vec<bool> = p
            .tasks
            .iter()
            .map(|t| {
                !t.config.as_ref().is_some_and(|c| {
                    c.outputs
                        .iter()
                        .all(|o| PartitionRef::try_from(o).is_ok_and(|o| available(&o)))
                })
            })
            .collect();
        let mut position = Vec::with_capacity(keep.len());
        let mut next = 0u32;
        for k in &keep {
            position.push(next);
            if *k {
                next += 1;
            }
        }
        let mut tasks = Vec::new();
        for (t, k) in std::mem::take(&mut p.tasks).into_iter().zip(&keep) {
            if *k {
                tasks.push(t);
            } else if let Some(c) = t.config {
                p.available.extend(c.outputs);
            }
        }
        p.tasks = tasks;
        p.edges = std::mem::take(&mut p.edges)
            .into_iter()
            .filter(|e| keep[e.from as usize] && keep[e.to as usize])
            .map(|mut e| {
                e.from = position[e.from as usize];
                e.to = position[e.to as usize];
                e
            })
            .collect();
        JobGraph::from_proto(&p)
    }

    /// Decodes a plan from its binary proto encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, PlanError> {
        let p = proto::JobGraph::decode(bytes).map_err(|e| PlanError::InvalidPlan {
            reason: format!("not a JobGraph message: {e}"),
        })?;
        Self::from_proto(&p)
    }
}
