//! `databuild events`: the build event log, human-readable or as JSON.

use std::collections::HashSet;
use std::process::ExitCode;

use databuild_core::bel::{BuildEvent, Event};
use databuild_core::{BelSink, EventFilter, PartitionRef};
use futures::StreamExt;
use serde_json::Value;

use crate::CliError;
use crate::home::Home;

pub(super) struct Options {
    pub(super) since: u64,
    pub(super) follow: bool,
    pub(super) job_run: Option<String>,
    pub(super) build: Option<String>,
    pub(super) partition: Option<String>,
    pub(super) json: bool,
}

pub(super) async fn run(home: &Home, o: Options) -> Result<ExitCode, CliError> {
    let partition = o.partition.as_deref().map(PartitionRef::new).transpose()?;
    let bel = home.reader()?;
    let mut filter = EventFilter::all();
    filter.job_run_id = o.job_run.clone();
    filter.build_request_id = o.build.clone();
    let mut matcher = Matcher {
        partition,
        runs: HashSet::new(),
    };
    let mut printed = 0usize;
    // False once stdout is gone.
    let mut print = |e: &BuildEvent, m: &mut Matcher| {
        if !m.wants(e) {
            return true;
        }
        printed += 1;
        if o.json {
            super::emit(&serde_json::to_string(e).unwrap_or_default())
        } else {
            super::emit(&line(e))
        }
    };
    if o.follow {
        let mut events = bel.subscribe(o.since, filter);
        while let Some(e) = events.next().await {
            if !print(&e?, &mut matcher) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    } else {
        let mut at = o.since;
        loop {
            let page = bel.read(at, &filter, 10_000).await?;
            let Some(last) = page.last() else { break };
            at = last.seq;
            for e in &page {
                if !print(e, &mut matcher) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
    if printed == 0 {
        if let Some(id) = &o.job_run
            && bel
                .read(0, &EventFilter::job_run(id.clone()), 1)
                .await?
                .is_empty()
        {
            return Err(CliError::UnknownJobRun {
                id: id.clone(),
                home: home.dir().to_path_buf(),
            });
        }
        if let Some(id) = &o.build
            && bel
                .read(0, &EventFilter::build_request(id.clone()), 1)
                .await?
                .is_empty()
        {
            return Err(CliError::UnknownBuildRequest {
                id: id.clone(),
                home: home.dir().to_path_buf(),
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Events naming a partition, and every event of the runs that build it.
struct Matcher {
    partition: Option<PartitionRef>,
    runs: HashSet<String>,
}

impl Matcher {
    fn wants(&mut self, e: &BuildEvent) -> bool {
        let Some(p) = &self.partition else {
            return true;
        };
        if let Some(Event::JobRunQueued(q)) = &e.event
            && q.task
                .as_ref()
                .and_then(|t| t.config.as_ref())
                .is_some_and(|c| c.outputs.iter().any(|o| o.str == p.as_str()))
        {
            self.runs.insert(e.job_run_id.clone());
        }
        if !e.job_run_id.is_empty() && self.runs.contains(&e.job_run_id) {
            return true;
        }
        let Ok(value) = serde_json::to_value(e) else {
            return false;
        };
        names(&value, p.as_str())
    }
}

/// Whether `value` holds the string `s` anywhere.
fn names(value: &Value, s: &str) -> bool {
    match value {
        Value::String(v) => v == s,
        Value::Array(a) => a.iter().any(|v| names(v, s)),
        Value::Object(o) => o.values().any(|v| names(v, s)),
        _ => false,
    }
}

/// `seq time kind request run detail`.
fn line(e: &BuildEvent) -> String {
    let short = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.chars()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        }
    };
    format!(
        "{:>6} {} {:<26} req {:<8} run {:<8} {}",
        e.seq,
        super::clock_time(e.timestamp_ns),
        e.kind(),
        short(&e.build_request_id),
        short(&e.job_run_id),
        detail(e)
    )
}

fn refs(refs: &[databuild_core::proto::PartitionRef]) -> String {
    let mut s: Vec<&str> = refs.iter().map(|p| p.str.as_str()).take(4).collect();
    let more = refs.len().saturating_sub(4);
    let more = if more > 0 {
        format!(" +{more}")
    } else {
        String::new()
    };
    s.dedup();
    format!("{}{more}", s.join(" "))
}

fn detail(e: &BuildEvent) -> String {
    let Some(event) = &e.event else {
        return String::new();
    };
    let text = match event {
        Event::BuildRequestReceived(r) => refs(&r.requested),
        Event::JobRunQueued(q) => {
            let task = q.task.as_ref();
            format!(
                "{} {} (attempt {})",
                task.and_then(|t| t.job.as_ref())
                    .map_or("", |j| j.label.as_str()),
                task.and_then(|t| t.config.as_ref())
                    .map_or(String::new(), |c| refs(&c.outputs)),
                q.attempt
            )
        }
        Event::JobRunRunning(r) => format!("{} {}", r.executor, r.handle),
        Event::JobRunFailed(f) => f.reason.clone(),
        Event::JobRunLaunchFailed(f) => f.reason.clone(),
        Event::BuildFailed(f) => f.reason.clone(),
        Event::BuildCanceled(c) => c.reason.clone(),
        Event::AnalyzeFailed(f) => f.reason.clone(),
        Event::PartitionStatusChanged(s) => format!(
            "{} {}",
            s.partition.as_ref().map_or("", |p| p.str.as_str()),
            super::status_name(s.status)
        ),
        Event::JobGraphEmitted(g) => format!("{} task(s), {} edge(s)", g.tasks, g.edges),
        _ => {
            // The event's own fields, compact.
            let value = serde_json::to_value(e).unwrap_or_default();
            match value.get(e.kind()) {
                Some(Value::Object(o)) if o.is_empty() => String::new(),
                Some(v) => v.to_string(),
                None => String::new(),
            }
        }
    };
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.len() > 160 {
        let cut = (0..=157)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}
