//! `databuild status`: the partition catalog in short.

use std::collections::BTreeMap;
use std::process::ExitCode;

use databuild_core::PartitionPattern;

use crate::CliError;
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
    listed.sort();
    for (p, status, run) in listed {
        println!("{status:<10} {p}  {run}");
    }
    Ok(ExitCode::SUCCESS)
}
