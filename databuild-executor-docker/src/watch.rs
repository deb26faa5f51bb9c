//! Following one container to its end: its output into the run's log and
//! through the shared marker scanner, heartbeats from its stats, and its
//! outcome from the engine (`wait`, then `inspect` for an out-of-memory
//! kill).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{InspectContainerOptions, StatsOptions, WaitContainerOptions};
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

/// What a watch needs.
pub(crate) struct Watch {
    pub(crate) docker: Docker,
    pub(crate) engine: String,
    pub(crate) container: String,
    pub(crate) log: RunLog,
    pub(crate) line_cap: usize,
    /// Set when a cancel was asked, with its reason.
    pub(crate) canceled: Arc<Mutex<Option<String>>>,
    /// Set when the run ended: whether it failed.
    pub(crate) failed: Arc<Mutex<Option<bool>>>,
    pub(crate) updates: mpsc::UnboundedSender<RunUpdate>,
}

impl Watch {
    /// Reads `output` until the container has exited; returns its outcome
    /// (also sent as the last update).
    pub(crate) async fn run(mut self, mut output: Output) -> Outcome {
        let mut scanner = OutputScanner::new();
        let mut out = LineSplitter::new(self.line_cap);
        let mut err = LineSplitter::new(self.line_cap);
        let mut stats = tokio::time::interval(STATS_EVERY);
        stats.tick().await;
        let mut log_failed = None;
        let mut output_error = None;
        loop {
            tokio::select! {
                chunk = output.next() => match chunk {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        let log = &mut self.log;
                        let updates = &self.updates;
                        out.push(&message, |line, partial| {
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
                    Some(Ok(LogOutput::StdErr { message })) => {
                        let log = &mut self.log;
                        err.push(&message, |line, partial| {
                            if let Err(e) = log.write(Stream::Stderr, line, partial) {
                                log_failed.get_or_insert(e);
                            }
                        });
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        output_error = Some(e.to_string());
                        break;
                    }
                    None => break,
                },
                _ = stats.tick() => {
                    if let Some(beat) = self.stats().await {
                        let _ = self.updates.send(beat);
                    }
                }
            }
        }
        {
            let log = &mut self.log;
            out.finish(|line, partial| {
                if scanner.line(line) == LineKind::Output {
                    let _ = log.write(Stream::Stdout, line, partial);
                }
            });
            err.finish(|line, partial| {
                let _ = log.write(Stream::Stderr, line, partial);
            });
        }
        let outcome = match self.exit().await {
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
                    (_, c, false) => scanner.finish(ExitStatus::Code(c as i32)),
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
