use std::time::{SystemTime, UNIX_EPOCH};

use super::{BuildEvent, Event};

/// Unix time now, in nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Event {
    /// The member's name in the proto schema, such as `job_run_running`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::BuildRequestReceived(_) => "build_request_received",
            Event::RemainingJobs(_) => "remaining_jobs",
            Event::JobsUnschedulable(_) => "jobs_unschedulable",
            Event::JobScheduled(_) => "job_scheduled",
            Event::JobScheduleFailed(_) => "job_schedule_failed",
            Event::JobFailure(_) => "job_failure",
            Event::JobCancels(_) => "job_cancels",
            Event::BuildHeartbeat(_) => "build_heartbeat",
            Event::BuildSucceeded(_) => "build_succeeded",
            Event::BuildFailed(_) => "build_failed",
            Event::BuildCanceled(_) => "build_canceled",
            Event::BuildPlanning(_) => "build_planning",
            Event::BuildExecuting(_) => "build_executing",
            Event::AnalyzeStarted(_) => "analyze_started",
            Event::PartitionsDispatched(_) => "partitions_dispatched",
            Event::PartitionDispatchFailed(_) => "partition_dispatch_failed",
            Event::CycleDetected(_) => "cycle_detected",
            Event::JobGraphEmitted(_) => "job_graph_emitted",
            Event::AnalyzeFailed(_) => "analyze_failed",
            Event::JobConfigArgsValidated(_) => "job_config_args_validated",
            Event::JobConfigArgsInvalid(_) => "job_config_args_invalid",
            Event::JobConfigSucceeded(_) => "job_config_succeeded",
            Event::JobConfigRunFailed(_) => "job_config_run_failed",
            Event::JobConfigFailed(_) => "job_config_failed",
            Event::JobRunBuffering(_) => "job_run_buffering",
            Event::JobRunQueued(_) => "job_run_queued",
            Event::JobRunConfigValidated(_) => "job_run_config_validated",
            Event::JobRunConfigInvalid(_) => "job_run_config_invalid",
            Event::JobRunRunning(_) => "job_run_running",
            Event::JobRunLaunchFailed(_) => "job_run_launch_failed",
            Event::JobRunHeartbeat(_) => "job_run_heartbeat",
            Event::JobRunTaskFailed(_) => "job_run_task_failed",
            Event::JobRunTaskSucceeded(_) => "job_run_task_succeeded",
            Event::JobRunSucceeded(_) => "job_run_succeeded",
            Event::JobRunMetadataFailed(_) => "job_run_metadata_failed",
            Event::JobRunFailed(_) => "job_run_failed",
            Event::JobRunMissingDeps(_) => "job_run_missing_deps",
            Event::JobRunCanceled(_) => "job_run_canceled",
            Event::JobRunLost(_) => "job_run_lost",
            Event::JobRunKillRequested(_) => "job_run_kill_requested",
            Event::JobRunAttached(_) => "job_run_attached",
            Event::JobRunDetached(_) => "job_run_detached",
            Event::PartitionDelegated(_) => "partition_delegated",
            Event::JobSkipped(_) => "job_skipped",
            Event::PartitionStatusChanged(_) => "partition_status_changed",
            Event::ExecutorHealth(_) => "executor_health",
        }
    }
}

impl Event {
    /// Whether the event ends a job run (its state is then terminal:
    /// succeeded, failed, canceled, lost or missing deps).
    pub fn ends_job_run(&self) -> bool {
        matches!(
            self,
            Event::JobRunSucceeded(_)
                | Event::JobRunFailed(_)
                | Event::JobRunCanceled(_)
                | Event::JobRunLost(_)
                | Event::JobRunMissingDeps(_)
        )
    }
}

impl BuildEvent {
    /// An event stamped with the current time, not yet part of a request.
    pub fn new(event: Event) -> Self {
        Self::at(now_ns(), event)
    }

    /// An event stamped with `timestamp_ns`.
    pub fn at(timestamp_ns: i64, event: Event) -> Self {
        Self {
            seq: 0,
            timestamp_ns,
            build_request_id: String::new(),
            job_run_id: String::new(),
            origin: None,
            event: Some(event),
        }
    }

    /// Sets the build request the event belongs to.
    #[must_use]
    pub fn for_request(mut self, build_request_id: impl Into<String>) -> Self {
        self.build_request_id = build_request_id.into();
        self
    }

    /// Sets the job run the event belongs to.
    #[must_use]
    pub fn for_job_run(mut self, job_run_id: impl Into<String>) -> Self {
        self.job_run_id = job_run_id.into();
        self
    }

    /// The event's kind, `""` when the oneof is unset.
    pub fn kind(&self) -> &'static str {
        self.event.as_ref().map_or("", Event::name)
    }
}
