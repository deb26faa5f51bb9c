//! `databuild trace` and `databuild report`: pictures of one build request.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use crate::CliError;
use crate::home::Home;
use crate::timeline::{RunEnd, Timeline};

async fn timeline(home: &Home, id: &str) -> Result<Timeline, CliError> {
    let bel = home.reader()?;
    Timeline::load(&bel, id).await.map_err(|e| match e {
        CliError::UnknownBuildRequest { id, .. } => CliError::UnknownBuildRequest {
            id,
            home: home.dir().to_path_buf(),
        },
        other => other,
    })
}

pub(super) async fn trace(home: &Home, id: &str, output: &Path) -> Result<ExitCode, CliError> {
    let t = timeline(home, id).await?;
    let trace = crate::trace::chrome_trace(&t);
    let text = serde_json::to_string(&trace).map_err(|e| CliError::Io {
        path: output.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(output, text).map_err(CliError::io(output))?;
    println!(
        "wrote {} ({} job run(s) on {} slot track(s)); open it in https://ui.perfetto.dev",
        output.display(),
        t.runs.len(),
        t.lanes()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn report(home: &Home, id: &str, output: &Path) -> Result<ExitCode, CliError> {
    let t = timeline(home, id).await?;
    let tails: HashMap<String, Vec<String>> = t
        .runs
        .iter()
        .filter(|r| matches!(r.end, RunEnd::Failed(_) | RunEnd::Lost | RunEnd::Canceled))
        .map(|r| {
            (
                r.job_run_id.clone(),
                super::log_tail(home, &r.job_run_id, 20),
            )
        })
        .collect();
    let html = crate::report::html_report(&t, &tails);
    std::fs::write(output, html).map_err(CliError::io(output))?;
    println!(
        "wrote {} ({} job run(s), {})",
        output.display(),
        t.runs.len(),
        t.outcome
    );
    Ok(ExitCode::SUCCESS)
}
