//! The planner: graph.analyze (seed 001).
//!
//! Starting from the requested partitions, the planner drops what is already
//! available, groups the rest by producing job, calls each job's `config`
//! once per wave with all of its refs (concurrently across jobs, bounded),
//! adds the returned configs as tasks, and pushes every `MATERIALIZE` input
//! that is neither available nor planned into the next wave, until nothing is
//! missing. `QUERY` inputs never expand the plan and add no edge. Each new
//! edge is checked for a cycle as it is added (an incremental topological
//! order), so a cycle is reported in the wave that closes it, naming its
//! partitions and jobs.
//!
//! Every transition of the graph.analyze and job.config diagrams is a BEL
//! event when the planner has a sink: one batch per wave, with a wave's
//! config events in job-label order so a log is reproducible.
//!
//! | diagram node | event |
//! |---|---|
//! | begin, initialize_missing_partitions | `AnalyzeStarted` |
//! | dispatch_missing_partitions ok / fail | `PartitionsDispatched` / `PartitionDispatchFailed` |
//! | validate_args ok / fail | `JobConfigArgsValidated` / `JobConfigArgsInvalid` |
//! | run_config ok / fail | `JobConfigSucceeded` / `JobConfigRunFailed` |
//! | emit_job_config_fail | `JobConfigFailed` |
//! | emit_cycle_detected | `CycleDetected` |
//! | emit_job_graph / emit_graph_analyze_fail | `JobGraphEmitted` / `AnalyzeFailed` |
//!
//! `validate_config` (the configs cover exactly the refs asked of the job,
//! each once) is part of `run_config`: a config that covers refs nobody asked
//! for, or misses some, fails the job's config like an error of its own.

mod availability;
mod error;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use foldhash::fast::RandomState;
use futures::StreamExt;

pub use availability::{Availability, NothingAvailable, PartitionStatusView};
pub use error::PlanError;

use crate::bel::{BelSink, BuildEvent, Event};
use crate::clock::{Clock, IdGenerator, SystemClock, UuidV7Ids};
use crate::graph::{DataBuildGraph, Graph, LookupError};
use crate::job::{DataBuildJob, DataDep, DepType, JobConfig, JobConfigError, JobLabel};
use crate::partition::PartitionRef;
use crate::plan::{CycleFound, JobGraph, Slot, Task, TaskId};

/// No further readers (see [`Slot::Waiting`]).
const NO_MORE: u32 = u32::MAX;
use crate::proto;

/// One analysis: which partitions, for which build request, with which
/// options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AnalyzeRequest {
    /// The build request the events belong to.
    pub build_request_id: String,
    /// The partitions asked for.
    pub requested: Vec<PartitionRef>,
    /// Plan the requested partitions even when they are available.
    pub force: bool,
}

impl AnalyzeRequest {
    /// A request for `requested` with a new build request id (UUID v7).
    pub fn new(requested: impl IntoIterator<Item = PartitionRef>) -> Self {
        Self {
            build_request_id: uuid::Uuid::now_v7().to_string(),
            requested: requested.into_iter().collect(),
            force: false,
        }
    }

    /// Sets the build request id.
    #[must_use]
    pub fn with_build_request_id(mut self, id: impl Into<String>) -> Self {
        self.build_request_id = id.into();
        self
    }

    /// Plans the requested partitions even when they are available.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// graph.analyze: turns requested partitions into a [`JobGraph`].
///
/// ```
/// use databuild_core::{FnJob, Graph, JobConfig, PartitionRef, Planner};
///
/// let raw = FnJob::builder("//raw")
///     .pattern(r"raw/(?P<d>\d+)")
///     .config(|outs: &[PartitionRef]| Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect()))
///     .build()?;
/// let daily = FnJob::builder("//daily")
///     .pattern(r"daily/(?P<d>\d+)")
///     .config(|outs: &[PartitionRef]| {
///         outs.iter()
///             .map(|o| {
///                 let day = &o.as_str()["daily/".len()..];
///                 Ok(JobConfig::new([o.clone()]).materialize(PartitionRef::new(format!("raw/{day}"))?))
///             })
///             .collect()
///     })
///     .build()?;
/// let planner = Planner::new(Graph::builder().job(raw).job(daily).build()?);
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let plan = planner.analyze(&[PartitionRef::new("daily/3")?]).await?;
/// assert_eq!(plan.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Planner {
    graph: Arc<Graph>,
    availability: Arc<dyn Availability>,
    bel: Option<Arc<dyn BelSink>>,
    config_concurrency: usize,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl Planner {
    /// Default number of `config` calls in flight at once.
    pub const DEFAULT_CONFIG_CONCURRENCY: usize = 8;

    /// A planner over `graph`, with nothing available and no event log.
    pub fn new(graph: impl Into<Arc<Graph>>) -> Self {
        Self {
            graph: graph.into(),
            availability: Arc::new(NothingAvailable),
            bel: None,
            config_concurrency: Self::DEFAULT_CONFIG_CONCURRENCY,
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
        }
    }

    /// Stamps events with `clock` (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Makes build request ids for [`analyze`](Self::analyze) with `ids`
    /// (default: UUID v7).
    #[must_use]
    pub fn with_ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = ids;
        self
    }

    /// Uses `availability` to skip partitions that exist.
    #[must_use]
    pub fn with_availability(mut self, availability: Arc<dyn Availability>) -> Self {
        self.availability = availability;
        self
    }

    /// Records every transition in `bel`.
    #[must_use]
    pub fn with_bel(mut self, bel: Arc<dyn BelSink>) -> Self {
        self.bel = Some(bel);
        self
    }

    /// Bounds the `config` calls in flight at once (at least 1).
    #[must_use]
    pub fn with_config_concurrency(mut self, n: usize) -> Self {
        self.config_concurrency = n.max(1);
        self
    }

    /// The graph planned over.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Plans `requested` under a new build request id.
    pub async fn analyze(&self, requested: &[PartitionRef]) -> Result<JobGraph, PlanError> {
        let request = AnalyzeRequest::new(requested.iter().cloned())
            .with_build_request_id(self.ids.next_id());
        self.analyze_request(&request).await
    }

    /// Plans one request.
    pub async fn analyze_request(&self, request: &AnalyzeRequest) -> Result<JobGraph, PlanError> {
        let mut plan = JobGraph::new([]);
        self.extend(&mut plan, request).await?;
        Ok(plan)
    }

    /// Extends a live plan with the partitions of `request` and everything
    /// they need, without replanning what it holds: partitions the plan
    /// already produces are reused. Returns the new tasks.
    ///
    /// On error the plan may hold tasks of the failed extension; callers that
    /// keep using the plan should extend a clone.
    pub async fn extend(
        &self,
        plan: &mut JobGraph,
        request: &AnalyzeRequest,
    ) -> Result<Vec<TaskId>, PlanError> {
        let mut run = Expansion::new(self, request);
        let result = run.run(plan).await;
        run.finish(plan, result).await
    }

    /// Adds `inputs` as `MATERIALIZE` inputs of an existing task of a live
    /// plan (a job that reported missing dependencies at run time) and plans
    /// whatever they need, under `request`'s build request id. Returns the
    /// new tasks. An input the task's own chain produces is a
    /// [`PlanError::Cycle`]; one no job produces is an unmatched-ref error.
    ///
    /// As with [`extend`](Self::extend), on error the plan may hold part of
    /// the extension.
    pub async fn add_inputs(
        &self,
        plan: &mut JobGraph,
        task: TaskId,
        inputs: &[PartitionRef],
        request: &AnalyzeRequest,
    ) -> Result<Vec<TaskId>, PlanError> {
        let mut run = Expansion::new(self, request);
        let result = run.run_inputs(plan, task, inputs).await;
        run.finish(plan, result).await
    }
}

#[async_trait]
impl DataBuildGraph for Planner {
    async fn analyze(&self, outputs: &[PartitionRef]) -> Result<JobGraph, PlanError> {
        Planner::analyze(self, outputs).await
    }
}

/// The state of one `extend` call.
struct Expansion<'a> {
    planner: &'a Planner,
    request: &'a AnalyzeRequest,
    /// Events of the current step, when there is a sink.
    events: Option<Vec<BuildEvent>>,
    /// Further readers of awaited refs (see [`Slot::Waiting`]).
    more_readers: Vec<Vec<TaskId>>,
    new_tasks: Vec<TaskId>,
    /// Definition digest per job index, computed once.
    digests: HashMap<usize, Arc<str>, RandomState>,
}

/// The outcome of one job's part of a wave.
struct Dispatch {
    job: usize,
    refs: Vec<PartitionRef>,
    result: Result<Vec<JobConfig>, JobConfigError>,
}

impl<'a> Expansion<'a> {
    fn new(planner: &'a Planner, request: &'a AnalyzeRequest) -> Self {
        Self {
            planner,
            request,
            events: planner.bel.as_ref().map(|_| Vec::new()),
            more_readers: Vec::new(),
            new_tasks: Vec::new(),
            digests: HashMap::default(),
        }
    }

    /// Ends an expansion: `JobGraphEmitted` (with the plan stored as a
    /// blob) or `AnalyzeFailed`, flushed.
    async fn finish(
        mut self,
        plan: &JobGraph,
        result: Result<(), PlanError>,
    ) -> Result<Vec<TaskId>, PlanError> {
        match result {
            Ok(()) => {
                if self.events.is_some() {
                    let digest = match &self.planner.bel {
                        Some(bel) => bel.put_blob(plan.encode()).await?.to_string(),
                        None => String::new(),
                    };
                    self.push(Event::JobGraphEmitted(proto::JobGraphEmitted {
                        plan_digest: digest,
                        tasks: plan.len() as u64,
                        edges: plan.edge_count() as u64,
                    }));
                }
                self.flush().await?;
                Ok(self.new_tasks)
            }
            Err(e) => {
                self.push(Event::AnalyzeFailed(proto::AnalyzeFailed {
                    reason: e.to_string(),
                }));
                self.flush().await?;
                Err(e)
            }
        }
    }

    /// The expansion of [`Planner::add_inputs`].
    async fn run_inputs(
        &mut self,
        plan: &mut JobGraph,
        task: TaskId,
        inputs: &[PartitionRef],
    ) -> Result<(), PlanError> {
        let mut frontier = Vec::new();
        let mut found = Ok(());
        for r in inputs {
            let config = &mut plan.task_mut(task).config;
            if !config
                .inputs
                .iter()
                .any(|d| d.dep_type == DepType::Materialize && d.partition == *r)
            {
                config.inputs.push(DataDep::materialize(r.clone()));
            }
            match self.need(plan, task, r.clone()) {
                Ok(Some(missing)) => frontier.push(missing),
                Ok(None) => {}
                Err(e) => {
                    found = Err(e);
                    break;
                }
            }
        }
        if let Some(events) = &mut self.events {
            let refs = |v: &[PartitionRef]| v.iter().map(PartitionRef::to_proto).collect();
            let started = BuildEvent::at(
                self.planner.clock.now_ns(),
                Event::AnalyzeStarted(proto::AnalyzeStarted {
                    requested: refs(inputs),
                    missing: refs(&frontier),
                }),
            )
            .for_request(&self.request.build_request_id);
            // Before a cycle event `need` may have recorded.
            events.insert(0, started);
        }
        found?;
        let mut wave = 0u32;
        while !frontier.is_empty() {
            frontier = self.wave(plan, wave, frontier).await?;
            self.flush().await?;
            wave += 1;
        }
        Ok(())
    }
}

impl Expansion<'_> {
    fn push(&mut self, event: Event) {
        if let Some(events) = &mut self.events {
            let now = self.planner.clock.now_ns();
            events.push(BuildEvent::at(now, event).for_request(&self.request.build_request_id));
        }
    }

    fn recording(&self) -> bool {
        self.events.is_some()
    }

    async fn flush(&mut self) -> Result<(), PlanError> {
        if let (Some(bel), Some(events)) = (&self.planner.bel, &mut self.events)
            && !events.is_empty()
        {
            bel.append(std::mem::take(events)).await?;
        }
        Ok(())
    }

    async fn run(&mut self, plan: &mut JobGraph) -> Result<(), PlanError> {
        let mut frontier = Vec::new();
        let mut asked: HashSet<&PartitionRef, RandomState> = HashSet::default();
        for r in &self.request.requested {
            if !asked.insert(r) {
                continue;
            }
            plan.add_requested(r.clone());
            match plan.index_mut().get(r) {
                Some(Slot::Produced(_) | Slot::Waiting { .. }) => continue,
                Some(Slot::Settled) if !self.request.force => continue,
                _ => {}
            }
            let status = self.planner.availability.status(r);
            let plan_it = match status {
                PartitionStatusView::Available => self.request.force,
                PartitionStatusView::Building { .. } => false,
                _ => true,
            };
            if plan_it {
                plan.index_mut().insert(
                    r.clone(),
                    Slot::Waiting {
                        first: None,
                        more: NO_MORE,
                    },
                );
                frontier.push(r.clone());
            } else {
                Self::settle(plan, r.clone(), status);
            }
        }
        if self.recording() {
            let refs = |v: &[PartitionRef]| v.iter().map(PartitionRef::to_proto).collect();
            self.push(Event::AnalyzeStarted(proto::AnalyzeStarted {
                requested: refs(&self.request.requested),
                missing: refs(&frontier),
            }));
        }
        let mut wave = 0u32;
        while !frontier.is_empty() {
            frontier = self.wave(plan, wave, frontier).await?;
            self.flush().await?;
            wave += 1;
        }
        Ok(())
    }

    /// Records a partition that is not planned: available or building.
    fn settle(plan: &mut JobGraph, r: PartitionRef, status: PartitionStatusView) {
        if plan.index_mut().insert(r.clone(), Slot::Settled) == Some(Slot::Settled) {
            return;
        }
        match status {
            PartitionStatusView::Building { job_run_id } => plan.add_in_progress(r, job_run_id),
            _ => plan.add_available(r),
        }
    }

    /// One wave: dispatch `frontier` to jobs, add the configs as tasks, and
    /// return the next frontier.
    async fn wave(
        &mut self,
        plan: &mut JobGraph,
        wave: u32,
        frontier: Vec<PartitionRef>,
    ) -> Result<Vec<PartitionRef>, PlanError> {
        let graph = Arc::clone(&self.planner.graph);
        let jobs = graph.jobs();

        // dispatch_missing_partitions: group by producing job.
        let mut groups: Vec<Vec<PartitionRef>> = vec![Vec::new(); jobs.len()];
        let mut failed: Vec<LookupError> = Vec::new();
        for r in frontier {
            match graph.lookup_index(&r) {
                Ok(i) => groups[i].push(r),
                Err(e) => failed.push(e),
            }
        }
        if !failed.is_empty() {
            failed.sort_by(|a, b| a.partition().cmp(b.partition()));
            let first = failed.swap_remove(0);
            let reason = if failed.is_empty() {
                first.to_string()
            } else {
                format!("{first} (and {} more refs)", failed.len())
            };
            let mut refs = vec![first.partition().to_proto()];
            refs.extend(failed.iter().map(|e| e.partition().to_proto()));
            self.push(Event::PartitionDispatchFailed(
                proto::PartitionDispatchFailed { refs, reason },
            ));
            return Err(first.into());
        }
        let mut order: Vec<usize> = (0..jobs.len()).filter(|i| !groups[*i].is_empty()).collect();
        order.sort_by(|a, b| jobs[*a].label().cmp(jobs[*b].label()));

        // job.config for each job, concurrently, results in label order.
        let dispatches: Vec<Dispatch> = futures::stream::iter(order.into_iter().map(|i| {
            let refs = std::mem::take(&mut groups[i]);
            let job = &jobs[i];
            async move {
                let result = match job.validate_args(&refs) {
                    Err(reason) => Err(JobConfigError::ArgsInvalid {
                        job: job.label().clone(),
                        reason,
                    }),
                    Ok(()) => match job.config(&refs).await {
                        Ok(configs) => validate_coverage(job.label(), &refs, configs),
                        Err(e) => Err(e),
                    },
                };
                Dispatch {
                    job: i,
                    refs,
                    result,
                }
            }
        }))
        .buffered(self.planner.config_concurrency)
        .collect()
        .await;

        let mut first_error: Option<JobConfigError> = None;
        let mut configs_by_job = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            let label = jobs[d.job].label();
            self.record_dispatch(wave, label, &d);
            match d.result {
                Ok(configs) => configs_by_job.push((d.job, configs)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e.into());
        }

        // Add the wave's tasks, then connect their inputs, so that inputs
        // produced within the wave are found.
        let first_new = self.new_tasks.len();
        let (tasks, outputs) = configs_by_job.iter().fold((0, 0), |(t, o), (_, configs)| {
            (
                t + configs.len(),
                o + configs.iter().map(|c| c.outputs.len()).sum::<usize>(),
            )
        });
        plan.reserve(tasks, outputs);
        for (job, configs) in configs_by_job {
            let digest = self.digest(job);
            for config in configs {
                let id = plan.push_task(Task {
                    job: jobs[job].label().clone(),
                    config,
                    definition_digest: Arc::clone(&digest),
                });
                self.new_tasks.push(id);
                for k in 0..plan.task(id).config.outputs.len() {
                    let o = plan.task(id).config.outputs[k].clone();
                    let previous = plan.index_mut().insert(o.clone(), Slot::Produced(id));
                    if let Some(Slot::Waiting { first, more }) = previous {
                        // A new task ranks below everything: never a cycle.
                        for reader in first.into_iter().chain(self.take_more(more)) {
                            let _ = plan.connect(id, reader, o.clone());
                        }
                    }
                    debug_assert!(
                        !matches!(previous, Some(Slot::Produced(_))),
                        "the coverage check admits no clash"
                    );
                }
            }
        }
        let mut next = Vec::new();
        for k in first_new..self.new_tasks.len() {
            let id = self.new_tasks[k];
            for i in 0..plan.task(id).config.inputs.len() {
                let dep = &plan.task(id).config.inputs[i];
                if dep.dep_type != DepType::Materialize {
                    continue;
                }
                let input = dep.partition.clone();
                if let Some(missing) = self.need(plan, id, input)? {
                    next.push(missing);
                }
            }
        }
        Ok(next)
    }

    /// Records that task `id` reads `input`: an edge from its producer
    /// (checked for a cycle), a wait for a producer still to plan, or
    /// nothing when it is available or built elsewhere. Returns the input
    /// when it is missing and nobody plans it yet: the next wave's work.
    fn need(
        &mut self,
        plan: &mut JobGraph,
        id: TaskId,
        input: PartitionRef,
    ) -> Result<Option<PartitionRef>, PlanError> {
        match plan.index_mut().entry(input) {
            Entry::Occupied(mut e) => {
                // Edges carry the index's copy of the ref. The task keeps its
                // own: swapping it for the shared one (interning) saves 7% of
                // memory at 1M partitions but costs 15% of the time in frees
                // (benches/README.md).
                let known = e.key().clone();
                let slot = *e.get();
                match slot {
                    Slot::Produced(_) | Slot::Settled => {}
                    Slot::Waiting { first: None, more } => {
                        *e.get_mut() = Slot::Waiting {
                            first: Some(id),
                            more,
                        };
                    }
                    Slot::Waiting { first, more } => {
                        let more = self.push_more(more, id);
                        *e.get_mut() = Slot::Waiting { first, more };
                    }
                }
                if let Slot::Produced(producer) = slot
                    && let Err(cycle) = plan.connect(producer, id, known.clone())
                {
                    return Err(self.cycle(plan, cycle, producer, id, known));
                }
                Ok(None)
            }
            Entry::Vacant(v) => match self.planner.availability.status(v.key()) {
                PartitionStatusView::Missing | PartitionStatusView::Tainted => {
                    let missing = v.key().clone();
                    v.insert(Slot::Waiting {
                        first: Some(id),
                        more: NO_MORE,
                    });
                    Ok(Some(missing))
                }
                status => {
                    let r = v.key().clone();
                    Self::settle(plan, r, status);
                    Ok(None)
                }
            },
        }
    }

    /// Adds `reader` to the further readers at `more`, returning the index.
    fn push_more(&mut self, more: u32, reader: TaskId) -> u32 {
        if more == NO_MORE {
            self.more_readers.push(vec![reader]);
            u32::try_from(self.more_readers.len() - 1).unwrap_or(NO_MORE)
        } else {
            self.more_readers[more as usize].push(reader);
            more
        }
    }

    /// Takes the further readers at `more`.
    fn take_more(&mut self, more: u32) -> Vec<TaskId> {
        if more == NO_MORE {
            Vec::new()
        } else {
            std::mem::take(&mut self.more_readers[more as usize])
        }
    }

    fn digest(&mut self, job: usize) -> Arc<str> {
        let jobs = self.planner.graph.jobs();
        Arc::clone(
            self.digests
                .entry(job)
                .or_insert_with(|| Arc::from(jobs[job].definition_digest())),
        )
    }

    /// The events of one job's dispatch and config call.
    fn record_dispatch(&mut self, wave: u32, label: &JobLabel, d: &Dispatch) {
        if !self.recording() {
            return;
        }
        let refs: Vec<proto::PartitionRef> = d.refs.iter().map(PartitionRef::to_proto).collect();
        self.push(Event::PartitionsDispatched(proto::PartitionsDispatched {
            wave,
            job: Some(label.to_proto()),
            refs: refs.clone(),
        }));
        match &d.result {
            Err(JobConfigError::ArgsInvalid { reason, .. }) => {
                self.push(Event::JobConfigArgsInvalid(proto::JobConfigArgsInvalid {
                    job: Some(label.to_proto()),
                    outputs: refs,
                    reason: reason.clone(),
                }));
            }
            result => {
                self.push(Event::JobConfigArgsValidated(
                    proto::JobConfigArgsValidated {
                        job: Some(label.to_proto()),
                        outputs: refs,
                    },
                ));
                match result {
                    Ok(configs) => {
                        self.push(Event::JobConfigSucceeded(proto::JobConfigSucceeded {
                            job: Some(label.to_proto()),
                            configs: configs.len() as u64,
                        }));
                        return;
                    }
                    Err(e) => self.push(Event::JobConfigRunFailed(proto::JobConfigRunFailed {
                        job: Some(label.to_proto()),
                        reason: e.to_string(),
                    })),
                }
            }
        }
        self.push(Event::JobConfigFailed(proto::JobConfigFailed {
            job: Some(label.to_proto()),
        }));
    }

    /// The error (and event) for a cycle closed by `producer -> consumer`
    /// carrying `input`.
    fn cycle(
        &mut self,
        plan: &JobGraph,
        found: CycleFound,
        producer: TaskId,
        consumer: TaskId,
        input: PartitionRef,
    ) -> PlanError {
        // `found` runs consumer -> ... -> producer; the partition each task
        // hands to the next, then `input` back to the consumer.
        let path = found.0;
        let mut cycle: Vec<PartitionRef> = path
            .windows(2)
            .filter_map(|w| plan.edge_partition(w[0], w[1]).cloned())
            .collect();
        cycle.push(input);
        let jobs: Vec<JobLabel> = path.iter().map(|t| plan.task(*t).job.clone()).collect();
        debug_assert_eq!(path.last(), Some(&producer));
        debug_assert_eq!(path.first(), Some(&consumer));
        // Rotate so the cycle starts at its smallest partition: reproducible.
        let start = (0..cycle.len()).min_by_key(|i| &cycle[*i]).unwrap_or(0);
        cycle.rotate_left(start);
        let mut jobs = jobs;
        jobs.rotate_left(start);
        cycle.push(cycle[0].clone());
        self.push(Event::CycleDetected(proto::CycleDetected {
            cycle: cycle.iter().map(PartitionRef::to_proto).collect(),
            jobs: jobs.iter().map(JobLabel::to_proto).collect(),
        }));
        PlanError::Cycle { cycle, jobs }
    }
}

/// job.exec's `validate_config`, applied at plan time: the configs cover
/// exactly `asked`, each ref once.
fn validate_coverage(
    job: &JobLabel,
    asked: &[PartitionRef],
    configs: Vec<JobConfig>,
) -> Result<Vec<JobConfig>, JobConfigError> {
    // Fast path: one config per output, in the order asked.
    if configs.len() == asked.len()
        && configs
            .iter()
            .zip(asked)
            .all(|(c, a)| c.outputs.len() == 1 && &c.outputs[0] == a)
    {
        return Ok(configs);
    }
    let mut open: HashMap<&PartitionRef, bool, RandomState> =
        asked.iter().map(|r| (r, false)).collect();
    let mut unrequested = Vec::new();
    let mut duplicated = Vec::new();
    for o in configs.iter().flat_map(|c| &c.outputs) {
        match open.get_mut(o) {
            Some(covered) if !*covered => *covered = true,
            Some(_) => duplicated.push(o.clone()),
            None => unrequested.push(o.clone()),
        }
    }
    if !unrequested.is_empty() {
        return Err(JobConfigError::UnrequestedOutputs {
            job: job.clone(),
            refs: unrequested,
        });
    }
    if !duplicated.is_empty() {
        return Err(JobConfigError::DuplicateOutputs {
            job: job.clone(),
            refs: duplicated,
        });
    }
    let missing: Vec<PartitionRef> = asked
        .iter()
        .filter(|r| open.get(r) == Some(&false))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(JobConfigError::MissingOutputs {
            job: job.clone(),
            refs: missing,
        });
    }
    Ok(configs)
}
