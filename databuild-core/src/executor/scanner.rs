use crate::job::protocol::{ManifestEntry, Marker, MarkerKind, MissingDeps, scan_line};
use crate::proto::FailureStage;

use super::{ExitStatus, Outcome};

/// What one line of a run's stdout was, for the log and liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Ordinary output: log it (it also counts as a sign of life).
    Output,
    /// A heartbeat marker: a sign of life, not logged as output.
    Heartbeat,
    /// A protocol marker (missing deps, manifest), kept out of the output.
    Marker,
}

/// Watches a run's stdout lines for protocol markers and classifies the
/// run's end. Every backend feeds it every stdout line, so a run ends the
/// same way whatever executes it.
///
/// Rules: a missing-deps marker decides the outcome whatever the exit code
/// (`MissingDeps`); a malformed missing-deps marker is a task failure quoting
/// the line; a malformed manifest is a metadata failure, not retried, naming
/// the line; otherwise exit code 0 succeeds and anything else fails.
#[derive(Debug, Default)]
pub struct OutputScanner {
    missing: Vec<MissingDeps>,
    manifest: Vec<ManifestEntry>,
    malformed: Option<(MarkerKind, String, String)>,
}

impl OutputScanner {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at one stdout line (with or without its line ending).
    pub fn line(&mut self, line: &[u8]) -> LineKind {
        match scan_line(line) {
            Marker::None => LineKind::Output,
            Marker::Heartbeat => LineKind::Heartbeat,
            Marker::MissingDeps(entries) => {
                self.missing.extend(entries);
                LineKind::Marker
            }
            Marker::Manifest(entries) => {
                self.manifest.extend(entries);
                LineKind::Marker
            }
            Marker::Malformed { kind, reason, line } => {
                self.malformed.get_or_insert((kind, reason, line));
                LineKind::Marker
            }
        }
    }

    /// The outcome of a run that ended with `exit`.
    pub fn finish(self, exit: ExitStatus) -> Outcome {
        if let Some((kind, reason, line)) = self.malformed {
            return match kind {
                MarkerKind::MissingDeps => Outcome::Failed {
                    stage: FailureStage::Task,
                    reason: format!("malformed missing-deps line ({reason}): {line}"),
                    exit: Some(exit),
                    retryable: false,
                },
                MarkerKind::Manifest => Outcome::Failed {
                    stage: FailureStage::Metadata,
                    reason: format!("malformed manifest line ({reason}): {line}"),
                    exit: Some(exit),
                    retryable: false,
                },
            };
        }
        if !self.missing.is_empty() {
            return Outcome::MissingDeps {
                missing_deps: self.missing,
                exit: Some(exit),
            };
        }
        match exit {
            ExitStatus::Code(0) => Outcome::Succeeded {
                manifest: self.manifest,
            },
            other => Outcome::task_failed(format!("the job ended with {other}"), Some(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionRef;

    #[test]
    fn classifies_runs() {
        let ok = OutputScanner::new().finish(ExitStatus::Code(0));
        assert_eq!(ok, Outcome::Succeeded { manifest: vec![] });

        let failed = OutputScanner::new().finish(ExitStatus::Code(2));
        assert!(
            matches!(&failed, Outcome::Failed { stage: FailureStage::Task, retryable: true, reason, .. } if reason.contains("exit code 2")),
            "{failed:?}"
        );
        let killed = OutputScanner::new().finish(ExitStatus::Signal(9));
        assert!(matches!(
            killed,
            Outcome::Failed {
                exit: Some(ExitStatus::Signal(9)),
                ..
            }
        ));
    }

    #[test]
    fn missing_deps_decide_whatever_the_exit_code() {
        for exit in [
            ExitStatus::Code(0),
            ExitStatus::Code(1),
            ExitStatus::Signal(15),
        ] {
            let mut s = OutputScanner::new();
            assert_eq!(s.line(b"working\n"), LineKind::Output);
            assert_eq!(
                s.line(br#"__DATABUILD_ERROR__::{"missing_deps":[{"impacted":["b/1"],"missing":["a/1"]}]}"#),
                LineKind::Marker
            );
            let Outcome::MissingDeps { missing_deps, .. } = s.finish(exit) else {
                panic!("missing deps")
            };
            assert_eq!(missing_deps[0].missing, [PartitionRef::new("a/1").unwrap()]);
        }
    }

    #[test]
    fn malformed_markers_fail_quoting_the_line() {
        let mut s = OutputScanner::new();
        s.line(b"__DATABUILD_ERROR__::{oops");
        let out = s.finish(ExitStatus::Code(0));
        assert!(
            matches!(&out, Outcome::Failed { stage: FailureStage::Task, retryable: false, reason, .. } if reason.contains("__DATABUILD_ERROR__::{oops")),
            "{out:?}"
        );
        let mut s = OutputScanner::new();
        s.line(b"__DATABUILD_MANIFEST__::[1]");
        let out = s.finish(ExitStatus::Code(0));
        assert!(
            matches!(
                &out,
                Outcome::Failed {
                    stage: FailureStage::Metadata,
                    retryable: false,
                    ..
                }
            ),
            "{out:?}"
        );
    }

    #[test]
    fn heartbeats_and_manifests() {
        let mut s = OutputScanner::new();
        assert_eq!(s.line(b"__DATABUILD_HEARTBEAT__\n"), LineKind::Heartbeat);
        assert_eq!(
            s.line(
                br#"__DATABUILD_MANIFEST__::{"partitions":[{"partition":"b/1","row_count":3}]}"#
            ),
            LineKind::Marker
        );
        let Outcome::Succeeded { manifest } = s.finish(ExitStatus::Code(0)) else {
            panic!("success")
        };
        assert_eq!(manifest[0].row_count, Some(3));
    }
}
