//! The home directory: the BEL, the run logs, the runs' directories and
//! the control socket of a running build.

use std::path::{Path, PathBuf};

use databuild_bel_sqlite::SqliteBel;
use databuild_core::{BelError, BelSink};
use sha2::{Digest, Sha256};

use crate::CliError;

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
