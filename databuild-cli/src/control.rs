//! The control socket of a running build: how other `databuild` processes
//! submit builds, cancel them, taint partitions and ask what runs while one
//! process holds the store (one writer per store, many readers).
//!
//! Protocol: one JSON object per line over a unix socket, one request and
//! one reply per connection. Every request carries [`PROTOCOL_VERSION`]; a
//! build speaking another version refuses with a reply that says so. A
//! build request carries the graph file it was made from and the digest of
//! what that file builds ([`GraphFile::definitions_digest`]); the holder
//! refuses one whose digest differs from its own, naming its own file.
//!
//! ```text
//! → {"version":2,"op":"build","refs":["daily/date=2024-01-01"],"force":false,"keep_going":false,"graph_file":"/srv/demo/databuild.toml","definitions":"9f2c…"}
//! ← {"ok":true,"build_request_id":"0193…"}
//! → {"version":2,"op":"build",…,"graph_file":"/srv/other.toml","definitions":"41d0…"}
//! ← {"ok":false,"error":"…","graph_file":"/srv/demo/databuild.toml"}
//! → {"version":2,"op":"cancel","build_request_id":"0193…"}
//! ← {"ok":false,"error":"build request 0193… is not running"}
//! → {"version":2,"op":"live"}
//! ← {"ok":true,"live":["0193…"]}
//! ```
//!
//! The holder binds the socket as soon as it holds the store
//! ([`ControlSocket::bind`]), so a request that arrives while it loads
//! waits in the socket's queue instead of finding no socket; it serves
//! once its orchestrator is ready ([`ControlSocket::serve`]). When it
//! stops ([`ControlServer::stop`]) it removes the socket and stops
//! listening first, then finishes serving the connections it accepted and
//! hands back every build it started for them, so the caller runs them to
//! their end: a request it accepted is never left open.
//!
//! A command that finds the store held but cannot reach the socket (the
//! holder is starting or stopping) tries again, and checks whether the
//! store became free, for up to [`HOLDER_WAIT`].
//!
//! [`GraphFile::definitions_digest`]: crate::graph_file::GraphFile::definitions_digest

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use databuild_core::orchestrator::BuildOptions;
use databuild_core::{BuildHandle, Orchestrator, PartitionRef};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::CliError;

/// The version of the protocol this build speaks. Version 2 added the
/// graph file and its digest to build requests, and the `live` request.
pub const PROTOCOL_VERSION: u32 = 2;

/// How long a command that finds the store held waits for the holder's
/// control socket to answer (it is not bound yet while the holder takes
/// the store, and is gone while the holder stops) before it gives up. It
/// tries again every few tens of milliseconds meanwhile, and takes the
/// store itself as soon as the store is free.
pub const HOLDER_WAIT: Duration = Duration::from_secs(10);

/// How long the holder waits for a connection's request line.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to the running build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// The protocol version of the sender.
    pub version: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: ControlOp,
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlOp {
    /// Start a build request.
    Build {
        /// What to build.
        refs: Vec<String>,
        /// Rebuild what was asked even if available.
        force: bool,
        /// Keep building what does not depend on a failure.
        keep_going: bool,
        /// The sender's graph file (absolute), named when it is refused.
        graph_file: PathBuf,
        /// The digest of what that file builds
        /// ([`GraphFile::definitions_digest`](crate::graph_file::GraphFile::definitions_digest)):
        /// the holder runs the request only when it equals its own.
        definitions: String,
    },
    /// Cancel a live build request.
    Cancel {
        /// The request.
        build_request_id: String,
    },
    /// Mark partitions invalid.
    Taint {
        /// The partitions.
        partitions: Vec<String>,
    },
    /// The build requests the holder runs now.
    Live,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControlReply {
    /// Whether it was done.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The build request started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_request_id: Option<String>,
    /// The holder's graph file, when a build request was refused because
    /// its graph file builds something else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_file: Option<PathBuf>,
    /// The build requests the holder runs (the answer to `live`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Vec<String>>,
}

impl ControlReply {
    fn done() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    fn refused(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

/// The graph a holder builds: its file and the digest of what it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphIdentity {
    /// The graph file (absolute).
    pub file: PathBuf,
    /// [`GraphFile::definitions_digest`](crate::graph_file::GraphFile::definitions_digest).
    pub definitions: String,
}

/// A bound control socket, not serving yet: connections wait in its queue.
/// Dropping it stops listening and removes the socket file.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
}

impl ControlSocket {
    /// Binds `path`. The caller holds the store, so a socket file left by
    /// a build that died is stale and replaced.
    pub fn bind(path: &Path) -> Result<Self, CliError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(CliError::io(path))?;
        let socket = Self {
            path: path.to_path_buf(),
            listener: Some(listener),
        };
        // Only its owner may connect (connecting needs write permission).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(CliError::io(path))?;
        }
        Ok(socket)
    }

    /// Serves requests to `orchestrator`, which builds `graph`.
    pub fn serve(mut self, orchestrator: Orchestrator, graph: GraphIdentity) -> ControlServer {
        let listener = self.listener.take();
        let path = std::mem::take(&mut self.path);
        let submitted: Arc<Mutex<Vec<BuildHandle>>> = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(
            listener,
            path.clone(),
            stopped,
            Arc::new(Served {
                orchestrator,
                graph,
                submitted: Arc::clone(&submitted),
            }),
        ));
        ControlServer {
            path,
            stop: Some(stop),
            task: Some(task),
            submitted,
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if self.listener.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the accept loop serves.
struct Served {
    orchestrator: Orchestrator,
    graph: GraphIdentity,
    submitted: Arc<Mutex<Vec<BuildHandle>>>,
}

/// Accepts connections until `stopped`; then removes the socket, stops
/// listening and waits for the connections being served.
async fn accept(
    listener: Option<UnixListener>,
    path: PathBuf,
    mut stopped: oneshot::Receiver<()>,
    served: Arc<Served>,
) {
    let mut serving = JoinSet::new();
    if let Some(listener) = listener {
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let served = Arc::clone(&served);
                        serving.spawn(async move {
                            let _ = serve(stream, &served).await;
                        });
                    }
                    // Out of descriptors, say: let some connections end.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
                Some(_) = serving.join_next(), if !serving.is_empty() => {}
            }
        }
        // First no new connection, then the listener closes (connections
        // still queued are reset: their senders try again).
        let _ = std::fs::remove_file(&path);
        drop(listener);
    }
    while serving.join_next().await.is_some() {}
}

/// A control socket being served. [`stop`](Self::stop) it to get the
/// builds it started; dropping it instead abandons them.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    submitted: Arc<Mutex<Vec<BuildHandle>>>,
}

impl ControlServer {
    /// Stops taking requests: removes the socket and stops listening, then
    /// finishes the connections already accepted. Returns every build
    /// request started for other processes, for the caller to wait on (the
    /// holder of the store runs them to their end before it exits).
    pub async fn stop(mut self) -> Vec<BuildHandle> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        std::mem::take(&mut *self.submitted.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn serve(stream: UnixStream, served: &Served) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(1 << 20));
    if tokio::time::timeout(REQUEST_READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .is_err()
    {
        return Ok(());
    }
    let reply = match parse(&line) {
        Err(reply) => reply,
        Ok(op) => handle(op, served).await,
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// The request in `line`, or the refusal to send back. The version is
/// read first, so that a sender of another version is told so whatever
/// else its request holds.
fn parse(line: &str) -> Result<ControlOp, ControlReply> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let not_a_request =
        |e: serde_json::Error| ControlReply::refused(format!("not a control request: {e}"));
    let version = serde_json::from_str::<Versioned>(line)
        .map_err(not_a_request)?
        .version;
    if version != PROTOCOL_VERSION {
        return Err(ControlReply::refused(format!(
            "this build speaks control protocol {PROTOCOL_VERSION}, the request {version}: use the same databuild version, or wait for the running build to end"
        )));
    }
    serde_json::from_str::<ControlRequest>(line)
        .map(|r| r.op)
        .map_err(not_a_request)
}

async fn handle(op: ControlOp, served: &Served) -> ControlReply {
    let orchestrator = &served.orchestrator;
    let refs = |refs: &[String]| {
        refs.iter()
            .map(PartitionRef::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ControlReply::refused(e.to_string()))
    };
    match op {
        ControlOp::Build {
            refs: wanted,
            force,
            keep_going,
            graph_file,
            definitions,
        } => {
            if definitions != served.graph.definitions {
                return ControlReply {
                    graph_file: Some(served.graph.file.clone()),
                    ..ControlReply::refused(format!(
                        "the running build builds graph file {}, and {} defines other jobs",
                        served.graph.file.display(),
                        graph_file.display()
                    ))
                };
            }
            let wanted = match refs(&wanted) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            let handle = orchestrator.start(
                &wanted,
                BuildOptions::default().force(force).keep_going(keep_going),
            );
            let id = handle.build_request_id().to_owned();
            served
                .submitted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
            ControlReply {
                build_request_id: Some(id),
                ..ControlReply::done()
            }
        }
        ControlOp::Cancel { build_request_id } => {
            match orchestrator.cancel(&build_request_id, "cancelled from the command line") {
                Ok(()) => ControlReply::done(),
                Err(e) => ControlReply::refused(e.to_string()),
            }
        }
        ControlOp::Taint { partitions } => {
            let partitions = match refs(&partitions) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            match orchestrator.taint(&partitions).await {
                Ok(()) => ControlReply::done(),
                Err(e) => ControlReply::refused(e.to_string()),
            }
        }
        ControlOp::Live => ControlReply {
            live: Some(orchestrator.live_requests()),
            ..ControlReply::done()
        },
    }
}

/// Why [`send`] got no reply.
#[derive(Debug)]
pub enum SendError {
    /// Nobody listens on the socket, or the listener went away before it
    /// read the request (a holder starting or stopping): worth trying
    /// again.
    Unreachable(String),
    /// Anything else (no permission, an unreadable reply).
    Failed(String),
}

/// Sends `op` to the build listening on `socket` and returns its reply.
pub async fn send(socket: &Path, op: ControlOp) -> Result<ControlReply, SendError> {
    use std::io::ErrorKind;
    let unreachable = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::NotFound
                | ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
        )
    };
    let fail = |e: std::io::Error| {
        if unreachable(&e) {
            SendError::Unreachable(e.to_string())
        } else {
            SendError::Failed(e.to_string())
        }
    };
    let stream = UnixStream::connect(socket).await.map_err(fail)?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(&ControlRequest {
        version: PROTOCOL_VERSION,
        op,
    })
    .map_err(|e| SendError::Failed(e.to_string()))?;
    text.push('\n');
    write.write_all(text.as_bytes()).await.map_err(fail)?;
    let mut line = String::new();
    BufReader::new(read.take(1 << 20))
        .read_line(&mut line)
        .await
        .map_err(fail)?;
    if line.is_empty() {
        // Closed without a word: the listener stopped before it read.
        return Err(SendError::Unreachable(
            "the connection closed before a reply".into(),
        ));
    }
    serde_json::from_str(&line)
        .map_err(|e| SendError::Failed(format!("an unreadable reply {line:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let r = ControlRequest {
            version: 2,
            op: ControlOp::Cancel {
                build_request_id: "b1".into(),
            },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"version":2,"op":"cancel","build_request_id":"b1"}"#
        );
        assert_eq!(serde_json::from_str::<ControlRequest>(&text).unwrap(), r);
        let build = ControlRequest {
            version: 2,
            op: ControlOp::Build {
                refs: vec!["a/b".into()],
                force: false,
                keep_going: true,
                graph_file: "/srv/g.toml".into(),
                definitions: "ab12".into(),
            },
        };
        let text = serde_json::to_string(&build).unwrap();
        assert_eq!(
            text,
            r#"{"version":2,"op":"build","refs":["a/b"],"force":false,"keep_going":true,"graph_file":"/srv/g.toml","definitions":"ab12"}"#
        );
        assert_eq!(
            serde_json::from_str::<ControlRequest>(&text).unwrap(),
            build
        );
    }

    #[test]
    fn another_version_is_told_so_whatever_its_request_holds() {
        // A version 1 build request (no graph file): the version is named,
        // not the missing field.
        let v1 = r#"{"version":1,"op":"build","refs":["a/b"],"force":false,"keep_going":false}"#;
        let error = parse(v1).unwrap_err().error.unwrap();
        assert!(
            error.contains("speaks control protocol 2, the request 1"),
            "{error}"
        );
        let error = parse("nonsense").unwrap_err().error.unwrap();
        assert!(error.starts_with("not a control request"), "{error}");
        assert_eq!(
            parse(r#"{"version":2,"op":"live"}"#).unwrap(),
            ControlOp::Live
        );
    }
}
