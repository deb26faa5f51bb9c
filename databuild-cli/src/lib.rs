//! The `databuild` command.
//!
//! A graph definition file (TOML, see [`graph_file`]) describes external
//! jobs in the DataBuild job protocol; the command builds partitions of it
//! on the local executor (runner mode: jobs outlive the command) or on
//! Docker engines, with the build event log and the run logs in
//! `./.databuild/` (`--home`, or `DATABUILD_HOME`):
//!
//! ```text
//! databuild build 'weekly/week_end=2024-01-07'   # live progress; exit 0 when all is built
//! databuild analyze --format mermaid <ref>...    # the plan, without running it
//! databuild status --pattern 'daily/.*'          # the catalog in short, and the open requests
//! databuild events --follow                      # the BEL, as it grows
//! databuild logs <job-run-id> --follow           # one run's output
//! databuild explain <ref>                        # why a partition is, or is not, built
//! databuild taint <ref>... / cancel <id>         # through the running build, if any
//! databuild trace <id> -o trace.json             # open in https://ui.perfetto.dev
//! databuild report <id> -o report.html           # one self-contained page
//! databuild logs --build <id>                    # a request's combined log
//! databuild analyze --save plan.pb <ref>...      # keep a plan ...
//! databuild build --plan plan.pb                 # ... and run exactly it later
//! databuild agent                                # run $DATABUILD_PLAN inside a node's environment
//! ```
//!
//! Commands that only read (status, events, logs, explain, trace, report)
//! open the store read-only and never wait for a running build.
//!
//! # Concurrent builds
//!
//! One process at a time holds the store (the BEL, `<home>/bel.sqlite`,
//! locked through `<home>/bel.sqlite.lock`): the first `build`. A second
//! `build` meanwhile does not wait for the lock; instead:
//!
//! - **It hands its request to the holder** through the holder's control
//!   socket ([`control`]) and follows the request in the log, with the
//!   same progress display, summary and exit codes as a build of its own
//!   (a failed request prints the reason the log gives). The holder runs
//!   it beside its own requests, so the two share runs instead of racing.
//!   Its Ctrl-C cancels its request in the holder.
//! - **Its graph file must build what the holder's builds.** The request
//!   carries the path of its graph file and a digest of what that file
//!   builds ([`graph_file::GraphFile::definitions_digest`]: each job's
//!   label, entrypoint, environment, image, output patterns and working
//!   directory; parallelism, pools, retries and timeouts are left out).
//!   The holder refuses a request whose digest differs from its own, and
//!   the second `build` exits 2 with a message naming both files. A copy
//!   of the holder's file under another name is accepted. Refs no job of
//!   the file builds are refused before anything is sent (exit 2).
//! - **It waits, for a while, for a socket that is not there.** The
//!   holder binds its socket as soon as it takes the store (a request sent
//!   while it loads waits in the socket's queue), but a `build` started in
//!   the same instant may look first, and a holder that is stopping has
//!   already removed its socket. The second `build` then tries again every
//!   few tens of milliseconds, checking each time whether the store became
//!   free (then it takes the store and runs as the holder), for up to
//!   [`control::HOLDER_WAIT`] (10 s). Past that it exits 1, saying that the
//!   holder (with its pid) did not answer.
//! - **When the holder stops**, it first removes its socket and stops
//!   listening, then finishes serving the requests it had already
//!   accepted and runs each of them to its end before it lets the store
//!   go: no request it accepted is left open. A request sent while it
//!   stops finds no socket and waits as above; a holder that still runs
//!   others' long requests can outlast the wait. Meanwhile a Ctrl-C in a
//!   `build` whose request it still runs cannot reach it (the request runs
//!   to its end; a second Ctrl-C stops following it).
//! - **If the holder dies** (killed) before the request ends, the second
//!   `build`, still following it, finds the store free, takes it and
//!   resumes the request where the holder left it.
//!
//! `taint` and `cancel` reach the holder the same way (and act on the
//! store directly when no build holds it). A saved plan (`build --plan`)
//! runs only in the process that holds the store: with the store held it
//! is refused at once.
//!
//! `status` lists the open build requests (id, state, what they asked)
//! and says whether the build holding the store runs each one, or a build
//! that stopped left it open. With no build holding the store, `cancel
//! <id>` takes up such a request, stops its runs and records its end; the
//! other open requests stay open for the next `build`, which resumes them.
//!
//! Exit codes: 0 built (or done), 1 build failed, 2 usage or configuration
//! error (a bad graph file, an unknown id or ref, a graph file that differs
//! from the running build's), 130 interrupted. The first Ctrl-C (or
//! SIGTERM) during `build` cancels the request, and those it resumed, and
//! waits for their runs to stop; requests other commands handed to it go
//! on to their end (a Ctrl-C while it waits for them cancels the resumed
//! ones if it was the first). Another exits at once: the runner keeps the
//! jobs going and the next `build` takes up what is left open.
//!
//! The library half of this crate holds what the command is made of, for
//! tests and for hosts that want the same pictures of a build:
//! [`graph_file::GraphFile`], [`timeline::Timeline`],
//! [`trace::chrome_trace`], [`report::html_report`], [`saved_plan`] and
//! the [`agent`]'s stream. A graph file read
//! into a graph, and a bad one refused with its line and field:
//!
//! ```
//! use std::path::Path;
//! use databuild_cli::graph_file::{GraphFile, GraphFileError};
//! use databuild_core::PartitionRef;
//!
//! let text = r#"
//! [[job]]
//! label = "//demo:daily"
//! entrypoint = ["python3", "jobs/daily.py"]
//! outputs = ['daily/date=\d{4}-\d{2}-\d{2}']
//! timeout = "10m"
//! "#;
//! let file = GraphFile::parse(Path::new("/srv/demo/databuild.toml"), text)?;
//! // Jobs run in the file's directory, wherever the command is run from.
//! assert_eq!(file.jobs[0].working_dir, Path::new("/srv/demo"));
//! let graph = file.graph()?;
//! let job = graph.lookup(&PartitionRef::new("daily/date=2024-01-03")?)?;
//! assert_eq!(job.label().as_str(), "//demo:daily");
//!
//! let bad = text.replace("10m", "10 moons");
//! match GraphFile::parse(Path::new("databuild.toml"), &bad) {
//!     Err(GraphFileError::Invalid { line, field, .. }) => {
//!         assert_eq!((line, field.as_str()), (6, "job[0].timeout"));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod agent;
pub mod commands;
pub mod control;
mod error;
pub mod graph_file;
pub mod home;
pub mod progress;
pub mod report;
pub mod routing;
pub mod saved_plan;
pub mod timeline;
pub mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use error::CliError;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "databuild", version, about = "Partition-oriented data builds")]
pub struct Cli {
    /// Where the BEL (`bel.sqlite`) and the run logs live.
    #[arg(
        long,
        global = true,
        env = "DATABUILD_HOME",
        default_value = ".databuild"
    )]
    pub home: PathBuf,
    /// The graph definition file (for build, analyze, and taint or cancel
    /// with no build running).
    #[arg(
        long,
        short = 'g',
        global = true,
        env = "DATABUILD_GRAPH",
        default_value = "databuild.toml"
    )]
    pub graph: PathBuf,
    /// A settings file (TOML: parallelism, liveness-timeout,
    /// heartbeat-interval, keepalive-interval, keepalive-timeout,
    /// request-timeout, a `[labels]` table, ...). `DATABUILD_*` variables override it;
    /// see `databuild_core::settings` for every setting and its default.
    #[arg(long, global = true, env = "DATABUILD_SETTINGS")]
    pub settings: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Builds partitions, with a live progress display.
    Build {
        /// The partitions.
        #[arg(required_unless_present = "plan")]
        refs: Vec<String>,
        /// Run this saved plan (`analyze --save`) instead of analysing.
        #[arg(long, conflicts_with = "refs")]
        plan: Option<PathBuf>,
        /// Rebuild what was asked even if it is available.
        #[arg(long)]
        force: bool,
        /// Keep building what does not depend on a failure.
        #[arg(long)]
        keep_going: bool,
        /// Plain progress lines instead of the live display.
        #[arg(long)]
        plain: bool,
    },
    /// Prints the plan for partitions without running it.
    Analyze {
        /// The partitions.
        #[arg(required = true)]
        refs: Vec<String>,
        /// How to print it.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Plan what is already available too.
        #[arg(long)]
        force: bool,
        /// Also save the plan, with a digest of the job definitions it was
        /// made from, for `build --plan`.
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// The partition catalog in short, and the open build requests (who
    /// runs each).
    Status {
        /// Only partitions matching this regex (anchored), listed.
        #[arg(long)]
        pattern: Option<String>,
    },
    /// The build event log.
    Events {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Keep printing events as they are appended.
        #[arg(long)]
        follow: bool,
        /// Only the events of this job run.
        #[arg(long)]
        job_run: Option<String>,
        /// Only the events of this build request.
        #[arg(long)]
        build: Option<String>,
        /// Only events naming this partition, and those of the runs that
        /// build it.
        #[arg(long)]
        partition: Option<String>,
        /// One proto3 JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// A job run's log.
    Logs {
        /// The job run.
        #[arg(required_unless_present = "build")]
        job_run_id: Option<String>,
        /// Keep printing until the run ends.
        #[arg(long)]
        follow: bool,
        /// Instead of one run's: a build request's combined log, its events
        /// and all its runs' lines merged by time.
        #[arg(long, conflicts_with_all = ["job_run_id", "follow"])]
        build: Option<String>,
    },
    /// Why a partition is or is not built.
    Explain {
        /// The partition.
        partition: String,
    },
    /// Marks partitions invalid, so the next build rebuilds them.
    Taint {
        /// The partitions.
        #[arg(required = true)]
        refs: Vec<String>,
    },
    /// Cancels a build request: through the build holding the store, or,
    /// when none does, one a stopped build left open (taken up, its runs
    /// stopped, its end recorded).
    Cancel {
        /// The build request.
        build_request_id: String,
    },
    /// Writes a build request's runs in the Chrome trace event format
    /// (Perfetto, chrome://tracing).
    Trace {
        /// The build request.
        build_request_id: String,
        /// Where to write it.
        #[arg(short, long, default_value = "trace.json")]
        output: PathBuf,
    },
    /// Writes one self-contained HTML page about a build request: its
    /// plan, a timeline of its runs, its failures with their logs' tails.
    Report {
        /// The build request.
        build_request_id: String,
        /// Where to write it.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
    /// Runs a saved plan inside its environment (a node of seed 003): the
    /// plan at `DATABUILD_PLAN` (default `/databuild/plan.pb`), the jobs of
    /// the graph file at `DATABUILD_GRAPH` (default
    /// `/databuild/databuild.toml`), settings from `DATABUILD_*` only;
    /// streams its events, keep-alives and a result as JSON lines on stdout
    /// (see `databuild_cli::agent`).
    Agent,
    /// The local executor's per-run supervisor (started by `build`).
    #[command(hide = true)]
    Runner {
        /// `run <run_dir>`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How `analyze` prints a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// One task per line, in the order they can run.
    Text,
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz.
    Dot,
    /// The plan's proto3 JSON.
    Json,
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Runner { args } = &cli.command {
        let code = databuild_executor_local::runner_main_with(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("databuild: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("databuild: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
