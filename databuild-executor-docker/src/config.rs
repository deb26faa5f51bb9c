//! The executor's settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A unix socket on this host (`/var/run/docker.sock`).
    Unix(PathBuf),
    /// TCP with TLS: `host:port` and the client key, certificate and CA.
    Tls {
        /// `host:port`.
        addr: String,
        /// The client's key (PEM).
        key: PathBuf,
        /// The client's certificate (PEM).
        cert: PathBuf,
        /// The CA that signed the engine's certificate (PEM).
        ca: PathBuf,
    },
}

/// One Docker engine and how many runs it takes at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Its name, in handles, errors and health reports.
    pub name: String,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Runs it takes at once; runs go to the engine with the most free
    /// slots.
    pub slots: usize,
    /// Its labels (`gpu=true`, `zone=a`), besides the `os` and `arch` the
    /// engine reports: a job that requires labels runs only on engines
    /// that have them.
    pub labels: BTreeMap<String, String>,
}

impl EngineConfig {
    /// An engine on a unix socket.
    pub fn unix(name: impl Into<String>, socket: impl Into<PathBuf>, slots: usize) -> Self {
        Self {
            name: name.into(),
            endpoint: Endpoint::Unix(socket.into()),
            slots,
            labels: BTreeMap::new(),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Whether images are pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PullPolicy {
    /// Use local images only; a missing image is a launch error naming it
    /// (the default: builds do not depend on a registry).
    #[default]
    Never,
    /// Pull an image the engine does not have.
    IfMissing,
}

/// A host path mounted into every run's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host path (must be under one of the allowed roots).
    pub host: PathBuf,
    /// Where it appears in the container.
    pub container: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Settings of a [`DockerExecutor`](crate::DockerExecutor).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerConfig {
    /// The engines (at least one).
    pub engines: Vec<EngineConfig>,
    /// Where run config files are written (mounted read-only into each
    /// run's container).
    pub state_dir: PathBuf,
    /// The image of jobs whose launch names none.
    pub default_image: Option<String>,
    /// Distinguishes this store's containers from other orchestrators' on
    /// the same engines (label `databuild.store`): recovery lists only its
    /// own.
    pub store: String,
    /// CPU limit, in CPUs.
    pub cpus: Option<f64>,
    /// Memory limit, in bytes.
    pub memory_bytes: Option<i64>,
    /// The user the job runs as (`uid[:gid]` or a name in the image).
    pub user: Option<String>,
    /// The network mode (default `none`: jobs get no network).
    pub network_mode: String,
    /// The container's root file system is read-only.
    pub read_only_rootfs: bool,
    /// Host paths under which mounts are allowed.
    pub allowed_mount_roots: Vec<PathBuf>,
    /// Mounts into every run's container.
    pub mounts: Vec<Mount>,
    /// Whether images are pulled.
    pub pull: PullPolicy,
    /// Keep the containers of failed runs (for debugging) instead of
    /// removing them once their outcome is recorded.
    pub keep_failed: bool,
    /// Between the stop signal and a forced kill on cancel.
    pub kill_grace: Duration,
    /// How often each engine is pinged.
    pub keepalive_interval: Duration,
    /// How long a run whose engine stopped answering is held as unknown
    /// (its container keeps running under live restore) before it fails
    /// as lost to the engine; an engine back in time is re-attached.
    pub engine_down_grace: Duration,
    /// The limit of one call to an engine.
    pub request_timeout: Duration,
    /// The longest output line kept whole; longer lines are cut.
    pub line_cap: usize,
}

impl DockerConfig {
    /// Settings with one engine and defaults for the rest.
    pub fn new(engine: EngineConfig, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            engines: vec![engine],
            state_dir: state_dir.into(),
            default_image: None,
            store: "default".to_owned(),
            cpus: None,
            memory_bytes: None,
            user: None,
            network_mode: "none".to_owned(),
            read_only_rootfs: false,
            allowed_mount_roots: Vec::new(),
            mounts: Vec::new(),
            pull: PullPolicy::Never,
            keep_failed: false,
            kill_grace: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            engine_down_grace: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            line_cap: 1 << 20,
        }
    }

    /// Applies shared [`Settings`](databuild_core::settings::Settings): the
    /// keep-alive interval, the keep-alive timeout (as
    /// [`engine_down_grace`](Self::engine_down_grace)), the request timeout,
    /// and the labels (given to every engine, under its own).
    #[must_use]
    pub fn settings(mut self, settings: &databuild_core::settings::Settings) -> Self {
        self.keepalive_interval = settings.keepalive_interval;
        self.engine_down_grace = settings.keepalive_timeout;
        self.request_timeout = settings.request_timeout;
        for engine in &mut self.engines {
            for (k, v) in &settings.labels {
                engine.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        self
    }

    /// Adds an engine.
    #[must_use]
    pub fn engine(mut self, engine: EngineConfig) -> Self {
        self.engines.push(engine);
        self
    }

    /// Sets the default image.
    #[must_use]
    pub fn default_image(mut self, image: impl Into<String>) -> Self {
        self.default_image = Some(image.into());
        self
    }

    /// Sets the store label.
    #[must_use]
    pub fn store(mut self, store: impl Into<String>) -> Self {
        self.store = store.into();
        self
    }

    /// Sets the memory limit.
    #[must_use]
    pub fn memory_bytes(mut self, bytes: i64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    /// Sets the CPU limit.
    #[must_use]
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Sets the user.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Allows mounts under `root`.
    #[must_use]
    pub fn allow_mounts_under(mut self, root: impl Into<PathBuf>) -> Self {
        self.allowed_mount_roots.push(root.into());
        self
    }

    /// Mounts `host` at `container` in every run.
    #[must_use]
    pub fn mount(
        mut self,
        host: impl Into<PathBuf>,
        container: impl Into<PathBuf>,
        read_only: bool,
    ) -> Self {
        self.mounts.push(Mount {
            host: host.into(),
            container: container.into(),
            read_only,
        });
        self
    }

    /// Sets the pull policy.
    #[must_use]
    pub fn pull(mut self, pull: PullPolicy) -> Self {
        self.pull = pull;
        self
    }

    /// Keeps failed runs' containers.
    #[must_use]
    pub fn keep_failed(mut self, keep: bool) -> Self {
        self.keep_failed = keep;
        self
    }

    /// Sets the kill grace.
    #[must_use]
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Sets how long a run of an engine that stopped answering is held.
    #[must_use]
    pub fn engine_down_grace(mut self, grace: Duration) -> Self {
        self.engine_down_grace = grace;
        self
    }

    /// Sets the keep-alive interval.
    #[must_use]
    pub fn keepalive_interval(mut self, every: Duration) -> Self {
        self.keepalive_interval = every;
        self
    }
}
