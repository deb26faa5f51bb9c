//! The home directory: the BEL, the run logs, the runs' directories and
//! the control socket of a running build.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use databuild_bel_sqlite::SqliteBel;
use databuild_core::{BelError, BelSink};
use sha2::{Digest, Sha256};

use crate::CliError;
use crate::control::{self, ControlOp, ControlReply, HOLDER_WAIT, SendError};

/// The store taken by this process, or the answer of the process that
/// holds it.
#[derive(Debug)]
pub(crate) enum Reached {
    /// This process holds the store now.
    Held(SqliteBel),
    /// The holder's answer to the request.
    Answered(ControlReply),
}

/// A home directory (`./.databuild` by default).
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// The home at `dir` (made absolute, so that jobs started elsewhere
    /// find it).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().map_or(dir.clone(), |cwd| cwd.join(&dir))
        };
        Self { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The BEL: `<home>/bel.sqlite`.
    pub fn bel_path(&self) -> PathBuf {
        self.dir.join("bel.sqlite")
    }

    /// Opens the BEL to read, without waiting for a build that writes it.
    pub fn reader(&self) -> Result<SqliteBel, CliError> {
        let path = self.bel_path();
        if !path.exists() {
            return Err(CliError::NoStore { path });
        }
        Ok(SqliteBel::open_read_only(&path)?)
    }

    /// Opens the BEL to write (creating the home), or
    /// [`BelError::Locked`] while another process writes it.
    pub fn writer(&self) -> Result<SqliteBel, CliError> {
        std::fs::create_dir_all(&self.dir).map_err(CliError::io(&self.dir))?;
        match SqliteBel::open(self.bel_path()) {
            Ok(bel) => Ok(bel),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the store, or, while another process holds it, sends `op` to
    /// that process's control socket. A socket that does not answer (its
    /// holder is starting or stopping) is tried again, the store checked
    /// again before each try, for up to [`HOLDER_WAIT`].
    pub(crate) async fn take_or_send(&self, op: &ControlOp) -> Result<Reached, CliError> {
        let socket = self.control_socket();
        let mut deadline: Option<Instant> = None;
        let mut pause = Duration::from_millis(10);
        loop {
            let holder = match self.writer() {
                Ok(bel) => return Ok(Reached::Held(bel)),
                Err(CliError::Bel(BelError::Locked { holder, .. })) => holder,
                Err(e) => return Err(e),
            };
            let reason = match control::send(&socket, op.clone()).await {
                Ok(reply) => return Ok(Reached::Answered(reply)),
                Err(SendError::Failed(reason)) => return Err(CliError::Control { socket, reason }),
                Err(SendError::Unreachable(reason)) => reason,
            };
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + HOLDER_WAIT);
            if Instant::now() >= deadline {
                return Err(CliError::HolderUnreachable {
                    home: self.dir.clone(),
                    socket,
                    holder,
                    waited: HOLDER_WAIT,
                    reason,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The control socket of the build that holds the store:
    /// `<home>/control.sock`, or, when that path is too long for a unix
    /// socket (108 bytes), a name hashed from the home under
    /// `$XDG_RUNTIME_DIR` or `/tmp`.
    pub fn control_socket(&self) -> PathBuf {
        let plain = self.dir.join("control.sock");
        if plain.as_os_str().len() < 100 {
            return plain;
        }
        let digest = Sha256::digest(self.dir.as_os_str().as_encoded_bytes());
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join(format!("databuild-{name}.sock"))
    }

    /// The log of a job run, if it has one:
    /// `<home>/logs/<date>/<job_run_id>.jsonl`.
    pub fn log_of(&self, job_run_id: &str) -> Option<PathBuf> {
        let logs = self.dir.join("logs");
        let mut days: Vec<PathBuf> = std::fs::read_dir(&logs)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        days.sort();
        let name = format!("{job_run_id}.jsonl");
        days.into_iter()
            .rev()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    }
}

/// True when `e` says another process writes the store.
pub(crate) fn is_locked(e: &CliError) -> bool {
    matches!(e, CliError::Bel(BelError::Locked { .. }))
}

/// Reads every stored event matching `filter`, in pages.
pub(crate) async fn read_all(
    bel: &dyn BelSink,
    since: u64,
    filter: &databuild_core::EventFilter,
) -> Result<Vec<databuild_core::BuildEvent>, CliError> {
    let mut out = Vec::new();
    let mut at = since;
    loop {
        let page = bel.read(at, filter, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        at = last.seq;
        out.extend(page);
    }
}
