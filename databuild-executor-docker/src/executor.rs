//! [`DockerExecutor`]: job runs as containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, InspectContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use databuild_core::executor::{
    Capabilities, Executor, ExecutorError, ExecutorInfo, HealthReport, JobRunSpec, RunLog,
    RunUpdate, RunUpdates, SurvivingRun,
};
use databuild_core::job::protocol::encode_config;
use databuild_core::job::{Launch, SubgraphLaunch};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::agent;
use crate::config::DockerConfig;
use crate::engine::Engine;
use crate::error::ConnectError;
use crate::watch::{Output, Watch};

/// Where the run's config file appears in its container.
const CONFIG_IN_CONTAINER: &str = "/databuild/config.json";

/// Labels every container of ours carries.
const LABEL_RUN: &str = "databuild.job_run_id";
const LABEL_JOB: &str = "databuild.job_label";
const LABEL_REQUEST: &str = "databuild.build_request_id";
const LABEL_ATTEMPT: &str = "databuild.attempt";
const LABEL_STORE: &str = "databuild.store";
const LABEL_LOG: &str = "databuild.log";
/// Set on a node agent's container (its output is the agent's stream).
const LABEL_AGENT: &str = "databuild.agent";

/// Runs job runs as containers on one or several Docker engines (through
/// the Engine API, with [bollard]). Clones share one executor.
///
/// A run is a container named after its job run id (so a second launch of
/// the same id is refused by the engine), labelled `databuild.job_run_id`,
/// `databuild.job_label`, `databuild.build_request_id`,
/// `databuild.attempt` and `databuild.store`, created from the job's image
/// (or the default image), with the job's argv as its entrypoint followed
/// by `exec` and the config's args, the `DATABUILD_*` variables, the config
/// on stdin and as a read-only file (`DATABUILD_CONFIG_FILE`), no network
/// unless configured, and the configured CPU, memory and user. Its output
/// is demultiplexed into the run's log and through the shared marker
/// scanner; stats become heartbeats; the exit code (and an out-of-memory
/// kill, reported as such) decide the outcome. Runs go to the engine with
/// the most free slots. Containers outlive the orchestrator: a later
/// executor lists them by label and re-attaches.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DockerConfig,
    engines: Vec<Engine>,
    info: ExecutorInfo,
    runs: Mutex<HashMap<String, Run>>,
    /// Containers being removed (their outcome is recorded): not listed.
    removing: Mutex<std::collections::HashSet<String>>,
    /// Engines that stopped answering or came back.
    health: tokio::sync::broadcast::Sender<HealthReport>,
    /// What a run leaves for its retry, kept past a failed run's end until
    /// the retry is launched (dropped when the run succeeds).
    past: Mutex<HashMap<String, Past>>,
}

/// What a run's retry needs of it.
#[derive(Debug)]
struct Past {
    /// The engine it was placed on: the retry goes to another one when one
    /// can take it.
    engine: usize,
    /// For a node agent's run, the partitions its agent reported built: the
    /// retry's subplan leaves them out.
    built: crate::agent::Built,
}

/// A run this executor launched or re-attached.
#[derive(Debug, Clone)]
struct Run {
    engine: usize,
    canceled: Arc<Mutex<Option<String>>>,
    /// Its outcome was a failure (its container may be kept).
    failed: Arc<Mutex<Option<bool>>>,
}

impl DockerExecutor {
    /// The executor's name in events and errors.
    pub const NAME: &'static str = "docker";

    /// Connects to every engine (each must answer) and checks the settings.
    pub async fn connect(config: DockerConfig) -> Result<Self, ConnectError> {
        if config.engines.is_empty() {
            return Err(ConnectError::NoEngine);
        }
        // A mount is allowed when its host path, made absolute and with its
        // symbolic links resolved, lies under an allowed root (resolved
        // too): `/allowed/../etc` and a link out of the root are refused.
        let resolve = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        let roots: Vec<PathBuf> = config
            .allowed_mount_roots
            .iter()
            .filter_map(|r| resolve(r))
            .collect();
        if let Some(m) = config.mounts.iter().find(|m| {
            let escapes = m.host.is_relative()
                || m.host
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir));
            escapes || !resolve(&m.host).is_some_and(|h| roots.iter().any(|r| h.starts_with(r)))
        }) {
            return Err(ConnectError::InvalidSetting {
                setting: "mounts",
                reason: format!(
                    "{} is not an existing path under an allowed mount root ({:?})",
                    m.host.display(),
                    config.allowed_mount_roots
                ),
            });
        }
        let mut engines = Vec::with_capacity(config.engines.len());
        for e in &config.engines {
            engines.push(Engine::connect(e, config.request_timeout).await?);
        }
        let mut info = ExecutorInfo::new(
            Self::NAME,
            Capabilities::default()
                .with_cancel(true)
                .with_recover(true)
                .with_isolated_fs(true)
                // Stats samples of running containers (every 5 s), and a
                // node agent's keep-alives.
                .with_heartbeats(true),
        );
        // Labels every engine has belong to the executor; each engine's
        // own are a place a run can go.
        if let Some(first) = engines.first() {
            info.labels = first
                .labels
                .iter()
                .filter(|(k, v)| engines.iter().all(|e| e.labels.get(*k) == Some(*v)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        info.placements = engines.iter().map(|e| e.labels.clone()).collect();
        let inner = Arc::new(Inner {
            config,
            engines,
            info,
            runs: Mutex::default(),
            removing: Mutex::default(),
            health: tokio::sync::broadcast::channel(64).0,
            past: Mutex::default(),
        });
        tokio::spawn(keepalive(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Per engine: its name, slots taken and whether its last keep-alive
    /// ping was answered.
    pub fn engines(&self) -> Vec<(String, usize, bool)> {
        self.inner
            .engines
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.in_use.load(Ordering::Relaxed),
                    e.healthy.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// Pings every engine on an interval; an engine that stops answering is
/// reported (and marked), and reported again when it answers.
async fn keepalive(inner: std::sync::Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => i.config.keepalive_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        for e in &inner.engines {
            let ok = tokio::time::timeout(every, e.docker.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            let was = e.healthy.swap(ok, Ordering::Relaxed);
            if was != ok {
                let detail = if ok {
                    tracing::info!(engine = %e.name, "Docker engine answers again");
                    "the engine answers again; its runs are re-attached".to_owned()
                } else {
                    tracing::warn!(engine = %e.name, "Docker engine stopped answering");
                    format!(
                        "the engine stopped answering its keep-alive ping; its runs are held as unknown for up to {:?}",
                        inner.config.engine_down_grace
                    )
                };
                let _ = inner.health.send(HealthReport {
                    engine: e.name.clone(),
                    up: ok,
                    detail,
                });
            }
        }
    }
}

impl Inner {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn launch_error(spec: &JobRunSpec, reason: String, retryable: bool) -> ExecutorError {
        ExecutorError::Launch {
            job_run_id: spec.job_run_id.clone(),
            reason,
            retryable,
        }
    }

    /// The engine for a run: among those whose labels meet its
    /// requirements, a healthy one, other than `avoid` (where the run's
    /// previous attempt went) when it can be, with the most free slots;
    /// `None` when no engine has the labels.
    fn pick(
        &self,
        requirements: &std::collections::BTreeMap<String, String>,
        avoid: Option<usize>,
    ) -> Option<usize> {
        let score = |i: usize| {
            let e = &self.engines[i];
            let healthy = e.healthy.load(Ordering::Relaxed);
            (healthy, Some(i) != avoid, e.free())
        };
        (0..self.engines.len())
            .filter(|&i| {
                databuild_core::executor::labels_meet(&self.engines[i].labels, requirements)
            })
            .fold(None, |best: Option<usize>, i| {
                if best.is_none_or(|b| score(i) > score(b)) {
                    Some(i)
                } else {
                    best
                }
            })
    }

    fn past(&self) -> std::sync::MutexGuard<'_, HashMap<String, Past>> {
        self.past.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a node agent's plan goes on this host.
    fn plan_file(&self, job_run_id: &str) -> PathBuf {
        self.config
            .state_dir
            .join("docker")
            .join(format!("{job_run_id}.plan"))
    }

    /// The host directory a node agent writes a long combined log to.
    fn agent_logs_dir(&self, job_run_id: &str) -> PathBuf {
        absolute(
            &self
                .config
                .state_dir
                .join("docker")
                .join(format!("{job_run_id}.logs")),
        )
    }

    fn config_file(&self, job_run_id: &str) -> PathBuf {
        self.config
            .state_dir
            .join("docker")
            .join(format!("{job_run_id}.json"))
    }

    /// Creates the container, pulling its image first when allowed.
    async fn create(
        &self,
        engine: &Engine,
        spec: &JobRunSpec,
        image: &str,
        body: ContainerCreateBody,
    ) -> Result<(), ExecutorError> {
        let options = || CreateContainerOptions {
            name: Some(spec.job_run_id.clone()),
            ..Default::default()
        };
        let mut pulled = false;
        loop {
            match engine
                .docker
                .create_container(Some(options()), body.clone())
                .await
            {
                Ok(_) => return Ok(()),
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) if !pulled && self.config.pull == crate::PullPolicy::IfMissing => {
                    pulled = true;
                    let mut pull = engine.docker.create_image(
                        Some(CreateImageOptions {
                            from_image: Some(image.to_owned()),
                            ..Default::default()
                        }),
                        None,
                        None,
                    );
                    while let Some(step) = pull.next().await {
                        if let Err(e) = step {
                            return Err(Self::launch_error(
                                spec,
                                format!(
                                    "pulling image {image} on engine {} failed: {e}",
                                    engine.name
                                ),
                                true,
                            ));
                        }
                    }
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) => {
                    return Err(Self::launch_error(
                        spec,
                        format!(
                            "image {image} is not on engine {} ({message}); the pull policy is {:?}",
                            engine.name, self.config.pull
                        ),
                        false,
                    ));
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) => {
                    return Err(Self::launch_error(
                        spec,
                        "this job run was already launched".into(),
                        false,
                    ));
                }
                Err(e) => {
                    return Err(Self::launch_error(
                        spec,
                        format!("engine {} refused the container: {e}", engine.name),
                        true,
                    ));
                }
            }
        }
    }

    /// Follows a container on its own task; the stream of its updates.
    fn watch(
        self: &Arc<Self>,
        engine: usize,
        job_run_id: &str,
        output: Output,
        log: RunLog,
        run: &Run,
        agent: bool,
    ) -> RunUpdates {
        let (tx, rx) = mpsc::unbounded_channel();
        let e = &self.engines[engine];
        let built = {
            let mut past = self.past();
            let past = past.entry(job_run_id.to_owned()).or_insert_with(|| Past {
                engine,
                built: crate::agent::Built::default(),
            });
            past.engine = engine;
            Arc::clone(&past.built)
        };
        let _ = tx.send(RunUpdate::Running {
            handle: format!("docker:{}/{job_run_id}", e.name),
        });
        let watch = Watch {
            docker: e.docker.clone(),
            engine: e.name.clone(),
            container: job_run_id.to_owned(),
            log,
            line_cap: self.config.line_cap,
            engine_down_grace: self.config.engine_down_grace,
            memory_limit: self.config.memory_bytes,
            canceled: Arc::clone(&run.canceled),
            failed: Arc::clone(&run.failed),
            updates: tx,
            agent: agent.then(|| {
                crate::agent::AgentStream::new(
                    job_run_id.to_owned(),
                    (!e.remote).then(|| self.agent_logs_dir(job_run_id)),
                    built,
                )
            }),
        };
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            watch.run(output).await;
            inner.engines[engine].in_use.fetch_sub(1, Ordering::Relaxed);
        });
        Box::pin(UnboundedReceiverStream::new(rx))
    }
}

#[async_trait]
impl Executor for DockerExecutor {
    fn info(&self) -> ExecutorInfo {
        self.inner.info.clone()
    }

    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
        let inner = &self.inner;
        let previous = spec
            .previous_job_run_id
            .as_ref()
            .and_then(|p| inner.past().remove(p));
        // What runs: a job (its argv, `exec` and the config's args), or a
        // node agent with its subplan and graph file.
        let (image, entrypoint, cmd, launch_env, working_dir, agent) = match &spec.launch {
            Launch::Process(p) => {
                let mut cmd = vec!["exec".to_owned()];
                cmd.extend(spec.config.args.iter().cloned());
                (
                    p.image.clone(),
                    p.argv.clone(),
                    cmd,
                    &p.env,
                    p.working_dir.clone(),
                    None,
                )
            }
            Launch::Subgraph(s) => {
                let mut plan = SubgraphLaunch::subplan(&spec.config)
                    .map_err(|reason| Inner::launch_error(&spec, reason, false))?;
                // A retry after a lost node: what that node's agent finished
                // is not run again (the partitions exist).
                if let Some(p) = &previous {
                    let set = p.built.lock().unwrap_or_else(|e| e.into_inner());
                    if !set.is_empty() {
                        plan = databuild_core::plan::cut_saved(&plan, |r| set.contains(r.as_str()))
                            .map_err(|e| Inner::launch_error(&spec, e.to_string(), false))?;
                        tracing::info!(job_run_id = %spec.job_run_id, finished = set.len(), "the previous node's finished partitions are left out of the retry's subplan");
                    }
                }
                (
                    s.image.clone(),
                    s.agent.clone(),
                    Vec::new(),
                    &s.env,
                    None,
                    Some((s, plan)),
                )
            }
            _ => {
                return Err(ExecutorError::Incompatible {
                    backend: Self::NAME.into(),
                    job: spec.job.to_string(),
                    reason: "only process jobs and node agents run in containers".into(),
                });
            }
        };
        let Some(image) = image.or_else(|| inner.config.default_image.clone()) else {
            return Err(Inner::launch_error(
                &spec,
                "the job names no image and the executor has no default image".into(),
                false,
            ));
        };
        if entrypoint.is_empty() {
            return Err(Inner::launch_error(
                &spec,
                "the job's argv is empty".into(),
                false,
            ));
        }
        if inner.runs().contains_key(&spec.job_run_id) {
            return Err(Inner::launch_error(
                &spec,
                "this job run was already launched".into(),
                false,
            ));
        }
        // The log first: a run whose log cannot be written does not start.
        let log = RunLog::create(&spec.log_path).map_err(|e| {
            Inner::launch_error(
                &spec,
                format!(
                    "cannot create the run's log {}: {e}",
                    spec.log_path.display()
                ),
                false,
            )
        })?;
        let config_json = encode_config(&spec.config).into_bytes();
        let config_file = absolute(&inner.config_file(&spec.job_run_id));
        let plan_file = absolute(&inner.plan_file(&spec.job_run_id));
        let logs_dir = inner.agent_logs_dir(&spec.job_run_id);
        let written = config_file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| match &agent {
                None => std::fs::write(&config_file, &config_json),
                Some((_, plan)) => std::fs::write(&plan_file, plan)
                    .and_then(|()| std::fs::create_dir_all(&logs_dir)),
            });
        written.map_err(|e| {
            let file = if agent.is_some() {
                &plan_file
            } else {
                &config_file
            };
            Inner::launch_error(&spec, format!("{}: {e}", file.display()), true)
        })?;
        // The graph file an agent reads (uploaded to a remote engine).
        let graph_file = match agent.as_ref().and_then(|(s, _)| s.graph_file.as_ref()) {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => Some((absolute(path), bytes)),
                Err(e) => {
                    return Err(Inner::launch_error(
                        &spec,
                        format!("the subgraph's graph file {}: {e}", path.display()),
                        false,
                    ));
                }
            },
            None => None,
        };

        let avoid = previous.as_ref().map(|p| p.engine);
        let Some(engine_index) = inner.pick(&spec.config.hints.label_requirements, avoid) else {
            return Err(Inner::launch_error(
                &spec,
                format!(
                    "no engine has the labels the job requires ({:?})",
                    spec.config.hints.label_requirements
                ),
                false,
            ));
        };
        let engine = &inner.engines[engine_index];
        // What the previous attempts' agents built stays known to the next.
        inner.past().insert(
            spec.job_run_id.clone(),
            Past {
                engine: engine_index,
                built: previous.map(|p| p.built).unwrap_or_default(),
            },
        );
        // An engine over TCP shares no file system with us: the config file
        // (or an agent's plan and graph file) goes in by upload, and the
        // scratch directory is not shared.
        let remote = engine.remote;
        let mut env: Vec<String> = launch_env
            .iter()
            .chain(spec.config.env.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend(
            spec.databuild_env()
                .into_iter()
                .filter(|(k, _)| !(remote && k == "DATABUILD_SCRATCH_DIR"))
                .map(|(k, v)| format!("{k}={v}")),
        );
        let mut binds = Vec::new();
        let mut uploads: Vec<(&str, Vec<u8>)> = Vec::new();
        match &agent {
            None => {
                env.push(format!("DATABUILD_CONFIG_FILE={CONFIG_IN_CONTAINER}"));
                if remote {
                    uploads.push((CONFIG_IN_CONTAINER, config_json.clone()));
                } else {
                    binds.push(format!(
                        "{}:{CONFIG_IN_CONTAINER}:ro",
                        config_file.display()
                    ));
                }
            }
            Some((_, plan)) => {
                env.push(format!("DATABUILD_PLAN={}", agent::PLAN_IN_CONTAINER));
                env.push("DATABUILD_STATE_DIR=/dev/shm/databuild-agent".to_owned());
                if graph_file.is_some() {
                    env.push(format!("DATABUILD_GRAPH={}", agent::GRAPH_IN_CONTAINER));
                }
                if remote {
                    uploads.push((agent::PLAN_IN_CONTAINER, plan.clone()));
                    if let Some((_, bytes)) = &graph_file {
                        uploads.push((agent::GRAPH_IN_CONTAINER, bytes.clone()));
                    }
                } else {
                    env.push(format!(
                        "DATABUILD_AGENT_LOG_DIR={}",
                        agent::LOGS_IN_CONTAINER
                    ));
                    binds.push(format!(
                        "{}:{}:ro",
                        plan_file.display(),
                        agent::PLAN_IN_CONTAINER
                    ));
                    binds.push(format!(
                        "{}:{}",
                        logs_dir.display(),
                        agent::LOGS_IN_CONTAINER
                    ));
                    if let Some((path, _)) = &graph_file {
                        binds.push(format!(
                            "{}:{}:ro",
                            path.display(),
                            agent::GRAPH_IN_CONTAINER
                        ));
                    }
                }
            }
        }
        if let Some(scratch) = spec.scratch_dir.as_ref().filter(|_| !remote) {
            let scratch = absolute(scratch);
            binds.push(format!("{}:{}", scratch.display(), scratch.display()));
        }
        for m in &inner.config.mounts {
            binds.push(format!(
                "{}:{}{}",
                m.host.display(),
                m.container.display(),
                if m.read_only { ":ro" } else { "" }
            ));
        }
        let labels: HashMap<String, String> = [
            (LABEL_RUN, spec.job_run_id.clone()),
            (LABEL_JOB, spec.job.to_string()),
            (LABEL_REQUEST, spec.build_request_id.clone()),
            (LABEL_ATTEMPT, spec.attempt.to_string()),
            (LABEL_STORE, inner.config.store.clone()),
            (
                LABEL_LOG,
                absolute(&spec.log_path).to_string_lossy().into_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut labels = labels;
        if agent.is_some() {
            labels.insert(LABEL_AGENT.to_owned(), "1".to_owned());
        }
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            env: Some(env),
            labels: Some(labels),
            user: inner.config.user.clone(),
            working_dir: working_dir.map(|d| d.to_string_lossy().into_owned()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                binds: Some(binds),
                network_mode: Some(inner.config.network_mode.clone()),
                memory: inner.config.memory_bytes,
                // No swap beyond the memory limit: the limit holds.
                memory_swap: inner.config.memory_bytes,
                nano_cpus: inner.config.cpus.map(|c| (c * 1e9) as i64),
                readonly_rootfs: Some(inner.config.read_only_rootfs),
                privileged: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        engine.in_use.fetch_add(1, Ordering::Relaxed);
        let release = || {
            engine.in_use.fetch_sub(1, Ordering::Relaxed);
        };
        if let Err(e) = inner.create(engine, &spec, &image, body).await {
            release();
            return Err(e);
        }
        let remove = || async {
            let _ = engine
                .docker
                .remove_container(
                    &spec.job_run_id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        };
        if !uploads.is_empty()
            && let Err(e) = upload_files(engine, &spec.job_run_id, &uploads).await
        {
            remove().await;
            release();
            return Err(Inner::launch_error(
                &spec,
                format!("uploading the config to engine {} failed: {e}", engine.name),
                true,
            ));
        }
        // Attached before start, so no output is missed and the config can
        // go in on stdin.
        let attached = engine
            .docker
            .attach_container(
                &spec.job_run_id,
                Some(AttachContainerOptions {
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    stream: true,
                    ..Default::default()
                }),
            )
            .await;
        let attached = match attached {
            Ok(a) => a,
            Err(e) => {
                remove().await;
                release();
                return Err(Inner::launch_error(
                    &spec,
                    format!(
                        "attaching to the container on engine {} failed: {e}",
                        engine.name
                    ),
                    true,
                ));
            }
        };
        if let Err(e) = engine
            .docker
            .start_container(&spec.job_run_id, None::<StartContainerOptions>)
            .await
        {
            remove().await;
            release();
            // An entrypoint that does not exist will not exist next time.
            let permanent = matches!(
                &e,
                DockerError::DockerResponseServerError {
                    status_code: 400 | 404,
                    ..
                }
            ) || e.to_string().contains("executable file not found");
            return Err(Inner::launch_error(
                &spec,
                format!("engine {} could not start the container: {e}", engine.name),
                !permanent,
            ));
        }
        let mut input = attached.input;
        let stdin = if agent.is_some() {
            Vec::new()
        } else {
            config_json
        };
        tokio::spawn(async move {
            let _ = input.write_all(&stdin).await;
            let _ = input.shutdown().await;
        });
        let run = Run {
            engine: engine_index,
            canceled: Arc::default(),
            failed: Arc::default(),
        };
        inner.runs().insert(spec.job_run_id.clone(), run.clone());
        Ok(inner.watch(
            engine_index,
            &spec.job_run_id,
            attached.output,
            log,
            &run,
            agent.is_some(),
        ))
    }

    fn health(&self) -> Option<futures::stream::BoxStream<'static, HealthReport>> {
        let reports = tokio_stream::wrappers::BroadcastStream::new(self.inner.health.subscribe());
        Some(reports.filter_map(|r| async move { r.ok() }).boxed())
    }

    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
        // A run that ended is not known any more, as to every backend.
        let run = self
            .inner
            .runs()
            .get(job_run_id)
            .filter(|r| r.failed.lock().unwrap_or_else(|e| e.into_inner()).is_none())
            .cloned()
            .ok_or_else(|| ExecutorError::UnknownRun {
                job_run_id: job_run_id.to_owned(),
            })?;
        run.canceled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| reason.to_owned());
        // SIGTERM, then SIGKILL after the grace; the watch reports the end.
        let docker = self.inner.engines[run.engine].docker.clone();
        let grace = i32::try_from(self.inner.config.kill_grace.as_secs()).unwrap_or(i32::MAX);
        let id = job_run_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = docker
                .stop_container(
                    &id,
                    Some(StopContainerOptions {
                        t: Some(grace),
                        signal: None,
                    }),
                )
                .await
            {
                tracing::warn!(job_run_id = %id, error = %e, "stopping a container failed");
            }
        });
        Ok(())
    }

    async fn list_runs(&self) -> Result<Vec<SurvivingRun>, ExecutorError> {
        // Runs being removed when the listing starts are left out even if
        // their removal finishes (and leaves `removing`) while an engine
        // still lists them: a run forgotten before this call is never listed.
        let mut removing = self
            .inner
            .removing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut found = Vec::new();
        for e in &self.inner.engines {
            let filters = HashMap::from([(
                "label".to_owned(),
                vec![format!("{LABEL_STORE}={}", self.inner.config.store)],
            )]);
            let containers = e
                .docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .map_err(|err| ExecutorError::Backend {
                    backend: format!("{} (engine {})", Self::NAME, e.name),
                    source: Box::new(err),
                })?;
            for c in containers {
                let Some(id) = c.labels.as_ref().and_then(|l| l.get(LABEL_RUN)).cloned() else {
                    continue;
                };
                let running = matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                );
                found.push(SurvivingRun::new(id, running));
            }
        }
        removing.extend(
            self.inner
                .removing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        found.retain(|r| !removing.contains(&r.job_run_id));
        found.sort_by(|a, b| a.job_run_id.cmp(&b.job_run_id));
        Ok(found)
    }

    async fn reattach(&self, job_run_id: &str) -> Result<RunUpdates, ExecutorError> {
        let inner = &self.inner;
        if inner.runs().contains_key(job_run_id) {
            return Err(ExecutorError::UnknownRun {
                job_run_id: job_run_id.to_owned(),
            });
        }
        for (i, e) in inner.engines.iter().enumerate() {
            let Ok(found) = e
                .docker
                .inspect_container(job_run_id, None::<InspectContainerOptions>)
                .await
            else {
                continue;
            };
            let labels = found
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            if labels.get(LABEL_STORE) != Some(&inner.config.store) {
                continue;
            }
            let running = found
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false);
            let agent = labels.contains_key(LABEL_AGENT);
            // The log is written again from the container's whole output
            // (the marker scanner must see every line).
            let log_path = labels
                .get(LABEL_LOG)
                .map(PathBuf::from)
                .unwrap_or_else(|| inner.config.state_dir.join(format!("{job_run_id}.log")));
            let log = RunLog::create(&log_path).map_err(|err| ExecutorError::Backend {
                backend: Self::NAME.into(),
                source: format!("cannot write the run's log {}: {err}", log_path.display()).into(),
            })?;
            let output: Output = Box::pin(e.docker.logs(
                job_run_id,
                Some(LogsOptions {
                    follow: running,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            ));
            e.in_use.fetch_add(1, Ordering::Relaxed);
            let run = Run {
                engine: i,
                canceled: Arc::default(),
                failed: Arc::default(),
            };
            inner.runs().insert(job_run_id.to_owned(), run.clone());
            return Ok(inner.watch(i, job_run_id, output, log, &run, agent));
        }
        Err(ExecutorError::UnknownRun {
            job_run_id: job_run_id.to_owned(),
        })
    }

    /// The outcome is recorded: the container is removed (unless it failed
    /// and failed containers are kept), off the caller's path: it is not
    /// listed from now on.
    async fn forget(&self, job_run_id: &str) -> Result<(), ExecutorError> {
        let inner = Arc::clone(&self.inner);
        let run = inner.runs().remove(job_run_id);
        let _ = std::fs::remove_file(inner.config_file(job_run_id));
        let _ = std::fs::remove_file(inner.plan_file(job_run_id));
        let _ = std::fs::remove_dir_all(inner.agent_logs_dir(job_run_id));
        let failed = run
            .as_ref()
            .and_then(|r| *r.failed.lock().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or(false);
        if !failed {
            // No retry will ask what it leaves.
            inner.past().remove(job_run_id);
        }
        if failed && inner.config.keep_failed {
            return Ok(());
        }
        let engines: Vec<usize> = match &run {
            Some(r) => vec![r.engine],
            None => (0..inner.engines.len()).collect(),
        };
        let id = job_run_id.to_owned();
        inner
            .removing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone());
        tokio::spawn(async move {
            for i in engines {
                match inner.engines[i]
                    .docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await
                {
                    Ok(())
                    | Err(DockerError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => {}
                    Err(e) => {
                        tracing::warn!(job_run_id = %id, engine = %inner.engines[i].name, error = %e, "removing a container failed");
                    }
                }
            }
            inner
                .removing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        Ok(())
    }
}

/// Puts files into a created container (the config file as
/// `/databuild/config.json`, or an agent's plan and graph file): a tar
/// archive through the Engine API.
async fn upload_files(
    engine: &Engine,
    container: &str,
    files: &[(&str, Vec<u8>)],
) -> Result<(), String> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o444);
        header.set_cksum();
        archive
            .append_data(&mut header, path.trim_start_matches('/'), bytes.as_slice())
            .map_err(|e| e.to_string())?;
    }
    let bytes = archive.into_inner().map_err(|e| e.to_string())?;
    engine
        .docker
        .upload_to_container(
            container,
            Some(bollard::query_parameters::UploadToContainerOptions {
                path: "/".to_owned(),
                ..Default::default()
            }),
            bollard::body_full(bytes.into()),
        )
        .await
        .map_err(|e| e.to_string())
}

/// `path` made absolute (bind mounts need absolute host paths).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
