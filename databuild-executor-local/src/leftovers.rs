//! Direct mode after a crash: job process groups a dead executor left
//! running are killed when the next executor on the same runs directory
//! starts, so a run the new orchestrator declares lost is not still writing
//! while its replacement runs.
//!
//! Each live run has `<runs_dir>/<job_run_id>.pid` holding its pid and start
//! time (the pair names one process for good). Every executor holds a
//! shared lock on `<runs_dir>/executor.lock` for its life; the sweep runs
//! only when an exclusive lock can be had, that is when no other live
//! executor uses the directory.

use std::fs::File;
use std::path::Path;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::proc_stats;

/// Records a launched run's pid and start time.
pub(crate) fn record(runs_dir: &Path, job_run_id: &str, pid: u32) {
    let Some(start) = proc_stats::start_time(pid) else {
        return;
    };
    let path = runs_dir.join(format!("{job_run_id}.pid"));
    if let Err(e) = std::fs::write(&path, format!("{pid} {start}\n")) {
        tracing::warn!(path = %path.display(), error = %e, "recording a run's pid failed");
    }
}

/// Takes the runs directory's lock, first killing what a dead executor
/// left when no other executor is alive. Returns the lock (shared) to hold,
/// and how many leftover groups were killed.
pub(crate) fn sweep(runs_dir: &Path) -> std::io::Result<(File, usize)> {
    std::fs::create_dir_all(runs_dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(runs_dir.join("executor.lock"))?;
    let mut killed = 0;
    if lock.try_lock().is_ok() {
        for entry in std::fs::read_dir(runs_dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                continue;
            }
            if let Some((pid, start)) = std::fs::read_to_string(&path).ok().and_then(|t| {
                let mut it = t.split_whitespace();
                Some((
                    it.next()?.parse::<u32>().ok()?,
                    it.next()?.parse::<u64>().ok()?,
                ))
            }) && proc_stats::start_time(pid) == Some(start)
                && let Ok(raw) = i32::try_from(pid)
                && killpg(Pid::from_raw(raw), Signal::SIGKILL).is_ok()
            {
                tracing::warn!(
                    pid,
                    "killed the process group of a run a dead executor left"
                );
                killed += 1;
            }
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("json"));
        }
        lock.unlock()?;
    }
    lock.lock_shared()?;
    Ok((lock, killed))
}
