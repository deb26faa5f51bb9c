//! `databuild explain <ref>`: why a partition is, or is not, built.

use std::path::Path;
use std::process::ExitCode;

use databuild_core::bel::Event;
use databuild_core::state::{JobRun, RunState};
use databuild_core::{EventFilter, PartitionRef};

use crate::CliError;
use crate::graph_file::GraphFile;
use crate::home::Home;

pub(super) async fn run(home: &Home, graph: &Path, partition: &str) -> Result<ExitCode, CliError> {
    let p = PartitionRef::new(partition)?;
    let bel = home.reader()?;
    let state = super::state_of(&bel).await?;

    // Its job, from the graph file when there is one.
    if graph.exists() {
        match GraphFile::read(graph).and_then(|f| f.graph()) {
            Ok(g) => match g.lookup(&p) {
                Ok(job) => println!("{p} is built by job {}", job.label()),
                Err(e) => println!("{p}: {e}"),
            },
            Err(e) => println!("(the graph file does not load: {e})"),
        }
    }

    let mut runs: Vec<&JobRun> = state
        .runs()
        .filter(|r| {
            r.task
                .config
                .as_ref()
                .is_some_and(|c| c.outputs.iter().any(|o| o.str == p.as_str()))
        })
        .collect();
    runs.sort_by_key(|r| r.last_seen_ns);

    match state.partition(&p) {
        None if runs.is_empty() => {
            println!("{p} has never been asked for: no build planned it.");
            println!("  build it: databuild build '{p}'");
            return Ok(ExitCode::SUCCESS);
        }
        None => println!("{p} is not built yet."),
        Some(entry) => {
            let status = super::status_name(entry.status as i32);
            if entry.job_run_id.is_empty() {
                println!("{p} is {status}.");
            } else {
                println!("{p} is {status} (job run {}).", entry.job_run_id);
            }
            if status == "tainted" {
                println!("  it was marked invalid: the next build that needs it rebuilds it");
            }
        }
    }

    if !runs.is_empty() {
        println!("job runs that build it:");
    }
    for r in &runs {
        let job = r.task.job.as_ref().map_or("", |j| j.label.as_str());
        println!(
            "  {} {job} attempt {} {:?}, for build request {}{}",
            r.job_run_id,
            r.attempt,
            r.state,
            r.started_by,
            r.failure
                .as_ref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
        let waiters: Vec<&str> = r
            .waiters
            .iter()
            .filter(|w| **w != r.started_by)
            .map(String::as_str)
            .collect();
        if !waiters.is_empty() {
            println!(
                "    also waited on by build request(s) {}",
                waiters.join(", ")
            );
        }
    }

    if let Some(last) = runs.last() {
        match last.state {
            RunState::Failed | RunState::Lost | RunState::Canceled => {
                let tail = super::log_tail(home, &last.job_run_id, 10);
                if tail.is_empty() {
                    println!("its last run left no log lines");
                } else {
                    println!("the last lines of its last run's log:");
                    for l in tail {
                        println!("  | {l}");
                    }
                }
                println!("  whole log: databuild logs {}", last.job_run_id);
            }
            RunState::Queued | RunState::Scheduled | RunState::Running => {
                let inputs: Vec<String> = last
                    .task
                    .config
                    .as_ref()
                    .map(|c| {
                        c.inputs
                            .iter()
                            .filter_map(|d| d.partition_ref.as_ref())
                            .map(|i| {
                                let status = PartitionRef::new(&i.str)
                                    .ok()
                                    .and_then(|i| state.partition(&i).map(|e| e.status as i32))
                                    .map_or_else(|| "not built".into(), super::status_name);
                                format!("{} ({status})", i.str)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if last.state == RunState::Queued && !inputs.is_empty() {
                    println!("it waits for a slot; its inputs: {}", inputs.join(", "));
                } else if !inputs.is_empty() {
                    println!("its inputs: {}", inputs.join(", "));
                }
            }
            _ => {}
        }
    }

    // Delegations: builds that reused it rather than building it again.
    let filter = EventFilter::all().with_kinds(["partition_delegated", "job_skipped"]);
    let reused = crate::home::read_all(&bel, 0, &filter).await?;
    let mut lines = Vec::new();
    for e in &reused {
        match &e.event {
            Some(Event::PartitionDelegated(d))
                if d.partition.as_ref().is_some_and(|x| x.str == p.as_str()) =>
            {
                lines.push(if d.historical {
                    format!(
                        "  build request {} found it already built by build request {} (job run {})",
                        e.build_request_id, d.to_build_request_id, d.to_job_run_id
                    )
                } else {
                    format!(
                        "  build request {} waited for it on build request {}'s job run {}",
                        e.build_request_id, d.to_build_request_id, d.to_job_run_id
                    )
                });
            }
            Some(Event::JobSkipped(s)) if s.partitions.iter().any(|x| x.str == p.as_str()) => {
                lines.push(format!(
                    "  build request {} skipped it: already built by job run {}",
                    e.build_request_id, s.built_by_job_run_id
                ));
            }
            _ => {}
        }
    }
    lines.dedup();
    if !lines.is_empty() {
        println!("reused by later builds:");
        for l in lines.iter().rev().take(10).rev() {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
