//! Checks that a log obeys the seeds' state diagrams.
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

use std::collections::HashMap;

use thiserror::Error;

use super::{BuildEvent, Event};

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

/// Checks every build request's analysis events against the diagrams.
/// Events of other kinds are skipped, so a whole log can be checked.
pub fn check_log<'a>(
    events: impl IntoIterator<Item = &'a BuildEvent>,
) -> Result<(), DiagramViolation> {
    // Per build request: the last analysis event's kind and the job it named.
    let mut state: HashMap<&str, (&'static str, Option<&str>)> = HashMap::new();
    for e in events {
        let Some(event) = &e.event else { continue };
        let kind = event.name();
        if !ANALYSIS.contains(&kind) {
            continue;
        }
        let (after, job) = state
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
        state.insert(e.build_request_id.as_str(), (kind, job));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

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
        let err = check_log(&log).unwrap_err();
        assert_eq!(err.seq, 2);
        assert_eq!(err.after, "analyze_started");
        assert!(
            err.to_string().contains("may not follow analyze_started"),
            "{err}"
        );

        let log = [ev(1, dispatched("//a"))];
        assert_eq!(check_log(&log).unwrap_err().after, "start");

        let log = [ev(1, started()), ev(2, emitted()), ev(3, dispatched("//a"))];
        assert_eq!(check_log(&log).unwrap_err().seq, 3);
    }

    #[test]
    fn rejects_config_events_of_another_job() {
        let log = [
            ev(1, started()),
            ev(2, dispatched("//a")),
            ev(3, validated("//b")),
        ];
        let err = check_log(&log).unwrap_err();
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
}
