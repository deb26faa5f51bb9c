//! `databuild status`: the partition catalog in short, and the open build
//! requests.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use databuild_core::PartitionPattern;
use databuild_core::state::BuildRequest;

use crate::CliError;
use crate::control::{self, ControlOp, ControlReply};
use crate::home::Home;

pub(super) async fn run(home: &Home, pattern: Option<&str>) -> Result<ExitCode, CliError> {
    let pattern = pattern.map(PartitionPattern::new).transpose()?;
    let bel = home.reader()?;
    let state = super::state_of(&bel).await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut listed = Vec::new();
    for (p, entry) in state.partitions() {
        if let Some(pattern) = &pattern
            && !pattern.is_match(p)
        {
            continue;
        }
        let status = super::status_name(entry.status as i32);
        *counts.entry(status.clone()).or_default() += 1;
        if pattern.is_some() {
            listed.push((p.to_string(), status, entry.job_run_id.clone()));
        }
    }
    let total: usize = counts.values().sum();
    let by_state: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "{total} partition(s){}{}",
        if total > 0 { ": " } else { "" },
        by_state.join(", ")
    );
    let requests: Vec<_> = state.requests().collect();
    let open = requests.iter().filter(|r| !r.is_terminal()).count();
    println!(
        "{} build request(s), {open} open; {} job run(s); last event {}",
        requests.len(),
        state.runs().count(),
        state.last_seq()
    );
    if open > 0 {
        let live = live_requests(home).await;
        let mut open: Vec<&&BuildRequest> = requests.iter().filter(|r| !r.is_terminal()).collect();
        open.sort_by(|a, b| a.build_request_id.cmp(&b.build_request_id));
        for r in open {
            println!("{}", open_line(r, &live));
        }
    }
    listed.sort();
    for (p, status, run) in listed {
        println!("{status:<10} {p}  {run}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `status` waits for the build holding the store to say what it
/// runs (it never waits longer for a busy build).
const LIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the build holding the store says it runs.
enum Holder {
    /// It answered: these requests.
    Runs(Vec<String>),
    /// A socket is bound but its build did not say in time (it is
    /// loading the store, say, or speaks another version).
    Silent,
    /// No build listens: none holds the store, or one is stopping.
    Absent,
}

/// Asks the build holding the store, if any, what it runs.
async fn live_requests(home: &Home) -> Holder {
    let socket = home.control_socket();
    match tokio::time::timeout(LIVE_TIMEOUT, control::send(&socket, ControlOp::Live)).await {
        Ok(Ok(ControlReply {
            ok: true,
            live: Some(live),
            ..
        })) => Holder::Runs(live),
        // Another version, say.
        Ok(Ok(_)) => Holder::Silent,
        Ok(Err(_)) => Holder::Absent,
        Err(_) => Holder::Silent,
    }
}

/// One open request: its id, its state, what it asked for, and who runs
/// it.
fn open_line(r: &BuildRequest, holder: &Holder) -> String {
    let id = &r.build_request_id;
    let mut state = format!("{:?}", r.state).to_ascii_lowercase();
    if r.stopping {
        state.push_str(", ending");
    }
    const SHOWN: usize = 3;
    let mut asked: Vec<String> = r
        .requested
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect();
    if r.requested.len() > SHOWN {
        asked.push(format!("and {} more", r.requested.len() - SHOWN));
    }
    if r.options.force {
        asked.push("--force".into());
    }
    if r.options.keep_going {
        asked.push("--keep-going".into());
    }
    let who = match holder {
        Holder::Runs(live) if live.contains(id) => "run by the build holding the store".to_owned(),
        Holder::Silent => {
            "the build holding the store did not say whether it runs it (it may be starting)"
                .to_owned()
        }
        Holder::Runs(_) | Holder::Absent => format!(
            "left open by a build that stopped: the next `databuild build` takes it up, `databuild cancel {id}` drops it"
        ),
    };
    format!("open request {id} ({state}): {}; {who}", asked.join(" "))
}
