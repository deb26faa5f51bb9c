//! The build state as rows ([`StateRows`]) and back, for sinks that keep it
//! materialized next to the log.

use std::collections::BTreeSet;
use std::sync::Arc;

use prost::Message;

use super::{
    BuildRequest, BuildState, CatalogEntry, JobRun, LoadError, RelayedPhase, RelayedRun,
    RequestState, RunState,
};
use crate::bel::{PartitionRow, RequestRow, RunRow, StateRows};
use crate::orchestrator::BuildOptions;
use crate::partition::PartitionRef;
use crate::proto::{self, PartitionStatus};

impl RunState {
    /// The state's code in stored rows (stable across versions).
    pub fn code(self) -> u32 {
        match self {
            RunState::Queued => 1,
            RunState::Scheduled => 2,
            RunState::Running => 3,
            RunState::TaskSucceeded => 4,
            RunState::Failing => 5,
            RunState::Succeeded => 6,
            RunState::Failed => 7,
            RunState::MissingDeps => 8,
            RunState::Canceled => 9,
            RunState::Lost => 10,
        }
    }

    /// The state with `code`, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => RunState::Queued,
            2 => RunState::Scheduled,
            3 => RunState::Running,
            4 => RunState::TaskSucceeded,
            5 => RunState::Failing,
            6 => RunState::Succeeded,
            7 => RunState::Failed,
            8 => RunState::MissingDeps,
            9 => RunState::Canceled,
            10 => RunState::Lost,
            _ => return None,
        })
    }
}

impl RequestState {
    /// The state's code in stored rows (stable across versions).
    pub fn code(self) -> u32 {
        match self {
            RequestState::Received => 1,
            RequestState::Planning => 2,
            RequestState::Executing => 3,
            RequestState::Succeeded => 4,
            RequestState::Failed => 5,
            RequestState::Canceled => 6,
        }
    }

    /// The state with `code`, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => RequestState::Received,
            2 => RequestState::Planning,
            3 => RequestState::Executing,
            4 => RequestState::Succeeded,
            5 => RequestState::Failed,
            6 => RequestState::Canceled,
            _ => return None,
        })
    }
}

fn run_row(run: &JobRun) -> RunRow {
    let record = proto::JobRunRecord {
        job_run_id: run.job_run_id.clone(),
        task: None,
        attempt: run.attempt,
        previous_job_run_id: run.previous_job_run_id.clone().unwrap_or_default(),
        started_by: run.started_by.clone(),
        state: run.state.code(),
        kill_requested: run.kill_requested,
        last_seen_ns: run.last_seen_ns,
        waiters: run.waiters.iter().cloned().collect(),
        failure: run.failure.clone(),
        relayed_seq: run.relayed_seq,
        relayed_open: run
            .relayed_open
            .iter()
            .map(|(id, r)| proto::RelayedRun {
                job_run_id: id.clone(),
                build_request_id: r.build_request_id.clone(),
                phase: r.phase.code(),
            })
            .collect(),
    };
    // The task goes in as field 2 from the shared copy (no clone of it).
    let mut bytes = Vec::with_capacity(record.encoded_len() + run.task.encoded_len() + 4);
    record
        .encode(&mut bytes)
        .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
    prost::encoding::message::encode(2, &*run.task, &mut bytes);
    RunRow {
        job_run_id: run.job_run_id.clone(),
        ended: run.state.is_terminal(),
        record: bytes,
    }
}

fn request_row(request: &BuildRequest) -> RequestRow {
    let record = proto::BuildRequestRecord {
        build_request_id: request.build_request_id.clone(),
        requested: request
            .requested
            .iter()
            .map(PartitionRef::to_proto)
            .collect(),
        options: Some(proto::BuildOptions {
            force: request.options.force,
            keep_going: request.options.keep_going,
        }),
        state: request.state.code(),
        stopping: request.stopping,
        analyzing: request.analyzing,
    };
    RequestRow {
        build_request_id: request.build_request_id.clone(),
        ended: request.is_terminal(),
        record: record.encode_to_vec(),
    }
}

fn partition_row(partition: &PartitionRef, entry: &CatalogEntry, seq: u64) -> PartitionRow {
    PartitionRow {
        partition: partition.as_str().to_owned(),
        status: entry.status as i32,
        job_run_id: entry.job_run_id.clone(),
        seq,
    }
}

fn damaged(what: String, reason: impl ToString) -> LoadError {
    LoadError::Rows {
        what,
        reason: reason.to_string(),
    }
}

impl BuildState {
    /// The whole state as rows.
    pub fn to_rows(&self) -> StateRows {
        let mut rows = StateRows {
            runs: self.runs.values().map(run_row).collect(),
            requests: self.requests.values().map(request_row).collect(),
            partitions: self
                .catalog
                .iter()
                .map(|(p, e)| partition_row(p, e, e.seq))
                .collect(),
        };
        rows.runs.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
        rows.partitions
            .sort_by(|a, b| a.partition.cmp(&b.partition));
        rows
    }

    /// The rows a batch changes: this is the batch's overlay (see
    /// [`overlay`](Self::overlay)) and `statuses` its status events'
    /// positions; each partition row's seq is the index in the batch of its
    /// last status event.
    pub(crate) fn delta_rows(&self, statuses: &[(usize, PartitionRef)]) -> StateRows {
        let mut partitions = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in statuses.iter().rev() {
            if seen.insert(r)
                && let Some(entry) = self.catalog.get(r)
            {
                partitions.push(partition_row(r, entry, *i as u64));
            }
        }
        StateRows {
            runs: self.runs.values().map(run_row).collect(),
            requests: self.requests.values().map(request_row).collect(),
            partitions,
        }
    }

    /// The state stored as `rows`, current to seq `last_seq`.
    pub fn from_rows(rows: StateRows, last_seq: u64) -> Result<Self, LoadError> {
        let mut state = BuildState {
            last_seq,
            ..BuildState::default()
        };
        for row in rows.runs {
            let what = || format!("job run {:?}", row.job_run_id);
            let r = proto::JobRunRecord::decode(row.record.as_slice())
                .map_err(|e| damaged(what(), e))?;
            let run = JobRun {
                job_run_id: r.job_run_id,
                task: Arc::new(r.task.ok_or_else(|| damaged(what(), "no task"))?),
                attempt: r.attempt,
                previous_job_run_id: Some(r.previous_job_run_id).filter(|p| !p.is_empty()),
                started_by: r.started_by,
                state: RunState::from_code(r.state)
                    .ok_or_else(|| damaged(what(), format!("unknown state code {}", r.state)))?,
                kill_requested: r.kill_requested,
                last_seen_ns: r.last_seen_ns,
                waiters: r.waiters.into_iter().collect::<BTreeSet<_>>(),
                failure: r.failure,
                relayed_seq: r.relayed_seq,
                relayed_open: r
                    .relayed_open
                    .into_iter()
                    .map(|o| {
                        let phase = RelayedPhase::from_code(o.phase).ok_or_else(|| {
                            damaged(what(), format!("unknown relayed phase code {}", o.phase))
                        })?;
                        Ok((
                            o.job_run_id,
                            RelayedRun {
                                build_request_id: o.build_request_id,
                                phase,
                            },
                        ))
                    })
                    .collect::<Result<_, LoadError>>()?,
            };
            state.runs.insert(run.job_run_id.clone(), run);
        }
        for row in rows.requests {
            let what = || format!("build request {:?}", row.build_request_id);
            let r = proto::BuildRequestRecord::decode(row.record.as_slice())
                .map_err(|e| damaged(what(), e))?;
            let requested = r
                .requested
                .iter()
                .map(PartitionRef::try_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| damaged(what(), e))?;
            let options = r.options.unwrap_or_default();
            let request = BuildRequest {
                build_request_id: r.build_request_id,
                requested,
                options: BuildOptions::default()
                    .force(options.force)
                    .keep_going(options.keep_going),
                state: RequestState::from_code(r.state)
                    .ok_or_else(|| damaged(what(), format!("unknown state code {}", r.state)))?,
                stopping: r.stopping,
                analyzing: r.analyzing,
            };
            state
                .requests
                .insert(request.build_request_id.clone(), request);
        }
        for row in rows.partitions {
            let what = || format!("partition {:?}", row.partition);
            let partition = PartitionRef::new(&row.partition).map_err(|e| damaged(what(), e))?;
            let status = PartitionStatus::try_from(row.status)
                .map_err(|_| damaged(what(), format!("unknown status {}", row.status)))?;
            state.catalog.insert(
                partition,
                CatalogEntry {
                    status,
                    job_run_id: row.job_run_id,
                    seq: row.seq,
                },
            );
        }
        Ok(state)
    }
}
