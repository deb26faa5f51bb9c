//! Following one container to its end: its output into the run's log and
//! through the shared marker scanner, heartbeats from its stats, and its
//! outcome from the engine (`wait`, then `inspect` for an out-of-memory
//! kill).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    InspectContainerOptions, LogsOptions, StatsOptions, WaitContainerOptions,
};
use databuild_core::executor::{
    ExitStatus, LineKind, LineSplitter, Outcome, OutputScanner, RunLog, RunUpdate, Stream,
};
use databuild_core::proto::FailureStage;
use futures::{Stream as FutStream, StreamExt};
use tokio::sync::mpsc;

/// How often a running container's stats become a heartbeat.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// A container's output, demultiplexed.
pub(crate) type Output =
    Pin<Box<dyn FutStream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// The scanner and line splitters of one run's output, kept across
/// re-attaches.
struct Reading {
    scanner: OutputScanner,
    out: LineSplitter,
    err: LineSplitter,
    log_failed: Option<std::io::Error>,
}

impl Reading {
    fn new(cap: usize) -> Self {
        Self {
            scanner: OutputScanner::new(),
            out: LineSplitter::new(cap),
            err: LineSplitter::new(cap),
            log_failed: None,
        }
    }

    /// Writes out what the splitters still hold.
    fn finish(mut self, log: &mut RunLog) -> Self {
        let scanner = &mut self.scanner;
        self.out.finish(|line, partial| {
            if scanner.line(line) == LineKind::Output {
                let _ = log.write(Stream::Stdout, line, partial);
            }
        });
        self.err.finish(|line, partial| {
            let _ = log.write(Stream::Stderr, line, partial);
        });
        self
    }
}

/// What a watch needs.
pub(crate) struct Watch {
    pub(crate) docker: Docker,
    pub(crate) engine: String,
    pub(crate) container: String,
    pub(crate) log: RunLog,
    pub(crate) line_cap: usize,
    /// How long an engine that stopped answering is waited for.
    pub(crate) engine_down_grace: Duration,
    /// The container's memory limit, if it has one.
    pub(crate) memory_limit: Option<i64>,
    /// Set when a cancel was asked, with its reason.
    pub(crate) canceled: Arc<Mutex<Option<String>>>,
    /// Set when the run ended: whether it failed.
    pub(crate) failed: Arc<Mutex<Option<bool>>>,
    pub(crate) updates: mpsc::UnboundedSender<RunUpdate>,
    /// For a node agent's container: its stream so far. Its output is the
    /// agent's framing, not a job's, and only the agent's keep-alives and
    /// events are signs of life (a paused agent's container still has
    /// stats).
    pub(crate) agent: Option<crate::agent::AgentStream>,
}

impl Watch {
    /// Reads `output` until the container has exited; returns its outcome
    /// (also sent as the last update). An engine that stops answering is
    /// waited for (up to `engine_down_grace`): the container keeps running
    /// (engines run with live restore), and when the engine is back its
    /// output since the loss is read and its exit collected.
    pub(crate) async fn run(mut self, output: Output) -> Outcome {
        let cap = if self.agent.is_some() {
            crate::agent::LINE_CAP
        } else {
            self.line_cap
        };
        let mut reading = Reading::new(cap);
        let mut output_error = self.read(output, &mut reading).await;
        let exit = loop {
            match self.exit().await {
                Ok(exit) => break Ok(exit),
                Err(reason) => {
                    let lost_at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    if !self.hold().await {
                        break Err(reason);
                    }
                    // Back: what it printed meanwhile (from the second it was
                    // lost: a line of that second may come twice), then its
                    // exit.
                    let since = i32::try_from(lost_at.saturating_sub(1)).unwrap_or(0);
                    let logs: Output = Box::pin(self.docker.logs(
                        &self.container,
                        Some(LogsOptions {
                            follow: true,
                            stdout: true,
                            stderr: true,
                            since,
                            ..Default::default()
                        }),
                    ));
                    output_error = self.read(logs, &mut reading).await;
                }
            }
        };
        let Reading {
            scanner,
            log_failed,
            ..
        } = reading.finish(&mut self.log);
        let outcome = match exit {
            Ok((code, oom)) => {
                let canceled = self
                    .canceled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match (canceled, code, oom) {
                    // A run that finished before the stop landed succeeded.
                    (Some(reason), c, _) if c != 0 => Outcome::Canceled { reason },
                    (_, c, true) => Outcome::Failed {
                        stage: FailureStage::Task,
                        reason: format!(
                            "out of memory: the container was killed at its memory limit (exit code {c})"
                        ),
                        exit: Some(ExitStatus::Code(c as i32)),
                        retryable: false,
                    },
                    // Killed (SIGKILL) under a memory limit, and nobody
                    // asked for a stop: the kernel's OOM killer, even when
                    // the engine missed it (`OOMKilled` is racy when the
                    // killed process is the container's main one).
                    (_, 137, false) if self.memory_limit.is_some() => Outcome::Failed {
                        stage: FailureStage::Task,
                        reason: format!(
                            "out of memory, most likely: the container was killed (exit code 137) under its memory limit of {} bytes, though the engine did not report an OOM kill",
                            self.memory_limit.unwrap_or_default()
                        ),
                        exit: Some(ExitStatus::Code(137)),
                        retryable: false,
                    },
                    (_, c, false) => match &self.agent {
                        Some(agent) => agent.outcome(c),
                        None => scanner.finish(ExitStatus::Code(c as i32)),
                    },
                }
            }
            Err(reason) => Outcome::Failed {
                stage: FailureStage::Task,
                reason: format!(
                    "engine {} lost track of container {}: {reason}{}",
                    self.engine,
                    self.container,
                    output_error
                        .map(|e| format!(" (output: {e})"))
                        .unwrap_or_default()
                ),
                exit: None,
                retryable: true,
            },
        };
        let outcome = match log_failed {
            Some(e) if matches!(outcome, Outcome::Succeeded { .. }) => Outcome::Failed {
                stage: FailureStage::Task,
                reason: format!(
                    "writing the run's log {} failed: {e}",
                    self.log.path().display()
                ),
                exit: Some(ExitStatus::Code(0)),
                retryable: true,
            },
            _ => outcome,
        };
        let _ = self.log.flush();
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(!matches!(outcome, Outcome::Succeeded { .. }));
        let _ = self.updates.send(RunUpdate::Exited(outcome.clone()));
        outcome
    }

    /// Reads output chunks into the log and the scanner until the stream
    /// ends; returns the stream's error, if it ended with one.
    async fn read(&mut self, mut output: Output, r: &mut Reading) -> Option<String> {
        let mut stats = tokio::time::interval(STATS_EVERY);
        stats.tick().await;
        loop {
            tokio::select! {
                chunk = output.next() => match chunk {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        let log = &mut self.log;
                        let updates = &self.updates;
                        let log_failed = &mut r.log_failed;
                        match self.agent.as_mut() {
                            // An agent's stream: its framing, its events
                            // relayed a chunk at a time.
                            Some(agent) => {
                                let mut batch = Vec::new();
                                r.out.push(&message, |line, _| {
                                    if let Err(e) = agent.stdout_line(line, &mut batch, log, updates) {
                                        log_failed.get_or_insert(e);
                                    }
                                });
                                if !batch.is_empty() {
                                    let _ = updates.send(RunUpdate::NodeEvents(batch));
                                }
                            }
                            None => {
                                let scanner = &mut r.scanner;
                                r.out.push(&message, |line, partial| {
                                    match scanner.line(line) {
                                        LineKind::Output => {
                                            if let Err(e) = log.write(Stream::Stdout, line, partial) {
                                                log_failed.get_or_insert(e);
                                            }
                                            let _ = updates.send(RunUpdate::Heartbeat { cpu_ms: None, rss_bytes: None });
                                        }
                                        LineKind::Heartbeat => {
                                            let _ = updates.send(RunUpdate::Heartbeat { cpu_ms: None, rss_bytes: None });
                                        }
                                        LineKind::Marker => {}
                                    }
                                });
                            }
                        }
                    }
                    Some(Ok(LogOutput::StdErr { message })) => {
                        let log = &mut self.log;
                        let log_failed = &mut r.log_failed;
                        let mut agent = self.agent.as_mut();
                        r.err.push(&message, |line, partial| {
                            if let Some(agent) = agent.as_mut() {
                                agent.stderr_line(line);
                            }
                            if let Err(e) = log.write(Stream::Stderr, line, partial) {
                                log_failed.get_or_insert(e);
                            }
                        });
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => return Some(e.to_string()),
                    None => return None,
                },
                _ = stats.tick(), if self.agent.is_none() => {
                    if let Some(beat) = self.stats().await {
                        let _ = self.updates.send(beat);
                    }
                }
            }
        }
    }

    /// After a failed request: true once the engine answers again (it had
    /// stopped answering), false when it answers at once (the failure was
    /// not the engine's) or stays silent past `engine_down_grace`.
    async fn hold(&self) -> bool {
        if self.docker.ping().await.is_ok() {
            return false;
        }
        tracing::warn!(engine = %self.engine, container = %self.container, "engine stopped answering; holding the run as unknown");
        let deadline = tokio::time::Instant::now() + self.engine_down_grace;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if self.docker.ping().await.is_ok() {
                tracing::info!(engine = %self.engine, container = %self.container, "engine is back; re-attaching");
                return true;
            }
        }
        false
    }

    /// The container's exit code once it is not running, and whether the
    /// kernel killed it for memory.
    async fn exit(&self) -> Result<(i64, bool), String> {
        let mut wait = self.docker.wait_container(
            &self.container,
            Some(WaitContainerOptions {
                condition: "not-running".to_owned(),
            }),
        );
        let code = match wait.next().await {
            Some(Ok(r)) => Some(r.status_code),
            // A non-zero exit is reported as an error by the client.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            Some(Err(e)) => return Err(e.to_string()),
            None => None,
        };
        if code == Some(0) {
            // A clean exit was not an out-of-memory kill: no inspect.
            return Ok((0, false));
        }
        let inspect = self
            .docker
            .inspect_container(&self.container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let state = inspect.state.unwrap_or_default();
        let code = code.or(state.exit_code).unwrap_or(-1);
        Ok((code, state.oom_killed.unwrap_or(false)))
    }

    /// One stats sample as a heartbeat (CPU time, memory in use).
    async fn stats(&self) -> Option<RunUpdate> {
        let mut stream = self.docker.stats(
            &self.container,
            Some(StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        let sample = stream.next().await?.ok()?;
        let cpu_ms = sample
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .map(|ns| ns / 1_000_000);
        let rss_bytes = sample.memory_stats.and_then(|m| m.usage);
        Some(RunUpdate::Heartbeat { cpu_ms, rss_bytes })
    }
}
