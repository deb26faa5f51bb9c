//! `databuild logs <job-run-id>`: a run's output and the executor's notes
//! on it, from its log file.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::process::ExitCode;
use std::time::Duration;

use databuild_core::executor::LogRecord;
use databuild_core::{BelSink, EventFilter};

use crate::CliError;
use crate::home::Home;

const TERMINAL: [&str; 5] = [
    "job_run_succeeded",
    "job_run_failed",
    "job_run_missing_deps",
    "job_run_canceled",
    "job_run_lost",
];

pub(super) async fn run(home: &Home, job_run_id: &str, follow: bool) -> Result<ExitCode, CliError> {
    let bel = home.reader()?;
    let known = !bel
        .read(0, &EventFilter::job_run(job_run_id), 1)
        .await?
        .is_empty();
    if !known {
        return Err(CliError::UnknownJobRun {
            id: job_run_id.to_owned(),
            home: home.dir().to_path_buf(),
        });
    }
    let ended = || async {
        bel.read(0, &EventFilter::job_run(job_run_id).with_kinds(TERMINAL), 1)
            .await
            .map(|e| !e.is_empty())
    };
    let mut offset = 0u64;
    let mut pending = String::new();
    loop {
        // Read whether the run ended before reading the file, so the last
        // lines are never missed.
        let over = !follow || ended().await?;
        if let Some(path) = home.log_of(job_run_id) {
            let mut file = std::fs::File::open(&path).map_err(CliError::io(&path))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(CliError::io(&path))?;
            let mut reader = BufReader::new(file);
            loop {
                let mut line = String::new();
                let n = reader.read_line(&mut line).map_err(CliError::io(&path))?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                pending.push_str(&line);
                if !pending.ends_with('\n') {
                    // A record still being written.
                    continue;
                }
                let record = std::mem::take(&mut pending);
                let text = match serde_json::from_str::<LogRecord>(record.trim_end()) {
                    Ok(r) => format!(
                        "{} {:<8} {}",
                        super::clock_time(r.time_ns),
                        format!("{:?}", r.stream).to_ascii_lowercase(),
                        r.text
                    ),
                    Err(_) => record.trim_end().to_owned(),
                };
                if !super::emit(&text) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        } else if !follow {
            println!("(job run {job_run_id} has no log yet)");
        }
        if over {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A build request's combined log (seed 003's single combined log): its
/// events and every line of its runs' logs, merged by time.
pub(super) async fn combined(home: &Home, id: &str) -> Result<ExitCode, CliError> {
    let bel = home.reader()?;
    let events = crate::home::read_all(&bel, 0, &EventFilter::build_request(id)).await?;
    if events.is_empty() {
        return Err(CliError::UnknownBuildRequest {
            id: id.to_owned(),
            home: home.dir().to_path_buf(),
        });
    }
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut runs = Vec::new();
    for e in &events {
        if e.kind() == "job_run_queued" {
            runs.push(e.job_run_id.clone());
        }
        let run = if e.job_run_id.is_empty() {
            String::new()
        } else {
            format!(" {}", e.job_run_id)
        };
        lines.push((e.timestamp_ns, format!("event    {}{run}", e.kind())));
    }
    for run in runs {
        let Some(path) = home.log_of(&run) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(CliError::io(&path))?;
        for l in text.lines() {
            if let Ok(r) = serde_json::from_str::<LogRecord>(l) {
                let stream = format!("{:?}", r.stream).to_ascii_lowercase();
                lines.push((r.time_ns, format!("{stream:<8} {run} {}", r.text)));
            }
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    for (t, text) in lines {
        if !super::emit(&format!("{} {text}", super::clock_time(t))) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
