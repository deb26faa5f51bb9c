use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{BoxError, FnJobContext, JobLabel};

/// How an executor launches a run of a job.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Launch {
    /// Rust code run in process (an [`FnJob`](super::FnJob)).
    InProcess(InProcessExec),
    /// An external program in the DataBuild job protocol.
    Process(ProcessLaunch),
    /// A node agent that runs a subplan (a [`SubgraphJob`](super::SubgraphJob)'s
    /// task) inside its environment.
    Subgraph(SubgraphLaunch),
}

impl Launch {
    /// A short description for logs and digests.
    pub fn describe(&self) -> String {
        match self {
            Launch::InProcess(_) => "in-process".to_owned(),
            Launch::Process(p) => match &p.image {
                None => format!("process {:?} env {:?}", p.argv, p.env),
                Some(image) => format!("process {:?} env {:?} image {image:?}", p.argv, p.env),
            },
            Launch::Subgraph(s) => format!(
                "subgraph agent {:?} env {:?} image {:?} graph file {:?} jobs {}",
                s.agent, s.env, s.image, s.graph_file, s.definitions
            ),
        }
    }
}

/// The exec function of an in-process job.
#[derive(Clone)]
pub struct InProcessExec(
    pub(crate) Arc<dyn Fn(FnJobContext) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>,
);

impl InProcessExec {
    /// Runs the job's exec function with `context`.
    pub fn call(&self, context: FnJobContext) -> BoxFuture<'static, Result<(), BoxError>> {
        (self.0)(context)
    }
}

impl fmt::Debug for InProcessExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InProcessExec(..)")
    }
}

/// An external program that speaks the job protocol: `<argv> config <ref>...`
/// and `<argv> exec <args>...`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessLaunch {
    /// The entrypoint, an argv list (never a shell string).
    pub argv: Vec<String>,
    /// Environment given to both `config` and `exec`.
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` is the host's current directory (or the
    /// image's, in a container).
    pub working_dir: Option<PathBuf>,
    /// The image to run it in, for executors that run containers; `None`
    /// takes the executor's default image. Other executors ignore it.
    pub image: Option<String>,
}

impl ProcessLaunch {
    /// A launch of `argv` with no extra environment.
    pub fn new(argv: Vec<String>) -> Self {
        Self {
            argv,
            env: BTreeMap::new(),
            working_dir: None,
            image: None,
        }
    }

    /// Runs it in `image` (for executors that run containers).
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }
}

/// How a node agent is launched to run a subplan: seed 003's node executor.
///
/// The subplan travels in the run's config: its only argument is the saved
/// plan ([`encode_saved`](crate::plan::encode_saved)), base64, read back
/// with [`subplan`](Self::subplan). A backend starts `agent` in `image`
/// with the plan at `DATABUILD_PLAN` (the agent's default is
/// `/databuild/plan.pb`) and the graph file at `DATABUILD_GRAPH` (default
/// `/databuild/databuild.toml`), reads the agent's JSON lines (documented
/// with `databuild agent`), and reports its events as
/// [`RunUpdate::NodeEvents`](crate::executor::RunUpdate::NodeEvents).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubgraphLaunch {
    /// The agent's argv (`["/databuild/databuild", "agent"]`).
    pub agent: Vec<String>,
    /// The image the agent runs in: the environment of every task of the
    /// subplan. `None` takes the executor's default image.
    pub image: Option<String>,
    /// The agent's environment (its `DATABUILD_*` settings).
    pub env: BTreeMap<String, String>,
    /// The graph file the subplans are made from, on this host: given to
    /// the agent (mounted, or uploaded to a remote engine). `None` when the
    /// image has it at the agent's default path.
    pub graph_file: Option<PathBuf>,
    /// SHA-256 (hex) of the subgraph's job definitions
    /// ([`definitions_digest`](crate::plan::definitions_digest)).
    pub definitions: String,
}

impl SubgraphLaunch {
    /// The saved subplan a run's config carries.
    pub fn subplan(config: &super::JobConfig) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        match config.args.as_slice() {
            [one] => base64::engine::general_purpose::STANDARD
                .decode(one)
                .map_err(|e| format!("the subplan argument is not base64: {e}")),
            other => Err(format!(
                "a subgraph run's config has one argument, the subplan; this one has {}",
                other.len()
            )),
        }
    }
}

/// SHA-256 (hex) of a label and launch description.
pub(crate) fn definition_digest(label: &JobLabel, launch: &Launch) -> String {
    let mut h = Sha256::new();
    h.update(label.as_str().as_bytes());
    h.update([0]);
    h.update(launch.describe().as_bytes());
    hex(&h.finalize())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
