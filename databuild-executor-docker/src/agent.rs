//! A node agent's stream, as its container prints it: `databuild agent`'s
//! JSON lines (started, events with the agent's own seqs, keep-alives, one
//! result with the combined log) turned into run updates, relayed events
//! and the run's log.

use std::path::PathBuf;

use databuild_core::bel::BuildEvent;
use databuild_core::bel::Event;
use databuild_core::executor::{ExitStatus, LogRecord, Outcome, RunLog, RunUpdate, Stream};
use databuild_core::proto::{EventOrigin, FailureStage, PartitionStatus};
use serde::Deserialize;
use tokio::sync::mpsc;

/// Where the agent finds its plan, its graph file and a directory for a
/// combined log over its inline cap.
pub(crate) const PLAN_IN_CONTAINER: &str = "/databuild/plan.pb";
pub(crate) const GRAPH_IN_CONTAINER: &str = "/databuild/databuild.toml";
pub(crate) const LOGS_IN_CONTAINER: &str = "/databuild/logs";

/// Longest agent line read whole (a result carries up to 1 MiB of log
/// text, escaped).
pub(crate) const LINE_CAP: usize = 64 << 20;

/// How much of the agent's stderr an error quotes.
const STDERR_TAIL: usize = 2048;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    Started {
        #[serde(default)]
        plan_tasks: u64,
    },
    Event {
        seq: u64,
        event: Box<BuildEvent>,
    },
    Keepalive {},
    Result(AgentResult),
}

#[derive(Deserialize)]
struct AgentResult {
    succeeded: bool,
    #[serde(default)]
    partitions: Vec<PartitionOutcome>,
    #[serde(default)]
    log: Vec<Entry>,
    #[serde(default)]
    log_file: Option<String>,
}

#[derive(Deserialize)]
struct PartitionOutcome {
    partition: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    time_ns: i64,
    source: String,
    stream: String,
    text: String,
}

/// The partitions a node agent reported built.
pub(crate) type Built = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// What has been read of one agent's stream.
#[derive(Default)]
pub(crate) struct AgentStream {
    /// The node: the run the agent runs for.
    pub(crate) node: String,
    /// The host directory mounted at [`LOGS_IN_CONTAINER`], if any.
    pub(crate) logs_dir: Option<PathBuf>,
    /// Shared with the executor: a retry leaves these out.
    built: Built,
    result: Option<AgentResult>,
    stderr_tail: String,
}

impl AgentStream {
    pub(crate) fn new(node: String, logs_dir: Option<PathBuf>, built: Built) -> Self {
        Self {
            node,
            logs_dir,
            built,
            ..Self::default()
        }
    }

    /// One stdout line: an event joins `batch`, a keep-alive is a
    /// heartbeat, the result is kept and its combined log written.
    pub(crate) fn stdout_line(
        &mut self,
        line: &[u8],
        batch: &mut Vec<BuildEvent>,
        log: &mut RunLog,
        updates: &mpsc::UnboundedSender<RunUpdate>,
    ) -> std::io::Result<()> {
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Event { seq, mut event }) => {
                if let Some(Event::PartitionStatusChanged(p)) = &event.event
                    && p.status == PartitionStatus::Available as i32
                    && let Some(r) = &p.partition
                {
                    self.built
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(r.str.clone());
                }
                event.origin = Some(EventOrigin {
                    node: self.node.clone(),
                    seq,
                });
                batch.push(*event);
                Ok(())
            }
            Ok(Record::Keepalive {}) => {
                let _ = updates.send(RunUpdate::Heartbeat {
                    cpu_ms: None,
                    rss_bytes: None,
                });
                Ok(())
            }
            Ok(Record::Started { plan_tasks }) => log.note(&format!(
                "agent started with a plan of {plan_tasks} task(s)"
            )),
            Ok(Record::Result(result)) => {
                let written = self.write_combined(&result, log);
                self.result = Some(result);
                written
            }
            // Not the agent's framing (a line of its own, say): kept.
            Err(_) => log.write(Stream::Stdout, line, false),
        }
    }

    /// One stderr line: logged, and its tail kept for errors.
    pub(crate) fn stderr_line(&mut self, line: &[u8]) {
        self.stderr_tail.push_str(&String::from_utf8_lossy(line));
        self.stderr_tail.push('\n');
        if self.stderr_tail.len() > STDERR_TAIL {
            let mut cut = self.stderr_tail.len() - STDERR_TAIL;
            while !self.stderr_tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.stderr_tail.drain(..cut);
        }
    }

    /// The combined log into the run's log: each entry with the time it
    /// was read on the node, its source (`agent` or a job run id) before
    /// its text; entries the agent wrote to a file (over its inline cap)
    /// are read from the mounted directory.
    fn write_combined(&self, result: &AgentResult, log: &mut RunLog) -> std::io::Result<()> {
        let mut from_file = Vec::new();
        if let Some(file) = &result.log_file {
            let host = self.logs_dir.as_ref().and_then(|dir| {
                let name = std::path::Path::new(file).file_name()?;
                Some(dir.join(name))
            });
            match host.map(std::fs::read_to_string) {
                Some(Ok(text)) => {
                    from_file = text
                        .lines()
                        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
                        .collect()
                }
                _ => log.note(&format!(
                    "the agent wrote its combined log to {file}, which is not readable from here"
                ))?,
            }
        }
        for e in result.log.iter().chain(&from_file) {
            let stream = match e.stream.as_str() {
                "stderr" => Stream::Stderr,
                "stdout" => Stream::Stdout,
                _ => Stream::Executor,
            };
            log.write_record(&LogRecord {
                time_ns: e.time_ns,
                stream,
                text: format!("[{}] {}", e.source, e.text),
                partial: false,
            })?;
        }
        Ok(())
    }

    /// The run's outcome from the agent's exit code and result: its build
    /// succeeded; its build failed (its tasks had their own retries: not
    /// retried as a whole); or the agent ended without a result (the node
    /// was lost: retried, except when the agent refused its plan or
    /// settings, exit code 2).
    pub(crate) fn outcome(&self, code: i64) -> Outcome {
        let exit = Some(ExitStatus::Code(code as i32));
        match &self.result {
            Some(r) if r.succeeded && code == 0 => Outcome::Succeeded {
                manifest: Vec::new(),
            },
            Some(r) => {
                let failed: Vec<String> = r
                    .partitions
                    .iter()
                    .filter(|p| p.status == "failed")
                    .take(5)
                    .map(|p| match &p.reason {
                        Some(why) => format!("{} ({why})", p.partition),
                        None => p.partition.clone(),
                    })
                    .collect();
                Outcome::Failed {
                    stage: FailureStage::Task,
                    reason: format!(
                        "the node agent's build failed (exit code {code}): {}",
                        if failed.is_empty() {
                            "no partition failed".to_owned()
                        } else {
                            failed.join(", ")
                        }
                    ),
                    exit,
                    retryable: false,
                }
            }
            None if code == 2 => Outcome::Failed {
                stage: FailureStage::Task,
                reason: format!(
                    "the node agent refused to run (exit code 2): {}",
                    self.stderr_tail.trim()
                ),
                exit,
                retryable: false,
            },
            None => Outcome::Failed {
                stage: FailureStage::Task,
                reason: format!(
                    "node lost: the agent ended (exit code {code}) before its result{}",
                    if self.stderr_tail.trim().is_empty() {
                        String::new()
                    } else {
                        format!("; its stderr: {}", self.stderr_tail.trim())
                    }
                ),
                exit,
                retryable: true,
            },
        }
    }
}
