//! The control socket of a running build: how other `databuild` processes
//! submit builds, cancel them and taint partitions while one process holds
//! the store (DESIGN.md "BEL ownership").
//!
//! Protocol: one JSON object per line over a unix socket, one request and
//! one reply per connection. Every request carries [`PROTOCOL_VERSION`]; a
//! build speaking another version refuses with a reply that says so.
//!
//! ```text
//! → {"version":1,"op":"build","refs":["daily/date=2024-01-01"],"force":false,"keep_going":false}
//! ← {"ok":true,"build_request_id":"0193…"}
//! → {"version":1,"op":"cancel","build_request_id":"0193…"}
//! ← {"ok":false,"error":"build request 0193… is not running"}
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use databuild_core::orchestrator::BuildOptions;
use databuild_core::{BuildHandle, Orchestrator, PartitionRef};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::CliError;

/// The version of the protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

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
}

impl ControlReply {
    fn refused(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            build_request_id: None,
        }
    }
}

/// A listening control socket. Dropping it stops listening and removes
/// the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    submitted: Arc<Mutex<Vec<BuildHandle>>>,
}

impl ControlServer {
    /// Listens on `path` for requests to `orchestrator`. The caller holds
    /// the store, so a socket file left by a build that died is stale and
    /// replaced.
    pub fn start(path: &Path, orchestrator: Orchestrator) -> Result<Self, CliError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(CliError::io(path))?;
        // Only its owner may connect (connecting needs write permission).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(CliError::io(path))?;
        }
        let submitted: Arc<Mutex<Vec<BuildHandle>>> = Arc::default();
        let task = tokio::spawn({
            let submitted = Arc::clone(&submitted);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let orchestrator = orchestrator.clone();
                    let submitted = Arc::clone(&submitted);
                    tokio::spawn(async move {
                        let _ = serve(stream, &orchestrator, &submitted).await;
                    });
                }
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            task,
            submitted,
        })
    }

    /// The builds other processes submitted, handed out once (the holder
    /// of the store waits for them before it exits).
    pub fn take_submitted(&self) -> Vec<BuildHandle> {
        std::mem::take(&mut *self.submitted.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    stream: UnixStream,
    orchestrator: &Orchestrator,
    submitted: &Mutex<Vec<BuildHandle>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(1 << 20))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Err(e) => ControlReply::refused(format!("not a control request: {e}")),
        Ok(r) if r.version != PROTOCOL_VERSION => ControlReply::refused(format!(
            "this build speaks control protocol {PROTOCOL_VERSION}, the request {}: use the same databuild version, or wait for the running build to end",
            r.version
        )),
        Ok(r) => handle(r.op, orchestrator, submitted).await,
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

async fn handle(
    op: ControlOp,
    orchestrator: &Orchestrator,
    submitted: &Mutex<Vec<BuildHandle>>,
) -> ControlReply {
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
        } => {
            let wanted = match refs(&wanted) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            let handle = orchestrator.start(
                &wanted,
                BuildOptions::default().force(force).keep_going(keep_going),
            );
            let id = handle.build_request_id().to_owned();
            submitted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
            ControlReply {
                ok: true,
                error: None,
                build_request_id: Some(id),
            }
        }
        ControlOp::Cancel { build_request_id } => {
            match orchestrator.cancel(&build_request_id, "cancelled from the command line") {
                Ok(()) => ControlReply {
                    ok: true,
                    ..ControlReply::default()
                },
                Err(e) => ControlReply::refused(e.to_string()),
            }
        }
        ControlOp::Taint { partitions } => {
            let partitions = match refs(&partitions) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            match orchestrator.taint(&partitions).await {
                Ok(()) => ControlReply {
                    ok: true,
                    ..ControlReply::default()
                },
                Err(e) => ControlReply::refused(e.to_string()),
            }
        }
    }
}

/// Sends `op` to the build listening on `socket` and returns its reply.
pub async fn send(socket: &Path, op: ControlOp) -> Result<ControlReply, CliError> {
    let fail = |reason: String| CliError::Control {
        socket: socket.to_path_buf(),
        reason,
    };
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        fail(format!(
            "cannot connect ({e}); the process holding the store may be starting or stopping: try again"
        ))
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(&ControlRequest {
        version: PROTOCOL_VERSION,
        op,
    })
    .map_err(|e| fail(e.to_string()))?;
    text.push('\n');
    write
        .write_all(text.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(read.take(1 << 20))
        .read_line(&mut line)
        .await
        .map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| fail(format!("an unreadable reply {line:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let r = ControlRequest {
            version: 1,
            op: ControlOp::Cancel {
                build_request_id: "b1".into(),
            },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"op":"cancel","build_request_id":"b1"}"#
        );
        assert_eq!(serde_json::from_str::<ControlRequest>(&text).unwrap(), r);
    }
}
