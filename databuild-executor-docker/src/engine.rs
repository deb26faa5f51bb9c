//! One Docker engine: its connection, slots and what it reports of itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bollard::{API_DEFAULT_VERSION, Docker};

use crate::config::{Endpoint, EngineConfig};
use crate::error::ConnectError;

/// Seconds a request to an engine may take.

#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) name: String,
    pub(crate) docker: Docker,
    pub(crate) slots: usize,
    pub(crate) in_use: AtomicUsize,
    /// The last keep-alive ping was answered.
    pub(crate) healthy: AtomicBool,
    /// Reached over TCP: it shares no file system with this host.
    pub(crate) remote: bool,
    /// Its labels: the configured ones, and the `os` and `arch` it
    /// reports (`linux`, `x86_64`).
    pub(crate) labels: std::collections::BTreeMap<String, String>,
}

impl Engine {
    /// Connects, agrees on an API version (Debian's engine speaks 1.41),
    /// and asks the engine what it runs on.
    pub(crate) async fn connect(
        config: &EngineConfig,
        request_timeout: std::time::Duration,
    ) -> Result<Self, ConnectError> {
        let timeout_s = request_timeout.as_secs().max(1);
        let unreachable = |reason: String| ConnectError::Unreachable {
            engine: config.name.clone(),
            endpoint: endpoint_text(&config.endpoint),
            reason,
        };
        let docker = match &config.endpoint {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), timeout_s, API_DEFAULT_VERSION)
            }
            Endpoint::Tls {
                addr,
                key,
                cert,
                ca,
            } => Docker::connect_with_ssl(addr, key, cert, ca, timeout_s, API_DEFAULT_VERSION),
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let version = docker
            .version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let arch = match version.arch.as_deref() {
            Some("amd64") => "x86_64".to_owned(),
            Some("arm64") => "aarch64".to_owned(),
            Some(other) => other.to_owned(),
            None => String::new(),
        };
        let os = version.os.unwrap_or_default();
        let mut labels = config.labels.clone();
        for (k, v) in [("os", &os), ("arch", &arch)] {
            if !v.is_empty() {
                labels.entry(k.to_owned()).or_insert_with(|| v.clone());
            }
        }
        Ok(Self {
            labels,
            name: config.name.clone(),
            docker,
            slots: config.slots.max(1),
            in_use: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            remote: matches!(config.endpoint, Endpoint::Tls { .. }),
        })
    }

    /// Slots not taken (negative when over-subscribed).
    pub(crate) fn free(&self) -> isize {
        self.slots as isize - self.in_use.load(Ordering::Relaxed) as isize
    }
}

/// An endpoint as users wrote it.
pub(crate) fn endpoint_text(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Unix(path) => format!("unix://{}", path.display()),
        Endpoint::Tls { addr, .. } => format!("tcp://{addr} (TLS)"),
    }
}
