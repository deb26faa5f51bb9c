//! The live progress of one build request, counted from its events: done,
//! running, queued and failed runs, and the running jobs with their
//! elapsed times. [`Progress`] is plain state; `build` draws it with
//! indicatif on a terminal and as plain lines elsewhere.

use std::collections::BTreeMap;

use databuild_core::bel::{BuildEvent, Event};

/// Counts of one request's job runs.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Tasks in the plan (0 until it is made).
    pub planned: u64,
    /// Runs that built their outputs.
    pub done: u64,
    /// Runs queued, not yet started.
    pub queued: u64,
    /// Runs that failed (a retried one counts once per attempt).
    pub failed: u64,
    /// Partitions found already available (or delegated).
    pub reused: u64,
    /// Running runs: id → (job label, first output, started at, unix ns).
    pub running: BTreeMap<String, (String, String, i64)>,
    queued_runs: BTreeMap<String, (String, String)>,
    /// Set once the request ended: `succeeded`, `failed` or `canceled`.
    pub ended: Option<String>,
    /// Why it failed or was cancelled, as its end event says.
    pub end_reason: Option<String>,
}

impl Progress {
    /// Takes one event of the request into account. Returns a line worth
    /// printing in plain mode (a run that started or ended), if any.
    pub fn apply(&mut self, e: &BuildEvent) -> Option<String> {
        let id = &e.job_run_id;
        match e.event.as_ref()? {
            Event::JobGraphEmitted(g) => {
                self.planned = self.planned.max(g.tasks);
                Some(format!("planned {} task(s)", g.tasks))
            }
            Event::JobSkipped(s) => {
                self.reused += s.partitions.len() as u64;
                None
            }
            Event::PartitionDelegated(_) => {
                self.reused += 1;
                None
            }
            Event::JobRunQueued(q) => {
                let task = q.task.as_ref();
                let label = task
                    .and_then(|t| t.job.as_ref())
                    .map(|j| j.label.clone())
                    .unwrap_or_default();
                let output = task
                    .and_then(|t| t.config.as_ref())
                    .and_then(|c| c.outputs.first())
                    .map(|p| p.str.clone())
                    .unwrap_or_default();
                self.queued_runs.insert(id.clone(), (label, output));
                self.queued += 1;
                None
            }
            Event::JobRunRunning(_) => {
                let (label, output) = self.queued_runs.remove(id).unwrap_or_default();
                self.queued = self.queued.saturating_sub(1);
                let line = format!("running  {label} {output}");
                self.running
                    .insert(id.clone(), (label, output, e.timestamp_ns));
                Some(line)
            }
            Event::JobRunSucceeded(_) => {
                self.done += 1;
                self.finish(id, "built   ", e.timestamp_ns)
            }
            Event::JobRunFailed(f) => {
                self.failed += 1;
                let line = self.finish(id, "failed  ", e.timestamp_ns);
                line.map(|l| format!("{l}: {}", f.reason))
            }
            Event::JobRunMissingDeps(_) => self.finish(id, "deps    ", e.timestamp_ns),
            Event::JobRunCanceled(_) => self.finish(id, "canceled", e.timestamp_ns),
            Event::JobRunLost(_) => {
                self.failed += 1;
                self.finish(id, "lost    ", e.timestamp_ns)
            }
            Event::BuildSucceeded(_) => {
                self.ended = Some("succeeded".into());
                None
            }
            Event::BuildFailed(f) => {
                self.ended = Some("failed".into());
                self.end_reason = Some(f.reason.clone());
                Some(format!("build failed: {}", f.reason))
            }
            Event::BuildCanceled(c) => {
                self.ended = Some("canceled".into());
                self.end_reason = Some(c.reason.clone());
                Some("build cancelled".into())
            }
            _ => None,
        }
    }

    fn finish(&mut self, id: &str, word: &str, at: i64) -> Option<String> {
        if let Some((label, output)) = self.queued_runs.remove(id) {
            // Ended before it ran (a launch failure, a cancel).
            self.queued = self.queued.saturating_sub(1);
            return Some(format!("{word} {label} {output}"));
        }
        let (label, output, start) = self.running.remove(id)?;
        Some(format!(
            "{word} {label} {output} ({:.1} s)",
            (at - start) as f64 / 1e9
        ))
    }

    /// One line: the counts.
    pub fn counts(&self) -> String {
        format!(
            "{} done, {} running, {} queued, {} failed{}",
            self.done,
            self.running.len(),
            self.queued,
            self.failed,
            if self.planned > 0 {
                format!(" of {} planned", self.planned)
            } else {
                String::new()
            }
        )
    }

    /// The running jobs with their elapsed times at `now_ns`, longest
    /// first, at most `max` of them.
    pub fn running_lines(&self, now_ns: i64, max: usize) -> Vec<String> {
        let mut running: Vec<_> = self.running.values().collect();
        running.sort_by_key(|(_, _, start)| *start);
        let mut lines: Vec<String> = running
            .iter()
            .take(max)
            .map(|(label, output, start)| {
                format!(
                    "  {label} {output}  {:.0} s",
                    ((now_ns - start) as f64 / 1e9).max(0.0)
                )
            })
            .collect();
        if running.len() > max {
            lines.push(format!("  ... and {} more", running.len() - max));
        }
        lines
    }
}
