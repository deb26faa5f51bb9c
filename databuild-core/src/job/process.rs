//! External jobs in the DataBuild job protocol.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::protocol::{ProtocolError, decode_config_response};
use super::{
    DataBuildJob, JobConfig, JobConfigError, JobDefinitionError, JobLabel, Launch, ProcessLaunch,
    SchedulingHints,
};
use crate::clock::sleep_until_some;
use crate::partition::{PartitionPattern, PartitionRef, quote, quote_bytes};

/// Characters of job output quoted in errors.
const QUOTE: usize = 200;
/// Bytes of stderr kept for an error message.
const STDERR_TAIL: usize = 8 * 1024;

/// An external program that speaks the job protocol (see
/// [`protocol`](super::protocol)): planning runs `<argv> config <ref>...`
/// and decodes the configs it prints; executors run `<argv> exec`.
///
/// The config call runs directly (no shell), with stdin closed, the job's
/// environment added to the host's, in a process group of its own. It is
/// bounded: past [`config_timeout`](ProcessJobBuilder::config_timeout) the
/// group is killed; past [`max_config_output`](ProcessJobBuilder::max_config_output)
/// bytes of stdout reading stops and the group is killed; a grandchild that
/// keeps stdout open after the program exits is given a short grace, then
/// killed. Many refs are split over several calls so no argv passes
/// [`max_argv_bytes`](ProcessJobBuilder::max_argv_bytes).
///
/// ```no_run
/// use databuild_core::ProcessJob;
///
/// let job = ProcessJob::builder("//reviews:ingest", vec!["python3".into(), "jobs/ingest.py".into()])
///     .pattern(r"reviews/raw/date=(?P<date>\d{4}-\d{2}-\d{2})")
///     .env("REGION", "eu")
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProcessJob {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
    launch: ProcessLaunch,
    config_timeout: Duration,
    max_config_output: usize,
    max_argv_bytes: usize,
    drain_grace: Duration,
    hints: Option<Arc<SchedulingHints>>,
}

impl ProcessJob {
    /// Default limit of one config call.
    pub const DEFAULT_CONFIG_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default limit of a config call's stdout.
    pub const DEFAULT_MAX_CONFIG_OUTPUT: usize = 64 << 20;
    /// Default limit of one config call's argv (Linux's E2BIG is near 128 KiB
    /// for one argument string and 2 MiB for all; stay well below).
    pub const DEFAULT_MAX_ARGV_BYTES: usize = 100 << 10;

    /// Starts a job labelled `label` whose entrypoint is `argv`.
    pub fn builder(label: impl Into<String>, argv: Vec<String>) -> ProcessJobBuilder {
        ProcessJobBuilder {
            label: label.into(),
            argv,
            patterns: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            image: None,
            config_timeout: Self::DEFAULT_CONFIG_TIMEOUT,
            max_config_output: Self::DEFAULT_MAX_CONFIG_OUTPUT,
            max_argv_bytes: Self::DEFAULT_MAX_ARGV_BYTES,
            drain_grace: Duration::from_secs(2),
            hints: None,
        }
    }

    /// The refs of one call each, so no call's argv passes the limit.
    fn chunks<'a>(&self, outputs: &'a [PartitionRef]) -> Vec<&'a [PartitionRef]> {
        let base: usize =
            self.launch.argv.iter().map(|a| a.len() + 1).sum::<usize>() + "config".len() + 1;
        let mut chunks = Vec::new();
        let (mut start, mut size) = (0, base);
        for (i, r) in outputs.iter().enumerate() {
            let len = r.as_str().len() + 1;
            if i > start && size + len > self.max_argv_bytes {
                chunks.push(&outputs[start..i]);
                start = i;
                size = base;
            }
            size += len;
        }
        if start < outputs.len() {
            chunks.push(&outputs[start..]);
        }
        chunks
    }

    fn command(&self, refs: &[PartitionRef]) -> Command {
        let argv = &self.launch.argv;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .arg("config")
            .args(refs.iter().map(PartitionRef::as_str))
            .envs(&self.launch.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.launch.working_dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// One config call.
    async fn call(&self, refs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        let job = || self.label.clone();
        let mut child = self
            .command(refs)
            .spawn()
            .map_err(|source| JobConfigError::Spawn {
                job: job(),
                program: quote(&self.launch.argv[0], QUOTE),
                source,
            })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io_error(job(), "no stdout pipe"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| io_error(job(), "no stderr pipe"))?;

        let deadline = Instant::now() + self.config_timeout;
        let mut out = Vec::new();
        let mut err_tail = Vec::new();
        let (mut out_open, mut err_open) = (true, true);
        let mut status: Option<ExitStatus> = None;
        let mut drain_until: Option<Instant> = None;
        let mut out_buf = vec![0u8; 64 << 10];
        let mut err_buf = vec![0u8; 8 << 10];
        while out_open || err_open || status.is_none() {
            tokio::select! {
                read = stdout.read(&mut out_buf), if out_open => {
                    let n = read.map_err(|source| JobConfigError::Io { job: job(), source })?;
                    if n == 0 {
                        out_open = false;
                    } else if out.len() + n > self.max_config_output {
                        out.extend_from_slice(&out_buf[..n.min(QUOTE * 4)]);
                        kill_group(&mut child, group).await;
                        return Err(JobConfigError::OutputTooLarge {
                            job: job(),
                            limit: self.max_config_output,
                            output: quote_bytes(&out, QUOTE),
                        });
                    } else {
                        out.extend_from_slice(&out_buf[..n]);
                    }
                }
                read = stderr.read(&mut err_buf), if err_open => {
                    let n = read.map_err(|source| JobConfigError::Io { job: job(), source })?;
                    if n == 0 {
                        err_open = false;
                    } else {
                        err_tail.extend_from_slice(&err_buf[..n]);
                        if err_tail.len() > 2 * STDERR_TAIL {
                            err_tail.drain(..err_tail.len() - STDERR_TAIL);
                        }
                    }
                }
                exited = child.wait(), if status.is_none() => {
                    status = Some(exited.map_err(|source| JobConfigError::Io { job: job(), source })?);
                    drain_until = Some(Instant::now() + self.drain_grace);
                }
                () = tokio::time::sleep_until(deadline) => {
                    kill_group(&mut child, group).await;
                    return Err(JobConfigError::Timeout { job: job(), after: self.config_timeout });
                }
                () = sleep_until_some(drain_until) => {
                    // The program exited but something it started still
                    // holds its pipes: stop waiting and stop that too.
                    kill_group(&mut child, group).await;
                    break;
                }
            }
        }
        let status = status.unwrap_or_default();
        if !status.success() {
            let tail = &err_tail[err_tail.len().saturating_sub(STDERR_TAIL)..];
            return Err(JobConfigError::NonZeroExit {
                job: job(),
                status: describe(status),
                stderr: quote_bytes(tail, QUOTE * 4),
            });
        }
        let mut configs = decode_config_response(&out).map_err(|e| match e {
            ProtocolError::InvalidRef(source) => JobConfigError::InvalidRef { job: job(), source },
            other => JobConfigError::MalformedOutput {
                job: job(),
                reason: other.to_string(),
                output: quote_bytes(&out, QUOTE),
            },
        })?;
        super::apply_default_hints(&mut configs, self.hints.as_ref());
        Ok(configs)
    }
}

fn io_error(job: JobLabel, what: &str) -> JobConfigError {
    JobConfigError::Io {
        job,
        source: std::io::Error::other(what.to_owned()),
    }
}

/// Kills the config call's process group and reaps the call.
async fn kill_group(child: &mut Child, group: Option<Pid>) {
    if let Some(group) = group {
        // ESRCH (the group is already gone) is fine.
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn describe(status: ExitStatus) -> String {
    match crate::executor::ExitStatus::from(status) {
        crate::executor::ExitStatus::Signal(signal) => match Signal::try_from(signal) {
            Ok(s) => format!("signal {signal} ({s})"),
            Err(_) => format!("signal {signal}"),
        },
        code => code.to_string(),
    }
}

#[async_trait]
impl DataBuildJob for ProcessJob {
    fn label(&self) -> &JobLabel {
        &self.label
    }

    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }

    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        let mut configs = Vec::new();
        for chunk in self.chunks(outputs) {
            configs.extend(self.call(chunk).await?);
        }
        Ok(configs)
    }

    fn launch(&self) -> Launch {
        Launch::Process(self.launch.clone())
    }
}

/// Builds a [`ProcessJob`].
#[derive(Debug)]
#[must_use]
pub struct ProcessJobBuilder {
    label: String,
    argv: Vec<String>,
    patterns: Vec<String>,
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    image: Option<String>,
    config_timeout: Duration,
    max_config_output: usize,
    max_argv_bytes: usize,
    drain_grace: Duration,
    hints: Option<Arc<SchedulingHints>>,
}

impl ProcessJobBuilder {
    /// Adds an output pattern.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Sets an environment variable for `config` and `exec`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Runs the program in `dir`.
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Runs the job's runs in `image`, on executors that run containers
    /// (others ignore it). The `config` call still runs on this host: the
    /// entrypoint must answer `config` here too.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Limits one config call (default 60 s).
    pub fn config_timeout(mut self, timeout: Duration) -> Self {
        self.config_timeout = timeout;
        self
    }

    /// Limits a config call's stdout (default 64 MiB).
    pub fn max_config_output(mut self, bytes: usize) -> Self {
        self.max_config_output = bytes;
        self
    }

    /// Limits one config call's argv (default 100 KiB).
    pub fn max_argv_bytes(mut self, bytes: usize) -> Self {
        self.max_argv_bytes = bytes;
        self
    }

    /// How long to wait for the pipes to close after the program exited
    /// (default 2 s).
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// Scheduling hints applied to every config that sets none of its own.
    pub fn hints(mut self, hints: impl Into<Arc<SchedulingHints>>) -> Self {
        self.hints = Some(hints.into());
        self
    }

    /// Validates the definition and builds the job.
    pub fn build(self) -> Result<ProcessJob, JobDefinitionError> {
        let label = JobLabel::new(&self.label)?;
        if self.argv.first().is_none_or(String::is_empty) {
            return Err(JobDefinitionError::Missing {
                job: self.label,
                what: "entrypoint (argv)",
            });
        }
        let patterns = super::compile_patterns(&self.label, &self.patterns)?;
        let mut launch = ProcessLaunch::new(self.argv);
        launch.env = self.env;
        launch.working_dir = self.working_dir;
        launch.image = self.image;
        Ok(ProcessJob {
            label,
            patterns,
            launch,
            config_timeout: self.config_timeout,
            max_config_output: self.max_config_output,
            max_argv_bytes: self.max_argv_bytes.max(1),
            drain_grace: self.drain_grace,
            hints: self.hints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_split_below_the_limit() {
        let job = ProcessJob::builder("//j", vec!["prog".into()])
            .pattern(".*")
            .max_argv_bytes(40)
            .build()
            .unwrap();
        let refs: Vec<PartitionRef> = (0..10)
            .map(|i| PartitionRef::new(format!("ref/{i:04}")).unwrap())
            .collect();
        let chunks = job.chunks(&refs);
        // "prog config " is 12 bytes, each ref 8 + 1: three refs per call.
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(chunks.concat(), refs);
        // A single ref over the limit still gets a call of its own.
        let job = ProcessJob::builder("//j", vec!["prog".into()])
            .pattern(".*")
            .max_argv_bytes(1)
            .build()
            .unwrap();
        assert_eq!(job.chunks(&refs).len(), 10);
        assert!(job.chunks(&[]).is_empty());
    }

    #[test]
    fn definition_errors() {
        let err = ProcessJob::builder("//j", vec![])
            .pattern("x")
            .build()
            .unwrap_err();
        assert!(matches!(err, JobDefinitionError::Missing { .. }), "{err:?}");
        let err = ProcessJob::builder("//j", vec!["p".into()])
            .build()
            .unwrap_err();
        assert!(
            matches!(err, JobDefinitionError::NoPatterns { .. }),
            "{err:?}"
        );
    }
}
