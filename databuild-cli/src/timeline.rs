//! A build request's job runs on a time axis, read from its events: what
//! `trace` and `report` draw.

use std::collections::HashMap;

use databuild_core::bel::{BlobDigest, BuildEvent, Event};
use databuild_core::{BelSink, EventFilter, JobGraph};

use crate::CliError;

/// How a run ended, or that it has not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEnd {
    /// Still going when the events stop.
    Open,
    /// Built its outputs.
    Succeeded,
    /// Failed, with the reason.
    Failed(String),
    /// Reported missing inputs (it runs again once they are built).
    MissingDeps,
    /// Stopped on request.
    Canceled,
    /// No sign of life for the liveness timeout.
    Lost,
}

impl RunEnd {
    /// A short word for it (`succeeded`, `failed`, ...).
    pub fn word(&self) -> &'static str {
        match self {
            RunEnd::Open => "running",
            RunEnd::Succeeded => "succeeded",
            RunEnd::Failed(_) => "failed",
            RunEnd::MissingDeps => "missing-deps",
            RunEnd::Canceled => "canceled",
            RunEnd::Lost => "lost",
        }
    }
}

/// One job run of the request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunBar {
    /// Its id.
    pub job_run_id: String,
    /// Its job.
    pub job_label: String,
    /// The partitions it builds.
    pub outputs: Vec<String>,
    /// Attempt number.
    pub attempt: u32,
    /// When it was queued (unix ns).
    pub queued_ns: i64,
    /// When it started (running, or scheduled when it never ran).
    pub start_ns: Option<i64>,
    /// When it ended.
    pub end_ns: Option<i64>,
    /// How it ended.
    pub end: RunEnd,
    /// Its heartbeats (unix ns).
    pub heartbeats: Vec<i64>,
    /// The slot lane it is drawn on (runs of one lane never overlap).
    pub lane: usize,
}

/// A build request's runs, in the order they were queued.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Timeline {
    /// The request.
    pub build_request_id: String,
    /// What it asked for.
    pub requested: Vec<String>,
    /// When it was received (unix ns).
    pub start_ns: i64,
    /// When it ended, if it did.
    pub end_ns: Option<i64>,
    /// `succeeded`, `failed`, `canceled`, or `running`.
    pub outcome: String,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Its runs.
    pub runs: Vec<RunBar>,
    /// Partitions it found available or delegated to other requests.
    pub reused: Vec<String>,
    /// The last plan it executed, when the store has it.
    pub plan: Option<JobGraph>,
    /// The time of its last event.
    pub last_ns: i64,
}

impl Timeline {
    /// Reads the request's events (and its plan) from `bel`.
    pub async fn load(bel: &dyn BelSink, build_request_id: &str) -> Result<Self, CliError> {
        let events =
            crate::home::read_all(bel, 0, &EventFilter::build_request(build_request_id)).await?;
        if events.is_empty() {
            return Err(CliError::UnknownBuildRequest {
                id: build_request_id.to_owned(),
                home: std::path::PathBuf::from("the store"),
            });
        }
        let mut timeline = Self::from_events(build_request_id, &events);
        let digest = events.iter().rev().find_map(|e| match &e.event {
            Some(Event::JobGraphEmitted(g)) => Some(g.plan_digest.clone()),
            Some(Event::BuildExecuting(x)) if !x.plan_digest.is_empty() => {
                Some(x.plan_digest.clone())
            }
            _ => None,
        });
        if let Some(digest) = digest.as_deref().and_then(BlobDigest::parse)
            && let Some(bytes) = bel.get_blob(&digest).await?
        {
            timeline.plan = JobGraph::decode(&bytes).ok();
        }
        Ok(timeline)
    }

    /// The timeline of `events` (those of one request, in seq order).
    pub fn from_events(build_request_id: &str, events: &[BuildEvent]) -> Self {
        let mut t = Timeline {
            build_request_id: build_request_id.to_owned(),
            requested: Vec::new(),
            start_ns: events.first().map_or(0, |e| e.timestamp_ns),
            end_ns: None,
            outcome: "running".into(),
            reason: None,
            runs: Vec::new(),
            reused: Vec::new(),
            plan: None,
            last_ns: events.last().map_or(0, |e| e.timestamp_ns),
        };
        let mut index: HashMap<String, usize> = HashMap::new();
        for e in events {
            let at = e.timestamp_ns;
            let run = index.get(&e.job_run_id).copied();
            let Some(event) = &e.event else { continue };
            match event {
                Event::BuildRequestReceived(r) => {
                    t.start_ns = at;
                    t.requested = r.requested.iter().map(|p| p.str.clone()).collect();
                }
                Event::BuildSucceeded(_) => {
                    t.end_ns = Some(at);
                    t.outcome = "succeeded".into();
                }
                Event::BuildFailed(f) => {
                    t.end_ns = Some(at);
                    t.outcome = "failed".into();
                    t.reason = Some(f.reason.clone());
                }
                Event::BuildCanceled(c) => {
                    t.end_ns = Some(at);
                    t.outcome = "canceled".into();
                    t.reason = Some(c.reason.clone());
                }
                Event::JobSkipped(s) => {
                    t.reused.extend(s.partitions.iter().map(|p| p.str.clone()));
                }
                Event::PartitionDelegated(d) if !d.historical => {
                    t.reused.extend(d.partition.as_ref().map(|p| p.str.clone()));
                }
                Event::JobRunQueued(q) => {
                    let task = q.task.as_ref();
                    index.insert(e.job_run_id.clone(), t.runs.len());
                    t.runs.push(RunBar {
                        job_run_id: e.job_run_id.clone(),
                        job_label: task
                            .and_then(|t| t.job.as_ref())
                            .map(|j| j.label.clone())
                            .unwrap_or_default(),
                        outputs: task
                            .and_then(|t| t.config.as_ref())
                            .map(|c| c.outputs.iter().map(|p| p.str.clone()).collect())
                            .unwrap_or_default(),
                        attempt: q.attempt,
                        queued_ns: at,
                        start_ns: None,
                        end_ns: None,
                        end: RunEnd::Open,
                        heartbeats: Vec::new(),
                        lane: 0,
                    });
                }
                Event::JobScheduled(s) => {
                    let id = if e.job_run_id.is_empty() {
                        &s.job_run_id
                    } else {
                        &e.job_run_id
                    };
                    if let Some(&i) = index.get(id) {
                        t.runs[i].start_ns.get_or_insert(at);
                    }
                }
                Event::JobRunRunning(_) => {
                    if let Some(i) = run {
                        t.runs[i].start_ns = Some(at);
                    }
                }
                Event::JobRunHeartbeat(_) => {
                    if let Some(i) = run {
                        t.runs[i].heartbeats.push(at);
                    }
                }
                Event::JobRunSucceeded(_) => end(&mut t, run, at, RunEnd::Succeeded),
                Event::JobRunFailed(f) => end(&mut t, run, at, RunEnd::Failed(f.reason.clone())),
                Event::JobRunMissingDeps(_) => end(&mut t, run, at, RunEnd::MissingDeps),
                Event::JobRunCanceled(_) => end(&mut t, run, at, RunEnd::Canceled),
                Event::JobRunLost(_) => end(&mut t, run, at, RunEnd::Lost),
                _ => {}
            }
        }
        t.assign_lanes();
        t
    }

    /// The time a run's bar ends at: its end, else the request's, else the
    /// last event's.
    pub fn bar_end(&self, run: &RunBar) -> i64 {
        run.end_ns
            .or(self.end_ns)
            .unwrap_or(self.last_ns)
            .max(run.start_ns.unwrap_or(run.queued_ns))
    }

    /// Greedy interval colouring in start order: a run takes the first lane
    /// free at its start, so lanes are the slots the runs held.
    fn assign_lanes(&mut self) {
        let mut order: Vec<usize> = (0..self.runs.len())
            .filter(|&i| self.runs[i].start_ns.is_some())
            .collect();
        order.sort_by_key(|&i| (self.runs[i].start_ns, i));
        let mut lanes: Vec<i64> = Vec::new();
        for i in order {
            let start = self.runs[i].start_ns.unwrap_or_default();
            let end = self.bar_end(&self.runs[i]);
            let lane = match lanes.iter().position(|&free_at| free_at <= start) {
                Some(l) => l,
                None => {
                    lanes.push(0);
                    lanes.len() - 1
                }
            };
            lanes[lane] = end;
            self.runs[i].lane = lane;
        }
    }

    /// How many lanes the runs use.
    pub fn lanes(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.start_ns.is_some())
            .map(|r| r.lane + 1)
            .max()
            .unwrap_or(0)
    }
}

fn end(t: &mut Timeline, run: Option<usize>, at: i64, how: RunEnd) {
    if let Some(i) = run {
        t.runs[i].end_ns = Some(at);
        t.runs[i].end = how;
    }
}
