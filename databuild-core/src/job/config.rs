use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::partition::{PartitionRef, PartitionRefError};
use crate::proto;

/// How a job depends on an input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepType {
    /// Read the partition if present; never triggers a build.
    Query,
    /// The partition must be built before the job runs.
    Materialize,
}

impl DepType {
    /// The protocol's numeric code (0 = query, 1 = materialize).
    pub fn code(self) -> i32 {
        match self {
            DepType::Query => proto::DepType::Query as i32,
            DepType::Materialize => proto::DepType::Materialize as i32,
        }
    }

    /// The protocol's name (`query`, `materialize`).
    pub fn name(self) -> &'static str {
        match self {
            DepType::Query => "query",
            DepType::Materialize => "materialize",
        }
    }

    /// The dep type of a protocol code, if it is one.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(DepType::Query),
            1 => Some(DepType::Materialize),
            _ => None,
        }
    }
}

/// One input of a [`JobConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataDep {
    /// Whether the input must be built first.
    pub dep_type: DepType,
    /// The input partition.
    pub partition: PartitionRef,
}

impl DataDep {
    /// An input that must be built before the job runs.
    pub fn materialize(partition: PartitionRef) -> Self {
        Self {
            dep_type: DepType::Materialize,
            partition,
        }
    }

    /// An input read if present, never built for this job.
    pub fn query(partition: PartitionRef) -> Self {
        Self {
            dep_type: DepType::Query,
            partition,
        }
    }
}

/// Retry policy of a job. Cancellations are never retried, and reruns after
/// missing dependencies do not count as attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled per attempt, with jitter.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A buffering window: ready partitions of the job wait until the window
/// closes or the batch is full, then go out as one `config` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferingWindow {
    /// How long the window stays open after its first partition.
    pub window: Duration,
    /// Largest batch; `None` means unbounded.
    pub max_batch: Option<u32>,
}

/// Scheduling hints a job attaches to its configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulingHints {
    /// Named pool whose slots the run occupies; `None` is the default pool.
    pub pool: Option<String>,
    /// Slots the run takes in its pool (at least 1).
    pub slots: u32,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Wall-clock limit of one job run.
    pub timeout: Option<Duration>,
    /// Buffering window, for jobs that collect partitions across requests.
    pub buffering: Option<BufferingWindow>,
    /// Labels an executor must carry to take the run.
    pub label_requirements: BTreeMap<String, String>,
}

impl SchedulingHints {
    /// Slots taken, treating 0 as 1.
    pub fn effective_slots(&self) -> u32 {
        self.slots.max(1)
    }

    /// The proto form of the hints.
    pub fn to_proto(&self) -> proto::SchedulingHints {
        proto::SchedulingHints {
            pool: self.pool.clone().unwrap_or_default(),
            slots: self.slots,
            retry: Some(proto::RetryPolicy {
                max_attempts: self.retry.max_attempts,
                initial_backoff_ms: duration_ms(self.retry.initial_backoff),
                max_backoff_ms: duration_ms(self.retry.max_backoff),
            }),
            timeout_ms: self.timeout.map(duration_ms).unwrap_or(0),
            buffering_window_ms: self.buffering.map(|b| duration_ms(b.window)).unwrap_or(0),
            max_batch: self.buffering.and_then(|b| b.max_batch).unwrap_or(0),
            label_requirements: self
                .label_requirements
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The hints of a proto message (absent fields take their defaults).
    pub fn from_proto(p: &proto::SchedulingHints) -> Self {
        let retry = p
            .retry
            .as_ref()
            .map_or_else(RetryPolicy::default, |r| RetryPolicy {
                max_attempts: r.max_attempts.max(1),
                initial_backoff: Duration::from_millis(r.initial_backoff_ms),
                max_backoff: Duration::from_millis(r.max_backoff_ms),
            });
        Self {
            pool: (!p.pool.is_empty()).then(|| p.pool.clone()),
            slots: p.slots,
            retry,
            timeout: (p.timeout_ms > 0).then(|| Duration::from_millis(p.timeout_ms)),
            buffering: (p.buffering_window_ms > 0).then(|| BufferingWindow {
                window: Duration::from_millis(p.buffering_window_ms),
                max_batch: (p.max_batch > 0).then_some(p.max_batch),
            }),
            label_requirements: p
                .label_requirements
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One parameterisation of a job: the partitions it produces, the partitions
/// it reads, and the arguments and environment of its run.
///
/// A job's `config` returns one per output, or one covering several (a
/// batching job). Scheduling hints are shared (`Arc`): a job's configs
/// usually carry the same ones, and plans hold millions of configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobConfig {
    /// Partitions this configuration produces.
    pub outputs: Vec<PartitionRef>,
    /// Partitions it reads.
    pub inputs: Vec<DataDep>,
    /// Arguments of the run (`<entrypoint> exec <args...>`).
    pub args: Vec<String>,
    /// Extra environment of the run.
    pub env: BTreeMap<String, String>,
    /// Scheduling hints.
    pub hints: Arc<SchedulingHints>,
}

/// The default hints, shared by every config that sets none.
static DEFAULT_HINTS: LazyLock<Arc<SchedulingHints>> =
    LazyLock::new(|| Arc::new(SchedulingHints::default()));

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            outputs: Vec::new(),
            inputs: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            hints: Arc::clone(&DEFAULT_HINTS),
        }
    }
}

impl JobConfig {
    /// A configuration producing `outputs`, with no inputs.
    pub fn new(outputs: impl IntoIterator<Item = PartitionRef>) -> Self {
        Self {
            outputs: outputs.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Adds an input that must be built first.
    pub fn materialize(mut self, partition: PartitionRef) -> Self {
        self.inputs.push(DataDep::materialize(partition));
        self
    }

    /// Adds an input read only if present.
    pub fn query(mut self, partition: PartitionRef) -> Self {
        self.inputs.push(DataDep::query(partition));
        self
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the scheduling hints.
    pub fn hints(mut self, hints: impl Into<Arc<SchedulingHints>>) -> Self {
        self.hints = hints.into();
        self
    }

    /// The inputs that must be built before the run.
    pub fn materialized_inputs(&self) -> impl Iterator<Item = &PartitionRef> {
        self.inputs
            .iter()
            .filter(|d| d.dep_type == DepType::Materialize)
            .map(|d| &d.partition)
    }

    /// The proto form of the configuration.
    pub fn to_proto(&self) -> proto::JobConfig {
        proto::JobConfig {
            outputs: self.outputs.iter().map(PartitionRef::to_proto).collect(),
            inputs: self
                .inputs
                .iter()
                .map(|d| proto::DataDep {
                    dep_type_code: d.dep_type.code(),
                    dep_type_name: d.dep_type.name().to_owned(),
                    partition_ref: Some(d.partition.to_proto()),
                })
                .collect(),
            args: self.args.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            hints: Some(self.hints.to_proto()),
        }
    }

    /// Validates a proto configuration.
    pub fn from_proto(p: &proto::JobConfig) -> Result<Self, PartitionRefError> {
        let outputs = p
            .outputs
            .iter()
            .map(PartitionRef::try_from)
            .collect::<Result<_, _>>()?;
        let inputs = p
            .inputs
            .iter()
            .map(|d| {
                let partition = d
                    .partition_ref
                    .as_ref()
                    .map_or(Err(PartitionRefError::Empty), PartitionRef::try_from)?;
                let dep_type = if d.dep_type_code == proto::DepType::Materialize as i32 {
                    DepType::Materialize
                } else {
                    DepType::Query
                };
                Ok(DataDep {
                    dep_type,
                    partition,
                })
            })
            .collect::<Result<_, PartitionRefError>>()?;
        Ok(Self {
            outputs,
            inputs,
            args: p.args.clone(),
            env: p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            hints: p.hints.as_ref().map_or_else(
                || Arc::clone(&DEFAULT_HINTS),
                |h| Arc::new(SchedulingHints::from_proto(h)),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> PartitionRef {
        PartitionRef::new(s).unwrap()
    }

    #[test]
    fn proto_round_trip() {
        let config = JobConfig::new([r("out/1")])
            .materialize(r("in/1"))
            .query(r("in/2"))
            .arg("--x")
            .env("K", "V")
            .hints(SchedulingHints {
                pool: Some("db".into()),
                slots: 2,
                retry: RetryPolicy {
                    max_attempts: 3,
                    initial_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_secs(1),
                },
                timeout: Some(Duration::from_secs(5)),
                buffering: Some(BufferingWindow {
                    window: Duration::from_secs(2),
                    max_batch: Some(10),
                }),
                label_requirements: [("os".to_owned(), "linux".to_owned())].into(),
            });
        let back = JobConfig::from_proto(&config.to_proto()).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.materialized_inputs().collect::<Vec<_>>(), [&r("in/1")]);
    }

    #[test]
    fn from_proto_rejects_bad_refs() {
        let mut p = JobConfig::new([r("a")]).to_proto();
        p.outputs[0].str = "a/../b".into();
        assert!(JobConfig::from_proto(&p).is_err());
    }

    #[test]
    fn dep_type_codes() {
        assert_eq!(DepType::from_code(0), Some(DepType::Query));
        assert_eq!(DepType::from_code(1), Some(DepType::Materialize));
        assert_eq!(DepType::from_code(2), None);
        assert_eq!(DepType::Materialize.code(), 1);
        assert_eq!(DepType::Query.name(), "query");
    }
}
