//! `databuild agent`: seed 003's node executor. It lives inside its
//! environment (a Docker image, or any machine), runs a saved plan there on
//! the local executor with minimal time between tasks, takes its settings
//! from `DATABUILD_*` variables only, and streams what happens on stdout,
//! one JSON object per line:
//!
//! ```text
//! {"type":"started","plan_tasks":50,"pid":7}
//! {"type":"event","seq":1,"event":{...}}         every BEL event, its own seq, in order
//! {"type":"keepalive","at_ns":1700000000000}     every keep-alive interval
//! {"type":"result","build_request_id":"…","succeeded":true,
//!  "partitions":[{"partition":"a/1","status":"built"}, …],
//!  "manifests":[{"job_run_id":"…","manifest":{...}}, …],   one per run that succeeded
//!  "log":[{"time_ns":…,"source":"agent"|"<job_run_id>","stream":"…","text":"…"}, …],
//!  "log_file":null}
//! ```
//!
//! The result's `log` is the combined log: the agent's own entries and
//! every task's stdout and stderr, merged by time, inline up to 1 MiB of
//! text; a longer one is written to `$DATABUILD_AGENT_LOG_DIR` (a mounted
//! directory) and named by `log_file` instead. The exit code is 0 when
//! everything the plan asked for is available.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `DATABUILD_PLAN` | `/databuild/plan.pb` | the saved plan (`databuild analyze --save`) |
//! | `DATABUILD_GRAPH` | `/databuild/databuild.toml` | the graph file the plan was made from |
//! | `DATABUILD_STATE_DIR` | a temporary directory | run logs and run files |
//! | `DATABUILD_AGENT_LOG_DIR` | none | where a combined log over the cap goes |
//! | `DATABUILD_KEEPALIVE_INTERVAL`, `DATABUILD_PARALLELISM`, ... | see `databuild_core::settings` | |
//!
//! The scratch directory all its tasks share is on tmpfs (`/dev/shm`) where
//! there is one.
//!
//! On the orchestrator's side, a [`SubgraphJob`](databuild_core::SubgraphJob)
//! makes the plan (one per group of partitions) and the Docker executor
//! runs the agent in the job's image, relays its events into the
//! orchestrator's log (each once, tagged with the node and this seq), and
//! keeps the combined log as the run's log (see `databuild_executor_docker`).
//! The agent assigns the job run ids of its tasks itself.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use databuild_core::bel::Event;
use databuild_core::executor::LogRecord;
use databuild_core::settings::Settings;
use databuild_core::{BelSink, BuildEvent, BuildOptions, EventFilter, MemoryBel, Orchestrator};
use databuild_executor_local::{LocalConfig, LocalExecutor};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::CliError;
use crate::graph_file::GraphFile;

/// Combined logs longer than this (bytes of text) go to a file.
pub const INLINE_LOG_CAP: usize = 1 << 20;

fn line(out: &mut impl Write, value: &Value) {
    // A closed stdout (the orchestrator went away) does not stop the
    // work: the result is still computed.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Streams one event, and keeps its manifest if it is a run's success
/// (without the task it ran: the streamed event has it).
fn relay(out: &mut impl Write, e: &BuildEvent, manifests: &mut Vec<Value>) {
    if let Some(Event::JobRunSucceeded(s)) = &e.event {
        let manifest = s.manifest.as_deref().map(|m| {
            let mut m = m.clone();
            m.task = None;
            m
        });
        manifests.push(json!({
            "job_run_id": e.job_run_id,
            "manifest": serde_json::to_value(&manifest).unwrap_or(Value::Null),
        }));
    }
    let event = serde_json::to_value(e).unwrap_or(Value::Null);
    line(out, &json!({"type": "event", "seq": e.seq, "event": event}));
}

/// Runs the agent with the process environment `env`.
pub async fn run(env: &HashMap<String, String>) -> Result<ExitCode, CliError> {
    let settings = Settings::default().with_env(env)?;
    let get = |k: &str, default: &str| env.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let plan_path = PathBuf::from(get("DATABUILD_PLAN", "/databuild/plan.pb"));
    let graph_path = PathBuf::from(get("DATABUILD_GRAPH", "/databuild/databuild.toml"));
    let file = GraphFile::read(&graph_path)?;
    let graph = file.graph()?;
    // The jobs' directory (the graph file's, unless they name another)
    // becomes the agent's own, so the local executor need not set it per
    // task: a static agent then spawns tasks without forking.
    if let Some(first) = file.jobs.first()
        && file.jobs.iter().all(|j| j.working_dir == first.working_dir)
    {
        let _ = std::env::set_current_dir(&first.working_dir);
    }
    let plan = crate::saved_plan::load(&plan_path, &graph)?;
    let state_dir = match env.get("DATABUILD_STATE_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("databuild-agent-{}", std::process::id())),
    };
    std::fs::create_dir_all(&state_dir).map_err(CliError::io(&state_dir))?;
    let scratch = Path::new("/dev/shm");
    let scratch_root = if scratch.is_dir() {
        scratch.join(format!("databuild-agent-{}", std::process::id()))
    } else {
        state_dir.join("scratch")
    };

    let bel = Arc::new(MemoryBel::new());
    let mut builder = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::clone(&bel) as Arc<dyn BelSink>)
        .executor(Arc::new(LocalExecutor::new(
            LocalConfig::new(&state_dir).settings(&settings),
        )))
        .settings(settings.orchestrator())
        .state_dir(&state_dir)
        .scratch_root(&scratch_root);
    if let Some(p) = settings.parallelism.or(file.parallelism) {
        builder = builder.parallelism(p);
    }
    for (name, slots) in &file.pools {
        builder = builder.pool(name, *slots);
    }
    let orchestrator = builder.build()?;

    let mut out = std::io::stdout();
    let mut agent_log: Vec<(i64, String, String, String)> = Vec::new();
    let now = databuild_core::bel::now_ns;
    line(
        &mut out,
        &json!({"type": "started", "plan_tasks": plan.len(), "pid": std::process::id()}),
    );
    agent_log.push((
        now(),
        "agent".into(),
        "agent".into(),
        format!(
            "started: {} task(s) from {}",
            plan.len(),
            plan_path.display()
        ),
    ));

    let handle = orchestrator.start_plan(plan, BuildOptions::default());
    let id = handle.build_request_id().to_owned();
    let mut events = bel.subscribe(0, EventFilter::all());
    let mut keepalive = tokio::time::interval(settings.keepalive_interval);
    let outcome = handle.outcome();
    tokio::pin!(outcome);
    let mut last = 0u64;
    let mut manifests = Vec::new();
    let outcome = loop {
        tokio::select! {
            biased;
            Some(Ok(e)) = events.next() => {
                last = e.seq;
                relay(&mut out, &e, &mut manifests);
            }
            _ = keepalive.tick() => {
                line(&mut out, &json!({"type": "keepalive", "at_ns": now()}));
            }
            o = &mut outcome => break o,
        }
    };
    // The events the end wrote, before the result.
    drop(events);
    for e in bel.read(last, &EventFilter::all(), usize::MAX).await? {
        relay(&mut out, &e, &mut manifests);
    }
    let (succeeded, partitions) = match &outcome {
        Ok(o) => {
            let mut parts: Vec<Value> = o
                .built
                .iter()
                .map(|p| json!({"partition": p.as_str(), "status": "built"}))
                .collect();
            parts.extend(
                o.skipped
                    .iter()
                    .map(|p| json!({"partition": p.as_str(), "status": "available"})),
            );
            parts.extend(o.not_built.iter().map(|n| {
                json!({"partition": n.partition.as_str(), "status": "failed", "reason": n.reason})
            }));
            (o.succeeded(), parts)
        }
        Err(e) => {
            agent_log.push((
                now(),
                "agent".into(),
                "agent".into(),
                format!("the build could not run: {e}"),
            ));
            (false, Vec::new())
        }
    };
    agent_log.push((
        now(),
        "agent".into(),
        "agent".into(),
        format!("ended: succeeded {succeeded}"),
    ));

    // The combined log: the agent's entries and every run's lines, by time.
    let mut combined = agent_log;
    let home = crate::home::Home::new(&state_dir);
    for run in orchestrator.state().runs() {
        let Some(path) = home.log_of(&run.job_run_id) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for l in text.lines() {
            if let Ok(r) = serde_json::from_str::<LogRecord>(l) {
                let stream = format!("{:?}", r.stream).to_ascii_lowercase();
                combined.push((r.time_ns, run.job_run_id.clone(), stream, r.text));
            }
        }
    }
    combined.sort_by_key(|(t, ..)| *t);
    let size: usize = combined.iter().map(|(_, _, _, t)| t.len()).sum();
    let entries: Vec<Value> = combined
        .iter()
        .map(|(t, source, stream, text)| {
            json!({"time_ns": t, "source": source, "stream": stream, "text": text})
        })
        .collect();
    let (log, log_file) = match env.get("DATABUILD_AGENT_LOG_DIR") {
        Some(dir) if size > INLINE_LOG_CAP => {
            let path = Path::new(dir).join(format!("{id}.combined.jsonl"));
            let mut text = String::new();
            for e in &entries {
                text.push_str(&e.to_string());
                text.push('\n');
            }
            std::fs::write(&path, text).map_err(CliError::io(&path))?;
            (Vec::new(), Some(path.display().to_string()))
        }
        _ if size > INLINE_LOG_CAP => {
            // No directory to put it in: the newest entries up to the cap.
            let mut kept = Vec::new();
            let mut used = 0;
            for e in entries.into_iter().rev() {
                used += e["text"].as_str().map_or(0, str::len);
                if used > INLINE_LOG_CAP {
                    break;
                }
                kept.push(e);
            }
            kept.reverse();
            (kept, None)
        }
        _ => (entries, None),
    };
    line(
        &mut out,
        &json!({
            "type": "result",
            "build_request_id": id,
            "succeeded": succeeded,
            "partitions": partitions,
            "manifests": manifests,
            "log": log,
            "log_file": log_file,
        }),
    );
    let _ = std::fs::remove_dir_all(&scratch_root);
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
