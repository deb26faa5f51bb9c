//! A job for tests: `<name>/<key>` partitions, one config per output (or
//! one for all, [`TestJob::batching`]), each reading `<input>/<key>` of its
//! inputs, run as a process (for example `sh -c <script>`), optionally in
//! an image. Its `config` calls are recorded ([`TestJob::config_calls`]),
//! and can be made to take time ([`TestJob::config_latency`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::DataBuildJob;
use crate::job::{JobConfig, JobConfigError, JobLabel, Launch, ProcessLaunch, SchedulingHints};
use crate::partition::{PartitionPattern, PartitionRef};

/// A test job (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct TestJob {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
    inputs: Vec<String>,
    hints: Arc<SchedulingHints>,
    launch: ProcessLaunch,
    batching: bool,
    config_latency: Duration,
    calls: Arc<Mutex<Vec<Vec<PartitionRef>>>>,
}

impl TestJob {
    /// Job `//<name>` making `<name>/<key>`, run as `argv`.
    ///
    /// # Panics
    ///
    /// When `name` makes no valid label or pattern (a test's mistake).
    pub fn argv(name: &str, argv: Vec<String>) -> Self {
        Self {
            label: JobLabel::new(format!("//{name}")).expect("a valid job label"),
            patterns: vec![PartitionPattern::new(&format!("{name}/.*")).expect("a valid pattern")],
            inputs: Vec::new(),
            hints: Arc::default(),
            launch: ProcessLaunch::new(argv),
            batching: false,
            config_latency: Duration::ZERO,
            calls: Arc::default(),
        }
    }

    /// One config for all the outputs of a call (a batching job), instead
    /// of one per output.
    #[must_use]
    pub fn batching(mut self) -> Self {
        self.batching = true;
        self
    }

    /// Each `config` call takes `latency` before it answers (a
    /// `tokio::time::sleep`, so under a paused clock it is simulated time),
    /// as a real job's short `config` process does. The call is recorded
    /// when it begins. Default: no latency.
    #[must_use]
    pub fn config_latency(mut self, latency: Duration) -> Self {
        self.config_latency = latency;
        self
    }

    /// The outputs of each `config` call so far, in order (clones share
    /// the record).
    pub fn config_calls(&self) -> Vec<Vec<PartitionRef>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Job `//<name>` making `<name>/<key>`, run as `sh -c <script>`.
    pub fn sh(name: &str, script: impl Into<String>) -> Self {
        Self::argv(
            name,
            vec!["sh".into(), "-c".into(), script.into(), "sh".into()],
        )
    }

    /// Each output `<name>/<key>` also reads `<input>/<key>`.
    #[must_use]
    pub fn reads(mut self, input: &str) -> Self {
        self.inputs.push(input.to_owned());
        self
    }

    /// Changes the scheduling hints every config carries.
    #[must_use]
    pub fn hints(mut self, f: impl FnOnce(&mut SchedulingHints)) -> Self {
        f(Arc::make_mut(&mut self.hints));
        self
    }

    /// Runs it in `image` (for container executors).
    #[must_use]
    pub fn image(mut self, image: &str) -> Self {
        self.launch = self.launch.image(image);
        self
    }
}

#[async_trait]
impl DataBuildJob for TestJob {
    fn label(&self) -> &JobLabel {
        &self.label
    }
    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }
    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(outputs.to_vec());
        if !self.config_latency.is_zero() {
            tokio::time::sleep(self.config_latency).await;
        }
        let configs: Vec<JobConfig> = outputs
            .iter()
            .map(|o| {
                let key = o.as_str().split_once('/').map_or("", |(_, k)| k);
                let mut c = JobConfig::new([o.clone()]).hints(Arc::clone(&self.hints));
                for input in &self.inputs {
                    let input = PartitionRef::new(format!("{input}/{key}")).map_err(|e| {
                        JobConfigError::Failed {
                            job: self.label.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    c = c.materialize(input);
                }
                Ok(c)
            })
            .collect::<Result<_, _>>()?;
        if !self.batching || configs.len() < 2 {
            return Ok(configs);
        }
        let mut all = JobConfig::new(outputs.to_vec()).hints(Arc::clone(&self.hints));
        for c in configs {
            for input in c.inputs {
                all.inputs.push(input);
            }
        }
        Ok(vec![all])
    }
    fn launch(&self) -> Launch {
        Launch::Process(self.launch.clone())
    }
}
