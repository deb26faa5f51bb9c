//! The graph definition file: external jobs in the DataBuild job protocol,
//! described in TOML.
//!
//! ```toml
//! [build]
//! parallelism = 4            # runs at once in the default pool
//!
//! [pools]
//! warehouse = 2              # a named pool and its slots
//!
//! [docker]                   # only for jobs with executor = "docker"
//! engines = [{ socket = "/var/run/docker.sock", slots = 4, labels = { zone = "a" } }]
//!
//! [[job]]
//! label = "//pipeline:clean"
//! entrypoint = ["python3", "jobs/clean.py"]
//! outputs = ['clean/date=\d{4}-\d{2}-\d{2}']
//! executor = "local"         # or "docker", with image = "..."
//! pool = "warehouse"
//! slots = 1
//! retry = { attempts = 3, backoff = "2s", max_backoff = "1m" }
//! timeout = "10m"
//! env = { LOG_LEVEL = "info" }
//! requires = { zone = "a" }  # labels of the executor or engine it needs
//! ```
//!
//! Decisions: a relative entrypoint program (one with a `/`) and a relative
//! `working_dir` are taken from the file's directory, and jobs run there
//! by default, so a graph file and its job programs move together. Unknown
//! keys are errors (a misspelt `timeout` must not silently mean "none").
//! Every error names the file, the line and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use databuild_core::job::{RetryPolicy, SchedulingHints};
use databuild_core::settings::parse_duration;
use databuild_core::{Graph, JobLabel, PartitionPattern, ProcessJob};
use serde::Deserialize;
use toml::Spanned;

/// A graph definition file, read and checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GraphFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Runs at once in the default pool (`[build] parallelism`).
    pub parallelism: Option<usize>,
    /// Named pools and their slots.
    pub pools: BTreeMap<String, u32>,
    /// The Docker engines, when a job runs on Docker.
    pub docker: Option<DockerSection>,
    /// The jobs, in file order.
    pub jobs: Vec<JobSpec>,
}

/// Where a job's runs run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecutorKind {
    /// Processes on this machine.
    Local,
    /// Containers of `image` on the `[docker]` engines.
    Docker {
        /// The image.
        image: String,
    },
}

/// One job of the file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSpec {
    /// Its label.
    pub label: JobLabel,
    /// Its argv (relative programs resolved against the file's directory).
    pub entrypoint: Vec<String>,
    /// The patterns of the partitions it produces.
    pub outputs: Vec<String>,
    /// Where its runs run.
    pub executor: ExecutorKind,
    /// Its scheduling hints (pool, slots, retry policy, timeout).
    pub hints: SchedulingHints,
    /// Environment of its `config` and `exec` calls.
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub working_dir: PathBuf,
}

/// The `[docker]` section.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerSection {
    /// The engines.
    pub engines: Vec<DockerEngine>,
    /// Memory limit per container, bytes.
    pub memory_bytes: Option<i64>,
    /// CPU limit per container.
    pub cpus: Option<f64>,
}

/// One engine of the `[docker]` section.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerEngine {
    /// Its name (`engine1`, ... when not given).
    pub name: String,
    /// Its unix socket.
    pub socket: PathBuf,
    /// Runs at once on it.
    pub slots: usize,
    /// Its labels (`zone = "a"`), which jobs' `requires` match.
    pub labels: BTreeMap<String, String>,
}

/// Why a graph file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphFileError {
    /// The file cannot be read.
    #[error("{path}: cannot read the graph file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: the line and the field say where.
    #[error("{path}:{line}:{column}: `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field (a key, or `job[2].timeout`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The jobs do not make a graph (two jobs with one label, say).
    #[error("{path}: {source}")]
    Graph {
        /// The file.
        path: PathBuf,
        /// Why.
        source: databuild_core::GraphError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    build: Option<RawBuild>,
    #[serde(default)]
    pools: BTreeMap<String, Spanned<i64>>,
    #[serde(default)]
    docker: Option<Spanned<RawDocker>>,
    #[serde(default)]
    job: Vec<Spanned<RawJob>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    parallelism: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    engines: Spanned<Vec<RawEngine>>,
    memory: Option<Spanned<String>>,
    cpus: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    name: Option<String>,
    socket: Spanned<String>,
    #[serde(default = "one")]
    slots: Spanned<i64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn one() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    label: Spanned<String>,
    entrypoint: Spanned<Vec<String>>,
    outputs: Spanned<Vec<Spanned<String>>>,
    executor: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    pool: Option<Spanned<String>>,
    slots: Option<Spanned<i64>>,
    retry: Option<Spanned<RawRetry>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_dir: Option<String>,
    #[serde(default)]
    requires: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Spanned<i64>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
}

impl GraphFile {
    /// Reads and checks the file at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, GraphFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GraphFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text`, read from `path` (relative paths in it are taken from
    /// `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<Self, GraphFileError> {
        let at = Locator { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| at.toml(&e))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);

        let parallelism = match raw.build.and_then(|b| b.parallelism) {
            Some(p) => Some(at.positive(&p, "build.parallelism")?),
            None => None,
        };
        let mut pools = BTreeMap::new();
        for (name, slots) in &raw.pools {
            let slots = at.positive(slots, &format!("pools.{name}"))?;
            pools.insert(name.clone(), u32::try_from(slots).unwrap_or(u32::MAX));
        }
        let docker = match raw.docker {
            Some(d) => Some(at.docker(d.into_inner(), &dir)?),
            None => None,
        };

        let mut jobs = Vec::new();
        let mut labels = BTreeSet::new();
        for (i, job) in raw.job.into_iter().enumerate() {
            let span = job.span();
            let job = job.into_inner();
            let field = |name: &str| format!("job[{i}].{name}");
            let label = JobLabel::new(job.label.get_ref())
                .map_err(|e| at.invalid(job.label.span(), &field("label"), e.to_string()))?;
            if !labels.insert(label.clone()) {
                return Err(at.invalid(
                    job.label.span(),
                    &field("label"),
                    format!("two jobs are labelled {label}"),
                ));
            }
            let mut entrypoint = job.entrypoint.get_ref().clone();
            match entrypoint.first() {
                Some(program) if !program.is_empty() => {
                    if program.contains('/') && Path::new(program).is_relative() {
                        entrypoint[0] = dir.join(program).to_string_lossy().into_owned();
                    }
                }
                _ => {
                    return Err(at.invalid(
                        job.entrypoint.span(),
                        &field("entrypoint"),
                        "an argv list with the program first, like [\"python3\", \"job.py\"]"
                            .into(),
                    ));
                }
            }
            if job.outputs.get_ref().is_empty() {
                return Err(at.invalid(
                    job.outputs.span(),
                    &field("outputs"),
                    "at least one output pattern".into(),
                ));
            }
            let mut outputs = Vec::new();
            for p in job.outputs.get_ref() {
                PartitionPattern::new(p.get_ref())
                    .map_err(|e| at.invalid(p.span(), &field("outputs"), e.to_string()))?;
                outputs.push(p.get_ref().clone());
            }
            let executor = match job.executor.as_ref().map(|e| e.get_ref().as_str()) {
                None | Some("local") => {
                    if let Some(image) = &job.image {
                        return Err(at.invalid(
                            image.span(),
                            &field("image"),
                            "an image needs executor = \"docker\"".into(),
                        ));
                    }
                    ExecutorKind::Local
                }
                Some("docker") => {
                    let Some(image) = &job.image else {
                        return Err(at.invalid(
                            span.clone(),
                            &field("image"),
                            "a job with executor = \"docker\" names its image".into(),
                        ));
                    };
                    if docker.is_none() {
                        return Err(at.invalid(
                            job.executor.as_ref().map_or(span.clone(), Spanned::span),
                            &field("executor"),
                            "a docker job needs a [docker] section naming the engines".into(),
                        ));
                    }
                    ExecutorKind::Docker {
                        image: image.get_ref().clone(),
                    }
                }
                Some(other) => {
                    return Err(at.invalid(
                        job.executor.as_ref().map_or(span.clone(), Spanned::span),
                        &field("executor"),
                        format!("unknown executor {other:?}: \"local\" or \"docker\""),
                    ));
                }
            };
            let mut hints = SchedulingHints::default();
            if let Some(pool) = &job.pool {
                if !pools.contains_key(pool.get_ref()) {
                    return Err(at.invalid(
                        pool.span(),
                        &field("pool"),
                        format!("no pool {:?} in [pools]", pool.get_ref()),
                    ));
                }
                hints.pool = Some(pool.get_ref().clone());
            }
            hints.slots = match &job.slots {
                Some(s) => u32::try_from(at.positive(s, &field("slots"))?).unwrap_or(u32::MAX),
                None => 1,
            };
            if let Some(pool) = &hints.pool
                && pools.get(pool).is_some_and(|p| *p < hints.slots)
            {
                return Err(at.invalid(
                    job.slots.as_ref().map_or(span.clone(), Spanned::span),
                    &field("slots"),
                    format!("more slots than pool {pool:?} has"),
                ));
            }
            if let Some(retry) = &job.retry {
                let retry = retry.get_ref();
                let mut policy = RetryPolicy {
                    max_attempts: u32::try_from(
                        at.positive(&retry.attempts, &field("retry.attempts"))?,
                    )
                    .unwrap_or(u32::MAX),
                    ..RetryPolicy::default()
                };
                if let Some(b) = &retry.backoff {
                    policy.initial_backoff = at.duration(b, &field("retry.backoff"))?;
                }
                if let Some(b) = &retry.max_backoff {
                    policy.max_backoff = at.duration(b, &field("retry.max_backoff"))?;
                }
                hints.retry = policy;
            }
            if let Some(t) = &job.timeout {
                hints.timeout = Some(at.duration(t, &field("timeout"))?);
            }
            hints.label_requirements = job.requires.clone();
            let working_dir = match &job.working_dir {
                Some(w) => dir.join(w),
                None => dir.clone(),
            };
            jobs.push(JobSpec {
                label,
                entrypoint,
                outputs,
                executor,
                hints,
                env: job.env,
                working_dir,
            });
        }
        Ok(GraphFile {
            path: path.to_path_buf(),
            parallelism,
            pools,
            docker,
            jobs,
        })
    }

    /// Whether a job runs on Docker.
    pub fn uses_docker(&self) -> bool {
        self.jobs
            .iter()
            .any(|j| matches!(j.executor, ExecutorKind::Docker { .. }))
    }

    /// A digest (SHA-256, hex) of what the file builds: each job's label,
    /// entrypoint, environment and image (core's
    /// [`definitions_digest`](databuild_core::plan::definitions_digest)),
    /// and its output patterns and working directory. The parallelism,
    /// pools, scheduling hints (retries, timeouts, slots, required labels)
    /// and Docker limits change how the jobs run, not what they build, and
    /// are left out. A `build` handed to the build holding the store is
    /// run only when its file has the holder's digest.
    pub fn definitions_digest(&self) -> Result<String, GraphFileError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // Each field length-prefixed, so that no two files hash alike by
        // moving bytes from one field to the next.
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(databuild_core::plan::definitions_digest(&self.graph()?).as_bytes());
        let mut jobs: Vec<&JobSpec> = self.jobs.iter().collect();
        jobs.sort_by(|a, b| a.label.as_str().cmp(b.label.as_str()));
        for job in jobs {
            field(job.label.as_str().as_bytes());
            field(&(job.outputs.len() as u64).to_le_bytes());
            for pattern in &job.outputs {
                field(pattern.as_bytes());
            }
            field(job.working_dir.as_os_str().as_encoded_bytes());
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The graph of the file's jobs, each a [`ProcessJob`].
    pub fn graph(&self) -> Result<Graph, GraphFileError> {
        let mut graph = Graph::builder();
        for spec in &self.jobs {
            let mut job = ProcessJob::builder(spec.label.as_str(), spec.entrypoint.clone())
                .working_dir(&spec.working_dir)
                .hints(Arc::new(spec.hints.clone()));
            for p in &spec.outputs {
                job = job.pattern(p);
            }
            for (k, v) in &spec.env {
                job = job.env(k, v);
            }
            if let ExecutorKind::Docker { image } = &spec.executor {
                job = job.image(image);
            }
            // The patterns and label were checked above; what is left is
            // reported against the file as a whole.
            let job = job.build().map_err(|e| GraphFileError::Invalid {
                path: self.path.clone(),
                line: 1,
                column: 1,
                field: format!("job {}", spec.label),
                message: e.to_string(),
            })?;
            graph = graph.job(job);
        }
        graph.build().map_err(|source| GraphFileError::Graph {
            path: self.path.clone(),
            source,
        })
    }
}

/// Turns byte spans into file positions for errors.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    }

    fn invalid(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: String,
    ) -> GraphFileError {
        let (line, column) = self.position(span.start);
        GraphFileError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.to_owned(),
            message,
        }
    }

    /// A TOML or shape error: the field is the one the message names
    /// (missing or unknown fields), else the key on the error's line.
    fn toml(&self, e: &toml::de::Error) -> GraphFileError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        let named = message
            .split('`')
            .nth(1)
            .filter(|_| {
                message.starts_with("missing field") || message.starts_with("unknown field")
            })
            .map(str::to_owned);
        let field = named.unwrap_or_else(|| {
            let (line, _) = self.position(span.start);
            let text = self.text.lines().nth(line - 1).unwrap_or("");
            let key = match text.split_once('=') {
                Some((key, _)) => key.trim(),
                None => text.trim(),
            };
            if key.is_empty() {
                // No key to name (`= 1`, a blank line): the file's syntax.
                "(syntax)".to_owned()
            } else {
                key.chars().take(80).collect()
            }
        });
        self.invalid(span, &field, message)
    }

    fn positive(&self, value: &Spanned<i64>, field: &str) -> Result<usize, GraphFileError> {
        usize::try_from(*value.get_ref())
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                self.invalid(
                    value.span(),
                    field,
                    format!("a positive number, not {}", value.get_ref()),
                )
            })
    }

    fn duration(&self, value: &Spanned<String>, field: &str) -> Result<Duration, GraphFileError> {
        parse_duration(value.get_ref()).ok_or_else(|| {
            self.invalid(
                value.span(),
                field,
                format!(
                    "{:?} is not a duration (a number with ms, s, m or h, like \"90s\")",
                    value.get_ref()
                ),
            )
        })
    }

    fn docker(&self, raw: RawDocker, dir: &Path) -> Result<DockerSection, GraphFileError> {
        if raw.engines.get_ref().is_empty() {
            return Err(self.invalid(
                raw.engines.span(),
                "docker.engines",
                "at least one engine".into(),
            ));
        }
        let mut engines = Vec::new();
        for (i, e) in raw.engines.get_ref().iter().enumerate() {
            let slots = if e.slots.span() == (0..0) {
                1
            } else {
                self.positive(&e.slots, &format!("docker.engines[{i}].slots"))?
            };
            engines.push(DockerEngine {
                name: e.name.clone().unwrap_or_else(|| format!("engine{}", i + 1)),
                socket: dir.join(e.socket.get_ref()),
                slots,
                labels: e.labels.clone(),
            });
        }
        let memory_bytes = match &raw.memory {
            Some(m) => Some(parse_bytes(m.get_ref()).ok_or_else(|| {
                self.invalid(
                    m.span(),
                    "docker.memory",
                    format!("{:?} is not a size (like \"512m\" or \"2g\")", m.get_ref()),
                )
            })?),
            None => None,
        };
        let cpus = match &raw.cpus {
            Some(c) if *c.get_ref() > 0.0 => Some(*c.get_ref()),
            Some(c) => {
                return Err(self.invalid(c.span(), "docker.cpus", "a positive number".into()));
            }
            None => None,
        };
        Ok(DockerSection {
            engines,
            memory_bytes,
            cpus,
        })
    }
}

/// `512m`, `2g`, `100k`, or bytes.
fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let factor = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GraphFile, GraphFileError> {
        GraphFile::parse(Path::new("/tmp/graph.toml"), text)
    }

    fn error(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(GraphFileError::Invalid {
                line,
                field,
                message,
                ..
            }) => (line, field, message),
            other => panic!("expected an invalid-file error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"
[build]
parallelism = 3

[pools]
db = 2

[[job]]
label = "//p:raw"
entrypoint = ["jobs/raw.sh", "--fast"]
outputs = ['raw/date=\d{4}-\d{2}-\d{2}']
pool = "db"
retry = { attempts = 3, backoff = "2s" }
timeout = "5m"
env = { A = "1" }
requires = { zone = "a" }
"#;

    #[test]
    fn a_good_file_is_read() {
        let file = parse(GOOD).unwrap();
        assert_eq!(file.parallelism, Some(3));
        assert_eq!(file.pools["db"], 2);
        let job = &file.jobs[0];
        assert_eq!(job.label.as_str(), "//p:raw");
        assert_eq!(job.entrypoint, ["/tmp/jobs/raw.sh", "--fast"]);
        assert_eq!(job.hints.pool.as_deref(), Some("db"));
        assert_eq!(job.hints.retry.max_attempts, 3);
        assert_eq!(job.hints.retry.initial_backoff, Duration::from_secs(2));
        assert_eq!(job.hints.timeout, Some(Duration::from_secs(300)));
        assert_eq!(job.env["A"], "1");
        assert_eq!(job.hints.label_requirements["zone"], "a");
        assert_eq!(job.executor, ExecutorKind::Local);
        file.graph().unwrap();
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let (line, field, message) =
            error(&GOOD.replace("timeout = \"5m\"", "timeout = \"5 parsecs\""));
        assert_eq!((line, field.as_str()), (14, "job[0].timeout"));
        assert!(message.contains("not a duration"), "{message}");

        let (line, field, _) = error(&GOOD.replace("timeout =", "timeuot ="));
        assert_eq!((line, field.as_str()), (14, "timeuot"));

        let (line, field, message) = error(&GOOD.replace("label = \"//p:raw\"\n", ""));
        assert_eq!((line, field.as_str()), (8, "label"), "{message}");

        let (line, field, _) = error(&GOOD.replace("pool = \"db\"", "pool = \"nope\""));
        assert_eq!((line, field.as_str()), (12, "job[0].pool"));

        let (line, field, message) = error(&GOOD.replace(r"\d{4}-", r"\d{4-"));
        assert_eq!((line, field.as_str()), (11, "job[0].outputs"));
        assert!(message.contains("regex"), "{message}");

        let (line, field, _) = error(&GOOD.replace("parallelism = 3", "parallelism = \"3\""));
        assert_eq!((line, field.as_str()), (3, "parallelism"));

        let (line, field, _) = error(&GOOD.replace("parallelism = 3", "parallelism = 0"));
        assert_eq!((line, field.as_str()), (3, "build.parallelism"));

        let (line, field, message) = error(&GOOD.replace("pool = \"db\"", "executor = \"k8s\""));
        assert_eq!((line, field.as_str()), (12, "job[0].executor"));
        assert!(message.contains("k8s"), "{message}");

        let (_, field, _) = error(&GOOD.replace("pool = \"db\"", "executor = \"docker\""));
        assert_eq!(field, "job[0].image");

        let (line, field, _) = error(&format!(
            "{GOOD}\n[[job]]\nlabel = \"//p:raw\"\nentrypoint = [\"x\"]\noutputs = [\"a\"]\n"
        ));
        assert_eq!((line, field.as_str()), (19, "job[1].label"));

        let (line, field, _) =
            error("[[job]]\nlabel = \"//a\"\nentrypoint = []\noutputs = [\"a\"]\n");
        assert_eq!((line, field.as_str()), (3, "job[0].entrypoint"));

        let (line, _, _) = error("[[job]\nlabel = 1\n");
        assert_eq!(line, 1);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("2d"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("0"), None);
    }
}
