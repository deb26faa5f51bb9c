//! Runner mode: a small supervisor process per job run that outlives the
//! orchestrator (seed 000's job re-entrance).
//!
//! The executor prepares the run directory (`<state_dir>/runs/<job_run_id>/`,
//! made exclusively: the launch key) with `config.json` and `launch.json`,
//! then starts `<runner argv> run <run_dir>`. The runner leaves the
//! orchestrator's session, starts the job in a process group of its own
//! (config on stdin), writes `pid` (the job's pid and start time), streams
//! stdout and stderr into the run's log (marker lines go to `markers`
//! instead), and when the job has exited and its pipes are drained writes
//! `status` (`code N` or `signal N`) atomically. A later executor rebuilds
//! the run's outcome from `status` and `markers` with the shared scanner, so
//! a run that ended while no orchestrator was alive is collected, and one
//! still running is re-attached.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use databuild_core::executor::{
    ExitStatus, LineKind, LineSplitter, Outcome, OutputScanner, RunLog, Stream,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::proc_stats;

/// What the runner starts, written by the executor as `launch.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunnerLaunch {
    pub(crate) argv: Vec<String>,
    /// The whole environment of the job.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: Option<PathBuf>,
    pub(crate) log_path: PathBuf,
    pub(crate) line_cap: usize,
    pub(crate) drain_grace_ms: u64,
}

/// The entry point of the `databuild-runner` binary (and of any host
/// program that wants to be its own runner): `run <run_dir>`. Returns the
/// process's exit code.
pub fn runner_main() -> i32 {
    runner_main_with(&std::env::args().skip(1).collect::<Vec<_>>())
}

/// [`runner_main`] with its arguments given (`["run", "<run_dir>"]`), for a
/// host whose own argv routes to the runner through a subcommand (the
/// `databuild` CLI's `databuild runner run <run_dir>`).
pub fn runner_main_with(args: &[String]) -> i32 {
    match args {
        [cmd, dir] if cmd == "run" => match run(Path::new(dir)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("databuild-runner: {e}");
                // Whatever happened, a status tells the executor the run is
                // over.
                let _ = write_status(Path::new(dir), "error");
                1
            }
        },
        _ => {
            eprintln!("usage: databuild-runner run <run_dir>");
            2
        }
    }
}

fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // Out of the orchestrator's session: its death or its terminal's hang-up
    // does not reach us.
    let _ = nix::unistd::setsid();
    // Claim the run: a collector that found the run dead before we started
    // claimed it first, and then the job must not run at all.
    if !claim(dir)? {
        return Ok(());
    }
    record_runner(dir, std::process::id())?;
    // Cancelled before it started: it never does.
    if dir.join("cancel").exists() {
        write_status(dir, "canceled")?;
        return Ok(());
    }
    let launch: RunnerLaunch = serde_json::from_slice(&std::fs::read(dir.join("launch.json"))?)?;
    let log = Arc::new(Mutex::new(RunLog::create(&launch.log_path)?));
    let note = |text: &str| {
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = log.note(text);
        let _ = log.flush();
    };
    let program = launch.argv.first().ok_or("no entrypoint")?;
    let mut command = Command::new(program);
    command
        .args(&launch.argv[1..])
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::fs::File::open(dir.join("config.json"))?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if let Some(wd) = &launch.working_dir {
        command.current_dir(wd);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            note(&format!("cannot start {program:?}: {e}"));
            write_status(dir, &format!("spawn {e}"))?;
            return Ok(());
        }
    };
    let pid = child.id();
    let start = proc_stats::start_time(pid).unwrap_or(0);
    write_atomically(&dir.join("pid"), &format!("{pid} {start}\n"))?;
    note(&format!(
        "launched pid {pid} (runner {}): {:?}",
        std::process::id(),
        launch.argv
    ));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut markers = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("markers"))?;
    let cap = launch.line_cap;
    let alive = Arc::new(Alive::new(dir));
    let out_log = Arc::clone(&log);
    let out_done = done_tx.clone();
    let out_alive = Arc::clone(&alive);
    let out = std::thread::spawn(move || {
        let mut scanner = OutputScanner::new();
        pump(stdout, cap, |line, partial| {
            out_alive.sign();
            let kind = if partial {
                LineKind::Output
            } else {
                scanner.line(line)
            };
            if kind == LineKind::Marker {
                let _ = markers.write_all(line);
                let _ = markers.write_all(b"\n");
            } else if kind == LineKind::Output {
                let mut log = out_log.lock().unwrap_or_else(|e| e.into_inner());
                let _ = log.write(Stream::Stdout, line, partial);
            }
        });
        let _ = out_done.send(());
    });
    let err_log = Arc::clone(&log);
    let err = std::thread::spawn(move || {
        pump(stderr, cap, |line, partial| {
            alive.sign();
            let mut log = err_log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = log.write(Stream::Stderr, line, partial);
        });
        let _ = done_tx.send(());
    });
    let status = child.wait()?;
    // The pipes may be held by something the job left: drain them for a
    // while, then kill what is left of its group.
    let deadline = std::time::Instant::now() + Duration::from_millis(launch.drain_grace_ms);
    let mut drained = 0;
    while drained < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => drained += 1,
            Err(_) => break,
        }
    }
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
    let _ = out.join();
    let _ = err.join();
    let exit = ExitStatus::from(status);
    note(&format!("exited with {exit}"));
    let status = match exit {
        ExitStatus::Code(c) => format!("code {c}"),
        ExitStatus::Signal(s) => format!("signal {s}"),
    };
    write_status(dir, &status)?;
    Ok(())
}

/// Reads a pipe to its end, handing over capped lines.
fn pump(mut pipe: impl Read, cap: usize, mut line: impl FnMut(&[u8], bool)) {
    let mut split = LineSplitter::new(cap);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => split.push(&buf[..n], &mut line),
        }
    }
    split.finish(&mut line);
}

/// Writes aside (a name of this process's own), then renames into place.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn write_status(dir: &Path, status: &str) -> std::io::Result<()> {
    write_atomically(&dir.join("status"), &format!("{status}\n"))
}

/// `<run_dir>/alive`, touched (at most every
/// [`OUTPUT_SIGN_EVERY`](crate::executor::OUTPUT_SIGN_EVERY)) whenever the
/// job prints a line: the executor's signs of life from the job's output.
struct Alive {
    file: Option<std::fs::File>,
    last: Mutex<Option<std::time::Instant>>,
}

impl Alive {
    fn new(dir: &Path) -> Self {
        Self {
            file: std::fs::File::create(dir.join("alive")).ok(),
            last: Mutex::new(None),
        }
    }

    fn sign(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < crate::executor::OUTPUT_SIGN_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        if let Some(f) = &self.file {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }
}

/// When the job last printed, as the runner recorded it.
pub(crate) fn last_sign(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(dir.join("alive")).ok()?.modified().ok()
}

/// The outcome of a run whose runner wrote `status`: the shared scanner
/// over the recorded marker lines, then the exit. `None` while the run has
/// no status.
pub(crate) fn collect(dir: &Path) -> Option<Outcome> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let status = status.trim();
    let exit = if let Some(c) = status.strip_prefix("code ") {
        c.parse().ok().map(ExitStatus::Code)
    } else if let Some(s) = status.strip_prefix("signal ") {
        s.parse().ok().map(ExitStatus::Signal)
    } else {
        None
    };
    if status == "canceled" {
        return Some(Outcome::Canceled {
            reason: "canceled before it started".into(),
        });
    }
    let Some(exit) = exit else {
        let retryable = !status.starts_with("spawn");
        return Some(Outcome::Failed {
            stage: databuild_core::proto::FailureStage::Launch,
            reason: format!("the runner could not run the job: {status}"),
            exit: None,
            retryable,
        });
    };
    let mut scanner = OutputScanner::new();
    if let Ok(f) = std::fs::File::open(dir.join("markers")) {
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            scanner.line(&line);
        }
    }
    Some(scanner.finish(exit))
}

/// The job's pid, once the runner recorded it.
pub(crate) fn job_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("pid")).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (proc_stats::start_time(pid) == Some(start)).then_some(pid)
}

/// Whether the runner recorded in `runner` (pid and start time) is alive.
pub(crate) fn runner_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("runner")) else {
        return false;
    };
    let mut it = text.split_whitespace();
    let (Some(pid), Some(start)) = (
        it.next().and_then(|p| p.parse::<u32>().ok()),
        it.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return false;
    };
    proc_stats::start_time(pid) == Some(start)
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Takes the run's claim (`claim`, created exclusively). The runner takes
/// it before starting the job; a collector that finds no live runner and no
/// status takes it to be sure the job never starts. False when the other
/// side has it.
pub(crate) fn claim(dir: &Path) -> std::io::Result<bool> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join("claim"))
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Records the runner's pid and start time in the run directory.
pub(crate) fn record_runner(dir: &Path, pid: u32) -> std::io::Result<()> {
    let start = proc_stats::start_time(pid).unwrap_or(0);
    write_atomically(&dir.join("runner"), &format!("{pid} {start}\n"))
}
