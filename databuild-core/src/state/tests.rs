use super::*;
use crate::proto::FailureStage;

/// A log builder: events get consecutive seqs and time.
#[derive(Default)]
struct Log(Vec<BuildEvent>);

impl Log {
    fn push(&mut self, request: &str, run: &str, event: Event) -> &mut Self {
        let n = self.0.len() as u64 + 1;
        let mut e = BuildEvent::at(n as i64 * 10, event)
            .for_request(request)
            .for_job_run(run);
        e.seq = n;
        self.0.push(e);
        self
    }
}

fn r(s: &str) -> proto::PartitionRef {
    proto::PartitionRef { str: s.into() }
}

fn queued(attempt: u32, previous: &str) -> Event {
    Event::JobRunQueued(proto::JobRunQueued {
        task: Some(Box::default()),
        attempt,
        previous_job_run_id: previous.into(),
    })
}

fn scheduled(run: &str) -> Event {
    Event::JobScheduled(proto::JobScheduled {
        job_run_id: run.into(),
    })
}

fn running() -> Event {
    Event::JobRunRunning(proto::JobRunRunning::default())
}

fn status(p: &str, s: PartitionStatus, run: &str) -> Event {
    Event::PartitionStatusChanged(proto::PartitionStatusChanged {
        partition: Some(r(p)),
        status: s as i32,
        job_run_id: run.into(),
    })
}

fn successful_build() -> Log {
    let mut log = Log::default();
    log.push(
        "q",
        "",
        Event::BuildRequestReceived(proto::BuildRequestReceived {
            requested: vec![r("b/1")],
            options: None,
        }),
    )
    .push("q", "", Event::BuildPlanning(proto::BuildPlanning {}))
    .push(
        "q",
        "",
        Event::BuildExecuting(proto::BuildExecuting::default()),
    )
    .push("q", "r1", queued(1, ""))
    .push("q", "r1", scheduled("r1"))
    .push(
        "q",
        "r1",
        Event::JobRunConfigValidated(proto::JobRunConfigValidated {}),
    )
    .push("q", "r1", status("b/1", PartitionStatus::Building, "r1"))
    .push("q", "r1", running())
    .push(
        "q",
        "r1",
        Event::JobRunHeartbeat(proto::JobRunHeartbeat {
            cpu_ms: 1,
            rss_bytes: 2,
        }),
    )
    .push(
        "q",
        "r1",
        Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {}),
    )
    .push(
        "q",
        "r1",
        Event::JobRunSucceeded(proto::JobRunSucceeded::default()),
    )
    .push("q", "r1", status("b/1", PartitionStatus::Available, "r1"))
    .push(
        "q",
        "",
        Event::BuildSucceeded(proto::BuildSucceeded::default()),
    );
    log
}

#[test]
fn replays_a_successful_build() {
    let log = successful_build();
    let state = BuildState::replay(&log.0).unwrap();
    assert_eq!(state.last_seq(), 13);
    let run = state.run("r1").unwrap();
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.started_by, "q");
    assert_eq!(run.waiters, ["q".to_owned()].into());
    assert_eq!(run.last_seen_ns, 110);
    assert_eq!(state.request("q").unwrap().state, RequestState::Succeeded);
    let b1 = PartitionRef::new("b/1").unwrap();
    assert_eq!(
        state.partition(&b1).unwrap().status,
        PartitionStatus::Available
    );
    assert_eq!(state.status(&b1), PartitionStatusView::Available);
    assert_eq!(
        state.status(&PartitionRef::new("z").unwrap()),
        PartitionStatusView::Missing
    );
}

#[test]
fn live_and_replayed_states_are_equal() {
    let log = successful_build();
    let mut live = BuildState::new();
    for e in &log.0 {
        live.apply(e).unwrap();
    }
    assert_eq!(live, BuildState::replay(&log.0).unwrap());
}

fn violation(log: &Log) -> Violation {
    BuildState::replay(&log.0).unwrap_err()
}

#[test]
fn rejects_success_before_running() {
    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push("q", "r1", scheduled("r1"))
        .push(
            "q",
            "r1",
            Event::JobRunTaskSucceeded(proto::JobRunTaskSucceeded {}),
        );
    let v = violation(&log);
    assert_eq!((v.seq, v.kind), (3, "job_run_task_succeeded"));
    assert!(v.reason.contains("is Scheduled"), "{v}");
}

#[test]
fn rejects_two_terminal_events_and_fences_late_updates() {
    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push("q", "r1", scheduled("r1"))
        .push("q", "r1", running())
        .push(
            "q",
            "r1",
            Event::JobRunLost(proto::JobRunLost { last_seen_ns: 5 }),
        )
        .push(
            "q",
            "r1",
            Event::JobRunHeartbeat(proto::JobRunHeartbeat::default()),
        );
    let v = violation(&log);
    assert_eq!(v.seq, 5);
    assert!(v.reason.contains("fenced"), "{v}");

    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push(
            "q",
            "r1",
            Event::JobRunCanceled(proto::JobRunCanceled::default()),
        )
        .push(
            "q",
            "r1",
            Event::JobRunCanceled(proto::JobRunCanceled::default()),
        );
    assert_eq!(violation(&log).seq, 3);
}

#[test]
fn failure_chains_follow_the_diagram() {
    // launch failure -> job exec failure
    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push("q", "r1", scheduled("r1"))
        .push(
            "q",
            "r1",
            Event::JobRunLaunchFailed(proto::JobRunLaunchFailed::default()),
        )
        .push(
            "q",
            "r1",
            Event::JobRunFailed(proto::JobRunFailed {
                stage: FailureStage::Launch as i32,
                reason: "no such file".into(),
                retryable: false,
            }),
        );
    let state = BuildState::replay(&log.0).unwrap();
    assert_eq!(state.run("r1").unwrap().state, RunState::Failed);
    assert_eq!(
        state.run("r1").unwrap().failure.as_deref(),
        Some("no such file")
    );

    // A task failure must be followed by JobRunFailed, not a success.
    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push("q", "r1", scheduled("r1"))
        .push("q", "r1", running())
        .push(
            "q",
            "r1",
            Event::JobRunTaskFailed(proto::JobRunTaskFailed::default()),
        )
        .push(
            "q",
            "r1",
            Event::JobRunSucceeded(proto::JobRunSucceeded::default()),
        );
    assert_eq!(violation(&log).seq, 5);

    // A timeout fails a running run directly; a plain failure may not.
    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push("q", "r1", scheduled("r1"))
        .push("q", "r1", running())
        .push(
            "q",
            "r1",
            Event::JobRunKillRequested(proto::JobRunKillRequested::default()),
        )
        .push(
            "q",
            "r1",
            Event::JobRunFailed(proto::JobRunFailed {
                stage: FailureStage::Timeout as i32,
                reason: "timeout".into(),
                retryable: true,
            }),
        );
    let state = BuildState::replay(&log.0).unwrap();
    assert!(!state.run("r1").unwrap().kill_requested);
    let mut log = Log::default();
    log.push("q", "r1", queued(1, ""))
        .push("q", "r1", scheduled("r1"))
        .push("q", "r1", running())
        .push(
            "q",
            "r1",
            Event::JobRunFailed(proto::JobRunFailed {
                stage: FailureStage::Task as i32,
                ..Default::default()
            }),
        );
    assert_eq!(violation(&log).seq, 4);
}

#[test]
fn retries_are_new_runs_and_waiters_are_tracked() {
    let mut log = Log::default();
    log.push("a", "r1", queued(1, ""))
        .push(
            "b",
            "r1",
            Event::JobRunAttached(proto::JobRunAttached::default()),
        )
        .push(
            "a",
            "r1",
            Event::JobRunDetached(proto::JobRunDetached::default()),
        )
        .push("a", "r2", queued(2, "r1"));
    let state = BuildState::replay(&log.0).unwrap();
    assert_eq!(state.run("r1").unwrap().waiters, ["b".to_owned()].into());
    let r2 = state.run("r2").unwrap();
    assert_eq!(
        (r2.attempt, r2.previous_job_run_id.as_deref()),
        (2, Some("r1"))
    );
    assert_eq!(state.runs().count(), 2);

    let mut log = Log::default();
    log.push("a", "r1", queued(1, ""))
        .push("a", "r1", queued(1, ""));
    assert!(violation(&log).reason.contains("queued twice"));
    let mut log = Log::default();
    log.push("a", "ghost", running());
    assert!(violation(&log).reason.contains("no job run \"ghost\""));
}

#[test]
fn requests_and_seqs_are_checked() {
    let mut log = Log::default();
    log.push(
        "q",
        "",
        Event::BuildSucceeded(proto::BuildSucceeded::default()),
    );
    assert!(violation(&log).reason.contains("no build request"));

    let mut log = Log::default();
    log.push(
        "q",
        "",
        Event::BuildRequestReceived(proto::BuildRequestReceived::default()),
    )
    .push(
        "q",
        "",
        Event::BuildExecuting(proto::BuildExecuting::default()),
    );
    assert!(violation(&log).reason.contains("is Received"));

    let mut log = successful_build();
    log.0[5].seq = 3;
    assert!(violation(&log).reason.contains("does not follow"));

    let mut state = BuildState::new();
    let before = state.clone();
    let bad = BuildEvent::at(0, running()).for_job_run("nope");
    assert!(state.apply(&bad).is_err());
    assert_eq!(state, before, "a violation leaves the state unchanged");
}

/// Events relayed from a node agent are a record of the node's work: they
/// change nothing but the node run's progress, each is recorded once, and
/// they must come from a run of the log (replayed whole or page by page).
#[test]
fn relayed_events_are_recorded_once_and_change_only_the_nodes_progress() {
    let mut log = Log::default();
    log.push("q", "node", queued(1, ""));
    let relayed = |log: &mut Log, seq: u64, run: &str, event: Event| {
        log.push("agent-request", run, event);
        let e = log.0.last_mut().unwrap();
        e.origin = Some(proto::EventOrigin {
            node: "node".into(),
            seq,
        });
    };
    relayed(&mut log, 1, "inner", queued(1, ""));
    relayed(&mut log, 2, "inner", scheduled("inner"));
    let state = BuildState::replay(&log.0).unwrap();
    assert!(
        state.run("inner").is_none(),
        "the node's runs stay the node's"
    );
    assert_eq!(state.run("node").unwrap().relayed_seq, 2);
    assert_eq!(state.runs().count(), 1);
    let mut owned = BuildState::new();
    for e in log.0.clone() {
        owned.apply_owned(e).unwrap();
    }
    assert_eq!(owned, state);

    // The same event of the node again is refused, naming it.
    let mut again = Log(log.0.clone());
    relayed(&mut again, 2, "inner", scheduled("inner"));
    let err = BuildState::replay(&again.0).unwrap_err();
    assert!(err.to_string().contains("relayed again"), "{err}");

    // A node that is no run of the log.
    let mut stray = Log::default();
    stray.push("agent-request", "inner", queued(1, ""));
    stray.0[0].origin = Some(proto::EventOrigin {
        node: "nobody".into(),
        seq: 1,
    });
    let err = BuildState::replay(&stray.0).unwrap_err();
    assert!(err.to_string().contains("no job run of this log"), "{err}");
}
