//! A build request in the Chrome trace event format, which Perfetto
//! (<https://ui.perfetto.dev>) and `chrome://tracing` open: one track per
//! slot, one slice per job run (a `B` and an `E` event), instant events
//! for heartbeats and failures. Times are microseconds from the request's
//! start.

use serde_json::{Value, json};

use crate::timeline::{RunEnd, Timeline};

/// The trace of `timeline`, as a JSON object (`{"traceEvents": [...]}`).
pub fn chrome_trace(timeline: &Timeline) -> Value {
    let us = |ns: i64| (ns - timeline.start_ns).max(0) / 1_000;
    let pid = 1;
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
        "args": {"name": format!("build {}", timeline.build_request_id)},
    })];
    for lane in 0..timeline.lanes() {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": pid, "tid": lane + 1,
            "args": {"name": format!("slot {}", lane + 1)},
        }));
    }
    // Per track, sorted by time with an end before a begin at the same
    // time, so slices nest as the format requires.
    let mut timed: Vec<(usize, i64, u8, Value)> = Vec::new();
    for run in &timeline.runs {
        let Some(start) = run.start_ns else { continue };
        let tid = run.lane + 1;
        let end = timeline.bar_end(run);
        let name = format!("{} {}", run.job_label, first_output(&run.outputs));
        let args = json!({
            "job_run_id": run.job_run_id,
            "job": run.job_label,
            "outputs": run.outputs,
            "attempt": run.attempt,
            "outcome": run.end.word(),
        });
        timed.push((
            tid,
            us(start),
            1,
            json!({
                "name": name, "cat": "job_run", "ph": "B", "ts": us(start),
                "pid": pid, "tid": tid, "args": args,
            }),
        ));
        for &beat in &run.heartbeats {
            timed.push((
                tid,
                us(beat),
                2,
                json!({
                    "name": "heartbeat", "cat": "heartbeat", "ph": "i", "s": "t",
                    "ts": us(beat), "pid": pid, "tid": tid,
                }),
            ));
        }
        let failure = match &run.end {
            RunEnd::Failed(reason) => Some(reason.clone()),
            RunEnd::Canceled | RunEnd::Lost => Some(run.end.word().to_owned()),
            _ => None,
        };
        if let Some(reason) = failure {
            timed.push((
                tid,
                us(end),
                2,
                json!({
                    "name": format!("{}: {}", run.end.word(), run.job_label),
                    "cat": "failure", "ph": "i", "s": "t", "ts": us(end),
                    "pid": pid, "tid": tid,
                    "args": {"job_run_id": run.job_run_id, "reason": reason},
                }),
            ));
        }
        timed.push((
            tid,
            us(end),
            0,
            json!({
                "name": name, "cat": "job_run", "ph": "E", "ts": us(end),
                "pid": pid, "tid": tid,
            }),
        ));
    }
    // An end goes before anything else at its time on its track; an
    // instant goes inside the slice it belongs to (after the begin).
    timed.sort_by_key(|(tid, ts, order, _)| (*tid, *ts, *order));
    events.extend(timed.into_iter().map(|(_, _, _, v)| v));
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "build_request_id": timeline.build_request_id,
            "requested": timeline.requested,
            "outcome": timeline.outcome,
        },
    })
}

/// The first output, with `+N` when there are more.
pub(crate) fn first_output(outputs: &[String]) -> String {
    match outputs {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

/// Checks `trace` against the trace event format: every event has `name`,
/// `ph`, `pid`, `tid` (and `ts` unless metadata), and on each track every
/// `E` closes the latest open `B` of the same name, with time never going
/// back. Returns what is wrong (empty when nothing is).
pub fn validate(trace: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(events) = trace.get("traceEvents").and_then(Value::as_array) else {
        return vec!["no traceEvents array".into()];
    };
    let mut open: std::collections::HashMap<(i64, i64), Vec<(String, f64)>> =
        std::collections::HashMap::new();
    let mut last: std::collections::HashMap<(i64, i64), f64> = std::collections::HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let ph = e.get("ph").and_then(Value::as_str).unwrap_or("");
        for field in ["name", "ph", "pid", "tid"] {
            if e.get(field).is_none() {
                problems.push(format!("event {i} has no {field}"));
            }
        }
        if ph == "M" {
            continue;
        }
        let Some(ts) = e.get("ts").and_then(Value::as_f64) else {
            problems.push(format!("event {i} ({ph}) has no ts"));
            continue;
        };
        let track = (
            e.get("pid").and_then(Value::as_i64).unwrap_or(-1),
            e.get("tid").and_then(Value::as_i64).unwrap_or(-1),
        );
        if last.get(&track).is_some_and(|&t| t > ts) {
            problems.push(format!("event {i}: time goes back on track {track:?}"));
        }
        last.insert(track, ts);
        let name = e
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match ph {
            "B" => open.entry(track).or_default().push((name, ts)),
            "E" => match open.entry(track).or_default().pop() {
                Some((begun, _)) if begun == name => {}
                Some((begun, _)) => {
                    problems.push(format!("event {i}: E {name:?} closes B {begun:?}"));
                }
                None => problems.push(format!("event {i}: E {name:?} with no open B")),
            },
            "i" | "I" | "X" | "C" => {}
            other => problems.push(format!("event {i}: unknown phase {other:?}")),
        }
    }
    for (track, stack) in open {
        for (name, _) in stack {
            problems.push(format!("B {name:?} on track {track:?} never ends"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use databuild_core::bel::{BuildEvent, Event};
    use databuild_core::proto;

    fn ev(at: i64, run: &str, e: Event) -> BuildEvent {
        BuildEvent::at(at * 1_000_000, e)
            .for_request("b1")
            .for_job_run(run)
    }

    fn queued(at: i64, run: &str, out: &str) -> BuildEvent {
        ev(
            at,
            run,
            Event::JobRunQueued(proto::JobRunQueued {
                task: Some(Box::new(proto::Task {
                    job: Some(proto::JobLabel {
                        label: "//j".into(),
                    }),
                    config: Some(proto::JobConfig {
                        outputs: vec![proto::PartitionRef { str: out.into() }],
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                attempt: 1,
                previous_job_run_id: String::new(),
            }),
        )
    }

    fn running(at: i64, run: &str) -> BuildEvent {
        ev(
            at,
            run,
            Event::JobRunRunning(proto::JobRunRunning::default()),
        )
    }

    #[test]
    fn overlapping_runs_get_tracks_and_slices_nest() {
        let events = vec![
            ev(
                0,
                "",
                Event::BuildRequestReceived(proto::BuildRequestReceived::default()),
            ),
            queued(1, "r1", "a"),
            queued(1, "r2", "b"),
            queued(1, "r3", "c"),
            running(2, "r1"),
            running(3, "r2"),
            ev(
                4,
                "r2",
                Event::JobRunHeartbeat(proto::JobRunHeartbeat::default()),
            ),
            ev(
                5,
                "r1",
                Event::JobRunSucceeded(proto::JobRunSucceeded::default()),
            ),
            running(5, "r3"),
            ev(
                6,
                "r2",
                Event::JobRunFailed(proto::JobRunFailed {
                    reason: "exit 1".into(),
                    ..Default::default()
                }),
            ),
            ev(
                7,
                "r3",
                Event::JobRunSucceeded(proto::JobRunSucceeded::default()),
            ),
            ev(
                8,
                "",
                Event::BuildFailed(proto::BuildFailed {
                    reason: "r2".into(),
                }),
            ),
        ];
        let t = Timeline::from_events("b1", &events);
        assert_eq!(t.lanes(), 2);
        assert_eq!(t.runs[0].lane, t.runs[2].lane, "r3 reuses r1's slot");
        let trace = chrome_trace(&t);
        let problems = crate::trace::validate(&trace);
        assert!(problems.is_empty(), "{problems:?}");
        let evs = trace["traceEvents"].as_array().unwrap();
        assert_eq!(evs.iter().filter(|e| e["ph"] == "B").count(), 3);
        assert_eq!(evs.iter().filter(|e| e["cat"] == "heartbeat").count(), 1);
        assert_eq!(evs.iter().filter(|e| e["cat"] == "failure").count(), 1);
    }
}
