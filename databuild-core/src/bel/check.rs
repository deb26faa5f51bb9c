//! Checks that a log obeys the seeds' state diagrams and the exactly-once
//! promise.
//!
//! The transition table below is written from seed 001's graph.analyze and
//! job.config diagrams: for each build request, every analysis event must
//! follow one the diagram allows before it. A job's config events must name
//! the job its `PartitionsDispatched` named, and a finished analysis takes no
//! further analysis events until the next `AnalyzeStarted` (the orchestrator
//! extends live plans with nested analyses).
//!
//! | after | may come |
//! |---|---|
//! | (start), `job_graph_emitted`, `analyze_failed` | `analyze_started` |
//! | `analyze_started` | `partitions_dispatched`, `partition_dispatch_failed`, `job_graph_emitted`, `analyze_failed` |
//! | `partitions_dispatched` | `job_config_args_validated`, `job_config_args_invalid`, `analyze_failed` |
//! | `job_config_args_validated` | `job_config_succeeded`, `job_config_run_failed`, `analyze_failed` |
//! | `job_config_args_invalid`, `job_config_run_failed` | `job_config_failed`, `analyze_failed` |
//! | `job_config_succeeded` | `partitions_dispatched`, `partition_dispatch_failed`, `cycle_detected`, `job_graph_emitted`, `analyze_failed` |
//! | `job_config_failed` | `partitions_dispatched`, `analyze_failed` |
//! | `partition_dispatch_failed`, `cycle_detected` | `analyze_failed` |
//!
//! `analyze_failed` after `job_config_succeeded` is the case where another
//! job of the same wave failed earlier: the wave's events are all written,
//! in job-label order, before the analysis fails. After the other events of
//! an open analysis it is an analysis the orchestrator abandoned: it stopped
//! mid-analysis, and the one that resumed the request closes it before
//! analysing again.
//!
//! The log must also keep the exactly-once promise (issue 18): at any
//! moment at most one live run builds a partition, and a partition is
//! built once per availability epoch ([`check_exactly_once`]).
//!
//! - *One live builder*: a run marks a partition `Building` (the
//!   `partition_status_changed` written with its `job_scheduled`) only when
//!   every other run that marked it `Building` has ended: written
//!   `job_run_succeeded`, `job_run_failed`, `job_run_canceled`,
//!   `job_run_lost` or `job_run_missing_deps`.
//! - *Once per epoch*: a partition that a run made `Available` is made
//!   `Available` again by another run only after it was `Tainted`. Force
//!   means "rebuild what I asked for": a run of a request received with
//!   `force` may rebuild the partitions that request asked for, and its
//!   `Building` mark on one opens a new epoch for it (so when the forced
//!   run fails, the next build of the partition is no second build).
//!   A run that fails, is lost or is cancelled makes nothing `Available`,
//!   so the next run of its task is the epoch's build.
//!
//! Events relayed from a node agent (those with an `origin`) are the node's
//! own view of the runs inside a subgraph run; the outer run, recorded
//! without an origin, stands for them, so they are skipped here.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use super::{BuildEvent, Event};
use crate::proto::PartitionStatus;

/// Why [`check_log`] refuses a log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LogViolation {
    /// An analysis event out of the diagrams' order.
    #[error(transparent)]
    Diagram(#[from] DiagramViolation),
    /// A partition built by two live runs, or twice in one epoch.
    #[error(transparent)]
    ExactlyOnce(#[from] ExactlyOnceViolation),
}

/// A log that breaks the diagrams: the event, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "event seq {seq} ({kind}) of build request {build_request_id:?} may not follow {after}; expected one of: {expected}"
)]
pub struct DiagramViolation {
    /// Sequence number of the offending event.
    pub seq: u64,
    /// Its kind.
    pub kind: &'static str,
    /// Its build request.
    pub build_request_id: String,
    /// The kind of the event it followed (`start` when none).
    pub after: &'static str,
    /// The kinds the diagram allows there.
    pub expected: String,
}

/// The analysis events, in the order of the table.
const ANALYSIS: &[&str] = &[
    "analyze_started",
    "partitions_dispatched",
    "partition_dispatch_failed",
    "cycle_detected",
    "job_graph_emitted",
    "analyze_failed",
    "job_config_args_validated",
    "job_config_args_invalid",
    "job_config_succeeded",
    "job_config_run_failed",
    "job_config_failed",
];

/// What may follow `after` in one analysis.
fn allowed(after: &str) -> &'static [&'static str] {
    match after {
        "start" | "job_graph_emitted" | "analyze_failed" => &["analyze_started"],
        "analyze_started" => &[
            "partitions_dispatched",
            "partition_dispatch_failed",
            "job_graph_emitted",
            "analyze_failed",
        ],
        "partitions_dispatched" => &[
            "job_config_args_validated",
            "job_config_args_invalid",
            "analyze_failed",
        ],
        "job_config_args_validated" => &[
            "job_config_succeeded",
            "job_config_run_failed",
            "analyze_failed",
        ],
        "job_config_args_invalid" | "job_config_run_failed" => {
            &["job_config_failed", "analyze_failed"]
        }
        "job_config_succeeded" => &[
            "partitions_dispatched",
            "partition_dispatch_failed",
            "cycle_detected",
            "job_graph_emitted",
            "analyze_failed",
        ],
        "job_config_failed" => &["partitions_dispatched", "analyze_failed"],
        "partition_dispatch_failed" | "cycle_detected" => &["analyze_failed"],
        _ => &[],
    }
}

/// The job an analysis event names, if it names one.
fn job_of(event: &Event) -> Option<&str> {
    let job = match event {
        Event::PartitionsDispatched(e) => e.job.as_ref(),
        Event::JobConfigArgsValidated(e) => e.job.as_ref(),
        Event::JobConfigArgsInvalid(e) => e.job.as_ref(),
        Event::JobConfigSucceeded(e) => e.job.as_ref(),
        Event::JobConfigRunFailed(e) => e.job.as_ref(),
        Event::JobConfigFailed(e) => e.job.as_ref(),
        _ => None,
    };
    job.map(|j| j.label.as_str())
}

/// Checks a whole log: every build request's analysis events against the
/// diagrams, and the exactly-once promise ([`check_exactly_once`]).
/// Returns the first violation in log order.
pub fn check_log<'a>(events: impl IntoIterator<Item = &'a BuildEvent>) -> Result<(), LogViolation> {
    let mut diagrams = Diagrams::default();
    let mut once = ExactlyOnce::default();
    for e in events {
        diagrams.event(e)?;
        once.event(e)?;
    }
    Ok(())
}

/// The analysis diagrams, checked one event at a time.
#[derive(Default)]
struct Diagrams<'a> {
    /// Per build request: the last analysis event's kind and the job it
    /// named.
    state: HashMap<&'a str, (&'static str, Option<&'a str>)>,
}

impl<'a> Diagrams<'a> {
    /// Checks `e`; events of kinds other than analysis are skipped.
    fn event(&mut self, e: &'a BuildEvent) -> Result<(), DiagramViolation> {
        let Some(event) = &e.event else {
            return Ok(());
        };
        let kind = event.name();
        if !ANALYSIS.contains(&kind) {
            return Ok(());
        }
        let (after, job) = self
            .state
            .get(e.build_request_id.as_str())
            .copied()
            .unwrap_or(("start", None));
        let expected = allowed(after);
        let violation = |expected: String| DiagramViolation {
            seq: e.seq,
            kind,
            build_request_id: e.build_request_id.clone(),
            after,
            expected,
        };
        if !expected.contains(&kind) {
            return Err(violation(expected.join(", ")));
        }
        let this_job = job_of(event);
        if kind != "partitions_dispatched" && this_job.is_some() && this_job != job {
            return Err(violation(format!(
                "an event of job {}",
                job.unwrap_or("(none)")
            )));
        }
        let job = if kind == "partitions_dispatched" {
            this_job
        } else {
            job
        };
        self.state.insert(e.build_request_id.as_str(), (kind, job));
        Ok(())
    }
}

/// Which half of the exactly-once promise a log breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Breach {
    /// A run marked the partition `Building` while another run that had
    /// marked it `Building` was still live.
    TwoLiveBuilders,
    /// A run made the partition `Available` again in the epoch another
    /// run had already built it, with no taint between and no force.
    BuiltTwice,
}

/// A log that breaks the exactly-once promise (see the
/// [module docs](self)): the partition, and the two runs with the seqs of
/// their status events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.describe())]
#[non_exhaustive]
pub struct ExactlyOnceViolation {
    /// Which half of the promise.
    pub breach: Breach,
    /// The partition.
    pub partition: String,
    /// The run that built it first (or is still building it).
    pub first_run: String,
    /// The seq of the first run's status event: its `Building` mark, or
    /// its `Available` for [`Breach::BuiltTwice`].
    pub first_seq: u64,
    /// The run that built it again.
    pub second_run: String,
    /// The seq of the second run's status event.
    pub second_seq: u64,
}

impl ExactlyOnceViolation {
    fn describe(&self) -> String {
        let Self {
            partition: p,
            first_run,
            first_seq,
            second_run,
            second_seq,
            ..
        } = self;
        match self.breach {
            Breach::TwoLiveBuilders => format!(
                "partition {p} has two live builders: run {second_run} marked it building at seq {second_seq} while run {first_run}, which marked it building at seq {first_seq}, had not ended"
            ),
            Breach::BuiltTwice => format!(
                "partition {p} was built twice in one availability epoch: run {first_run} made it available at seq {first_seq}, run {second_run} again at seq {second_seq}, with no taint between"
            ),
        }
    }
}

/// Checks the exactly-once promise alone (see the [module docs](self)):
/// no two live runs mark one partition `Building`, and no partition is
/// made `Available` twice in one epoch. [`check_log`] checks it too.
pub fn check_exactly_once<'a>(
    events: impl IntoIterator<Item = &'a BuildEvent>,
) -> Result<(), ExactlyOnceViolation> {
    let mut once = ExactlyOnce::default();
    events.into_iter().try_for_each(|e| once.event(e))
}

/// The exactly-once promise, checked one event at a time. Partitions and
/// runs are keyed by the strings the events carry.
#[derive(Default)]
struct ExactlyOnce<'a> {
    /// Requests received with `force`, with the partitions they asked for.
    forced: HashMap<&'a str, HashSet<&'a str>>,
    /// The request that queued each run.
    request_of: HashMap<&'a str, &'a str>,
    /// Runs that marked a partition `Building` and have not ended.
    live: HashSet<&'a str>,
    /// Per partition: the last run that marked it `Building`, with the seq.
    builder: HashMap<&'a str, (&'a str, u64)>,
    /// Per partition: the run that made it `Available` in this epoch, with
    /// the seq.
    built: HashMap<&'a str, (&'a str, u64)>,
}

impl<'a> ExactlyOnce<'a> {
    fn event(&mut self, e: &'a BuildEvent) -> Result<(), ExactlyOnceViolation> {
        if e.origin.is_some() {
            return Ok(());
        }
        let Some(event) = &e.event else {
            return Ok(());
        };
        match event {
            Event::BuildRequestReceived(r) if r.options.is_some_and(|o| o.force) => {
                let asked = r.requested.iter().map(|p| p.str.as_str()).collect();
                self.forced.insert(e.build_request_id.as_str(), asked);
            }
            Event::JobRunQueued(_) => {
                self.request_of
                    .insert(e.job_run_id.as_str(), e.build_request_id.as_str());
            }
            event if event.ends_job_run() => {
                self.live.remove(e.job_run_id.as_str());
            }
            Event::PartitionStatusChanged(p) => {
                let Some(partition) = p.partition.as_ref().map(|r| r.str.as_str()) else {
                    return Ok(());
                };
                let run = if p.job_run_id.is_empty() {
                    e.job_run_id.as_str()
                } else {
                    p.job_run_id.as_str()
                };
                self.status(e, partition, run, p.status)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn status(
        &mut self,
        e: &'a BuildEvent,
        partition: &'a str,
        run: &'a str,
        status: i32,
    ) -> Result<(), ExactlyOnceViolation> {
        let violation = |breach, (first_run, first_seq): (&str, u64)| ExactlyOnceViolation {
            breach,
            partition: partition.to_owned(),
            first_run: first_run.to_owned(),
            first_seq,
            second_run: run.to_owned(),
            second_seq: e.seq,
        };
        match PartitionStatus::try_from(status) {
            Ok(PartitionStatus::Building) => {
                if let Some(&(other, seq)) = self.builder.get(partition)
                    && other != run
                    && self.live.contains(other)
                {
                    return Err(violation(Breach::TwoLiveBuilders, (other, seq)));
                }
                self.builder.insert(partition, (run, e.seq));
                self.live.insert(run);
                if self.forced_for(e, run, partition) {
                    self.built.remove(partition);
                }
            }
            Ok(PartitionStatus::Available) => {
                if let Some(&(other, seq)) = self.built.get(partition)
                    && other != run
                    && !self.forced_for(e, run, partition)
                {
                    return Err(violation(Breach::BuiltTwice, (other, seq)));
                }
                self.built.insert(partition, (run, e.seq));
            }
            Ok(PartitionStatus::Tainted) => {
                self.built.remove(partition);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `run` belongs to a request received with `force` that asked
    /// for `partition` (the run's request is the one that queued it, else
    /// the event's).
    fn forced_for(&self, e: &BuildEvent, run: &str, partition: &str) -> bool {
        let request = self
            .request_of
            .get(run)
            .copied()
            .unwrap_or(e.build_request_id.as_str());
        self.forced
            .get(request)
            .is_some_and(|asked| asked.contains(partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    /// The diagram violation `check_log` finds in `log`.
    fn diagram_err(log: &[BuildEvent]) -> DiagramViolation {
        match check_log(log).unwrap_err() {
            LogViolation::Diagram(d) => d,
            other => panic!("not a diagram violation: {other}"),
        }
    }

    fn ev(seq: u64, event: Event) -> BuildEvent {
        let mut e = BuildEvent::at(1, event).for_request("r");
        e.seq = seq;
        e
    }

    fn label(s: &str) -> Option<proto::JobLabel> {
        Some(proto::JobLabel { label: s.into() })
    }

    fn dispatched(job: &str) -> Event {
        Event::PartitionsDispatched(proto::PartitionsDispatched {
            wave: 0,
            job: label(job),
            refs: vec![],
        })
    }

    fn validated(job: &str) -> Event {
        Event::JobConfigArgsValidated(proto::JobConfigArgsValidated {
            job: label(job),
            outputs: vec![],
        })
    }

    fn succeeded(job: &str) -> Event {
        Event::JobConfigSucceeded(proto::JobConfigSucceeded {
            job: label(job),
            configs: 1,
        })
    }

    fn started() -> Event {
        Event::AnalyzeStarted(proto::AnalyzeStarted::default())
    }

    fn emitted() -> Event {
        Event::JobGraphEmitted(proto::JobGraphEmitted::default())
    }

    #[test]
    fn accepts_a_successful_analysis() {
        let log = [
            ev(1, started()),
            ev(2, dispatched("//a")),
            ev(3, validated("//a")),
            ev(4, succeeded("//a")),
            ev(5, dispatched("//b")),
            ev(6, validated("//b")),
            ev(7, succeeded("//b")),
            ev(8, emitted()),
            ev(9, started()),
            ev(10, emitted()),
        ];
        check_log(&log).unwrap();
    }

    #[test]
    fn rejects_events_out_of_order() {
        let log = [ev(1, started()), ev(2, succeeded("//a"))];
        let err = diagram_err(&log);
        assert_eq!(err.seq, 2);
        assert_eq!(err.after, "analyze_started");
        assert!(
            err.to_string().contains("may not follow analyze_started"),
            "{err}"
        );

        let log = [ev(1, dispatched("//a"))];
        assert_eq!(diagram_err(&log).after, "start");

        let log = [ev(1, started()), ev(2, emitted()), ev(3, dispatched("//a"))];
        assert_eq!(diagram_err(&log).seq, 3);
    }

    #[test]
    fn rejects_config_events_of_another_job() {
        let log = [
            ev(1, started()),
            ev(2, dispatched("//a")),
            ev(3, validated("//b")),
        ];
        let err = diagram_err(&log);
        assert_eq!(err.seq, 3);
        assert!(err.expected.contains("//a"), "{err}");
    }

    #[test]
    fn requests_are_checked_apart() {
        let mut other = BuildEvent::at(1, started()).for_request("other");
        other.seq = 2;
        let log = [ev(1, started()), other, ev(3, emitted())];
        check_log(&log).unwrap();
    }

    /// A log written in order, with seqs from 1.
    #[derive(Default)]
    struct Log(Vec<BuildEvent>);

    impl Log {
        fn push(&mut self, request: &str, run: &str, event: Event) -> &mut Self {
            let mut e = BuildEvent::at(1, event)
                .for_request(request)
                .for_job_run(run);
            e.seq = self.0.len() as u64 + 1;
            self.0.push(e);
            self
        }

        fn request(&mut self, request: &str, asked: &[&str], force: bool) -> &mut Self {
            let received = proto::BuildRequestReceived {
                requested: asked
                    .iter()
                    .map(|p| proto::PartitionRef { str: (*p).into() })
                    .collect(),
                options: Some(proto::BuildOptions {
                    force,
                    keep_going: false,
                }),
            };
            self.push(request, "", Event::BuildRequestReceived(received))
        }

        fn status(&mut self, run: &str, partition: &str, status: PartitionStatus) -> &mut Self {
            let changed = proto::PartitionStatusChanged {
                partition: Some(proto::PartitionRef {
                    str: partition.into(),
                }),
                status: status as i32,
                job_run_id: run.into(),
            };
            let request = self.request_of(run);
            self.push(&request, run, Event::PartitionStatusChanged(changed))
        }

        /// The request of the event that queued `run`.
        fn request_of(&self, run: &str) -> String {
            self.0
                .iter()
                .find(|e| e.job_run_id == run && e.kind() == "job_run_queued")
                .map(|e| e.build_request_id.clone())
                .unwrap_or_default()
        }

        /// `run` of `request` queued, scheduled and building `partition`.
        fn building(&mut self, request: &str, run: &str, partition: &str) -> &mut Self {
            self.push(
                request,
                run,
                Event::JobRunQueued(proto::JobRunQueued::default()),
            );
            let scheduled = proto::JobScheduled {
                job_run_id: run.into(),
            };
            self.push(request, run, Event::JobScheduled(scheduled));
            self.status(run, partition, PartitionStatus::Building)
        }

        fn ended(&mut self, run: &str, event: Event) -> &mut Self {
            let request = self.request_of(run);
            self.push(&request, run, event)
        }

        fn built(&mut self, run: &str, partition: &str) -> &mut Self {
            self.ended(
                run,
                Event::JobRunSucceeded(proto::JobRunSucceeded { manifest: None }),
            )
            .status(run, partition, PartitionStatus::Available)
        }

        fn failed(&mut self, run: &str, partition: &str) -> &mut Self {
            let failed = proto::JobRunFailed {
                stage: proto::FailureStage::Task as i32,
                reason: "exit 1".into(),
                retryable: true,
            };
            self.ended(run, Event::JobRunFailed(failed)).status(
                run,
                partition,
                PartitionStatus::Failed,
            )
        }

        fn check(&self) -> Result<(), ExactlyOnceViolation> {
            let alone = check_exactly_once(&self.0);
            match check_log(&self.0) {
                Ok(()) => assert_eq!(alone, Ok(())),
                Err(LogViolation::ExactlyOnce(v)) => assert_eq!(alone, Err(v)),
                Err(other) => panic!("another violation: {other}"),
            }
            alone
        }
    }

    #[test]
    fn accepts_a_retry_after_a_failure() {
        let mut log = Log::default();
        log.request("q", &["a/1"], false)
            .building("q", "r1", "a/1")
            .failed("r1", "a/1")
            .building("q", "r2", "a/1")
            .built("r2", "a/1");
        log.check().unwrap();
    }

    #[test]
    fn accepts_a_rebuild_after_a_taint() {
        let mut log = Log::default();
        log.request("q1", &["a/1"], false)
            .building("q1", "r1", "a/1")
            .built("r1", "a/1")
            .status("", "a/1", PartitionStatus::Tainted)
            .request("q2", &["a/1"], false)
            .building("q2", "r2", "a/1")
            .built("r2", "a/1");
        log.check().unwrap();
    }

    #[test]
    fn accepts_a_forced_rebuild_of_what_was_asked() {
        let mut log = Log::default();
        log.request("q1", &["a/1"], false)
            .building("q1", "r1", "a/1")
            .built("r1", "a/1")
            .request("q2", &["a/1"], true)
            .building("q2", "r2", "a/1")
            .built("r2", "a/1");
        log.check().unwrap();
        // A forced run that fails leaves the partition to be built again.
        log.request("q3", &["a/1"], true)
            .building("q3", "r3", "a/1")
            .failed("r3", "a/1")
            .request("q4", &["a/1"], false)
            .building("q4", "r4", "a/1")
            .built("r4", "a/1");
        log.check().unwrap();
    }

    #[test]
    fn accepts_a_new_run_after_a_lost_one() {
        let mut log = Log::default();
        log.request("q", &["a/1"], false)
            .building("q", "r1", "a/1")
            .ended(
                "r1",
                Event::JobRunLost(proto::JobRunLost { last_seen_ns: 1 }),
            )
            .status("r1", "a/1", PartitionStatus::Failed)
            .building("q", "r2", "a/1")
            .built("r2", "a/1");
        log.check().unwrap();
    }

    #[test]
    fn rejects_two_live_builders() {
        let mut log = Log::default();
        log.request("q1", &["b/1"], false)
            .request("q2", &["c/1"], false)
            .building("q1", "r1", "a/1")
            .building("q2", "r2", "a/1");
        let err = log.check().unwrap_err();
        assert_eq!(
            err,
            ExactlyOnceViolation {
                breach: Breach::TwoLiveBuilders,
                partition: "a/1".into(),
                first_run: "r1".into(),
                first_seq: 5,
                second_run: "r2".into(),
                second_seq: 8,
            }
        );
        assert!(err.to_string().contains("two live builders"), "{err}");
        // Force does not make room for a second builder.
        let mut log = Log::default();
        log.request("q1", &["a/1"], false)
            .request("q2", &["a/1"], true)
            .building("q1", "r1", "a/1")
            .building("q2", "r2", "a/1");
        assert_eq!(log.check().unwrap_err().breach, Breach::TwoLiveBuilders);
    }

    #[test]
    fn rejects_a_second_build_in_one_epoch() {
        let mut log = Log::default();
        log.request("q1", &["b/1"], false)
            .request("q2", &["c/1"], false)
            .building("q1", "r1", "a/1")
            .built("r1", "a/1")
            .building("q2", "r2", "a/1")
            .built("r2", "a/1");
        let err = log.check().unwrap_err();
        assert_eq!(err.breach, Breach::BuiltTwice);
        assert_eq!(err.partition, "a/1");
        assert_eq!((err.first_run.as_str(), err.first_seq), ("r1", 7));
        assert_eq!((err.second_run.as_str(), err.second_seq), ("r2", 12));
        assert!(err.to_string().contains("no taint between"), "{err}");
    }

    #[test]
    fn force_covers_only_what_was_asked() {
        let mut log = Log::default();
        log.request("q1", &["a/1"], false)
            .building("q1", "r1", "a/1")
            .built("r1", "a/1")
            .request("q2", &["b/1"], true)
            .building("q2", "r2", "a/1")
            .built("r2", "a/1");
        assert_eq!(log.check().unwrap_err().breach, Breach::BuiltTwice);
    }

    #[test]
    fn relayed_events_are_left_to_the_outer_run() {
        let mut log = Log::default();
        log.request("q", &["a/1"], false)
            .building("q", "node", "a/1");
        for (i, run) in ["inner1", "inner2"].into_iter().enumerate() {
            let changed = proto::PartitionStatusChanged {
                partition: Some(proto::PartitionRef { str: "a/1".into() }),
                status: PartitionStatus::Available as i32,
                job_run_id: run.into(),
            };
            log.push("on-node", run, Event::PartitionStatusChanged(changed));
            log.0.last_mut().unwrap().origin = Some(proto::EventOrigin {
                node: "node".into(),
                seq: i as u64 + 1,
            });
        }
        log.built("node", "a/1");
        log.check().unwrap();
    }
}
