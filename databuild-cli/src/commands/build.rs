//! `databuild build <ref>...`.
//!
//! The process that takes the store runs the request (and the requests
//! other commands hand it through the control socket, and those a stopped
//! build left open); a process that finds the store held hands its request
//! to the holder and follows it in the log, taking the store over if the
//! holder dies before the request ends.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::now_ns;
use databuild_core::orchestrator::BuildOptions;
use databuild_core::state::RequestState;
use databuild_core::{
    BelSink, BuildHandle, BuildOutcome, EventFilter, JobGraph, Orchestrator, PartitionRef,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::CliError;
use crate::control::{ControlOp, ControlReply, ControlSocket, GraphIdentity};
use crate::graph_file::GraphFile;
use crate::home::{Home, Reached, is_locked};
use crate::progress::Progress;

/// What to build: refs, or a saved plan.
pub(super) struct What<'a> {
    pub(super) refs: &'a [String],
    pub(super) plan: Option<&'a Path>,
}

/// How the build is drawn and what it asks.
#[derive(Clone, Copy)]
pub(super) struct How {
    pub(super) force: bool,
    pub(super) keep_going: bool,
    pub(super) plain: bool,
}

/// The request the holder of the store follows.
enum Main {
    /// A new one: these refs, or a saved plan.
    New {
        plan: Option<Box<JobGraph>>,
        options: BuildOptions,
    },
    /// One handed to a holder that stopped before it ended: resumed here.
    TakeUp(String),
}

pub(super) async fn run(
    home: &Home,
    graph: &Path,
    settings: &databuild_core::settings::Settings,
    what: What<'_>,
    how: How,
) -> Result<ExitCode, CliError> {
    let file = GraphFile::read(graph)?;
    let saved = match what.plan {
        Some(path) => Some(crate::saved_plan::load(path, &file.graph()?)?),
        None => None,
    };
    let wanted = match &saved {
        Some(plan) => plan.requested().to_vec(),
        None => checked_refs(&file, what.refs)?,
    };
    let how = How {
        plain: how.plain || !std::io::stderr().is_terminal(),
        ..how
    };
    let identity = GraphIdentity {
        file: absolute(&file.path),
        definitions: file.definitions_digest()?,
    };
    let options = BuildOptions::default()
        .force(how.force)
        .keep_going(how.keep_going);
    let held = |bel, main| {
        Holder {
            home,
            file: &file,
            settings,
            identity: identity.clone(),
            wanted: &wanted,
            plain: how.plain,
        }
        .hold(bel, main)
    };
    if let Some(plan) = saved {
        return match home.writer() {
            Ok(bel) => {
                let plan = Some(Box::new(plan));
                held(bel, Main::New { plan, options }).await
            }
            Err(e) if is_locked(&e) => Err(CliError::Control {
                socket: home.control_socket(),
                reason: "a saved plan runs only in the build that holds the store: wait for the running build to end".into(),
            }),
            Err(e) => Err(e),
        };
    }
    let op = ControlOp::Build {
        refs: what.refs.to_vec(),
        force: how.force,
        keep_going: how.keep_going,
        graph_file: identity.file.clone(),
        definitions: identity.definitions.clone(),
    };
    let new = Main::New {
        plan: None,
        options,
    };
    match home.take_or_send(&op).await? {
        Reached::Held(bel) => held(bel, new).await,
        Reached::Answered(reply) => {
            let id = accepted(home, &identity, reply)?;
            match follow_submitted(home, &id, how.plain).await? {
                Submitted::Ended(code) => Ok(code),
                Submitted::HolderGone { bel, open: true } => held(bel, Main::TakeUp(id)).await,
                // Accepted, but never recorded: asked again, here.
                Submitted::HolderGone { bel, open: false } => held(bel, new).await,
            }
        }
    }
}

/// The refs, each one a job of the file builds (the same check the
/// planner makes first, so that a request handed to the holder of the
/// store is refused here, as a usage error, like one run here).
fn checked_refs(file: &GraphFile, refs: &[String]) -> Result<Vec<PartitionRef>, CliError> {
    let wanted = super::parse_refs(refs)?;
    let graph = file.graph()?;
    let mut sorted: Vec<&PartitionRef> = wanted.iter().collect();
    sorted.sort();
    for r in sorted {
        graph
            .lookup(r)
            .map_err(|e| CliError::Plan(databuild_core::PlanError::Lookup(e)))?;
    }
    Ok(wanted)
}

/// `path` made absolute (as the holder names it in a refusal).
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    })
}

/// The id of the request the holder started, or why it refused.
fn accepted(home: &Home, ours: &GraphIdentity, reply: ControlReply) -> Result<String, CliError> {
    match reply {
        ControlReply {
            ok: true,
            build_request_id: Some(id),
            ..
        } => Ok(id),
        ControlReply {
            graph_file: Some(holders),
            ..
        } => Err(CliError::GraphMismatch {
            home: home.dir().to_path_buf(),
            ours: ours.file.clone(),
            holders,
        }),
        reply => Err(CliError::Control {
            socket: home.control_socket(),
            reason: reply.error.unwrap_or_else(|| "no build request id".into()),
        }),
    }
}

/// The process that holds the store, and what it builds.
struct Holder<'a> {
    home: &'a Home,
    file: &'a GraphFile,
    settings: &'a databuild_core::settings::Settings,
    identity: GraphIdentity,
    wanted: &'a [PartitionRef],
    plain: bool,
}

impl Holder<'_> {
    /// Runs `main` with the store `bel`, serving the control socket
    /// meanwhile; then stops taking requests and waits for every request
    /// this process runs (resumed ones, submitted ones), whatever became
    /// of `main`.
    async fn hold(self, bel: SqliteBel, main: Main) -> Result<ExitCode, CliError> {
        // Bound at once: a request sent while the orchestrator loads waits
        // in the socket's queue.
        let socket = ControlSocket::bind(&self.home.control_socket())?;
        let bel = Arc::new(bel);
        let head = bel.head().await?;
        let started = Instant::now();
        let orchestrator = super::orchestrator(
            self.home,
            self.file,
            self.settings,
            Arc::clone(&bel) as Arc<dyn BelSink>,
        )
        .await?;
        // From here on an interrupt is ours to handle (before, it ends the
        // process, and what the load resumed is resumed again next time).
        let mut interrupts = Interrupts::new();
        let mut resumed = orchestrator.resumed();
        for r in &resumed {
            eprintln!(
                "resuming build request {} (left open by a build that stopped)",
                r.build_request_id()
            );
        }
        let server = socket.serve(orchestrator.clone(), self.identity.clone());
        let (handle, since, taken_up) = match main {
            Main::New {
                plan: Some(plan),
                options,
            } => (Some(orchestrator.start_plan(*plan, options)), head, None),
            Main::New {
                plan: None,
                options,
            } => (Some(orchestrator.start(self.wanted, options)), head, None),
            Main::TakeUp(id) => {
                let at = resumed.iter().position(|r| r.build_request_id() == id);
                (at.map(|i| resumed.swap_remove(i)), 0, Some(id))
            }
        };
        let followed = match handle {
            Some(handle) => {
                let id = handle.build_request_id().to_owned();
                eprintln!("build request {id}");
                let events = bel.subscribe(since, EventFilter::build_request(&id));
                // The first Ctrl-C cancels what this process started or
                // took up; requests other commands submitted go on.
                let ours: Vec<String> = std::iter::once(id)
                    .chain(resumed.iter().map(|r| r.build_request_id().to_owned()))
                    .collect();
                let cancel = {
                    let orchestrator = orchestrator.clone();
                    move || {
                        for id in &ours {
                            let _ = orchestrator.cancel(id, "interrupted (Ctrl-C)");
                        }
                    }
                };
                let (outcome, interrupted) = follow(
                    events,
                    handle.outcome(),
                    cancel,
                    self.plain,
                    &mut interrupts,
                )
                .await;
                Some((outcome, interrupted))
            }
            None => None,
        };
        // No request this process accepted or took up stays open: stop
        // taking requests, then wait for every one of them.
        let submitted = server.stop().await;
        let interrupted = followed.as_ref().is_some_and(|(_, i)| *i);
        drain(
            &orchestrator,
            resumed,
            submitted,
            interrupted,
            &mut interrupts,
        )
        .await;
        let Some((outcome, interrupted)) = followed else {
            // Taken up, but it had ended meanwhile (or was closed at load).
            return Ok(ended_in_store(&orchestrator, taken_up.as_deref(), started));
        };
        let outcome = outcome?;
        summary(&outcome, started.elapsed(), self.wanted);
        Ok(exit_code(outcome.succeeded(), interrupted))
    }
}

/// Waits for the other requests this process runs, reporting each as it
/// ends. A Ctrl-C (the first, when the main request was not interrupted)
/// cancels the resumed ones; another exits at once.
async fn drain(
    orchestrator: &Orchestrator,
    resumed: Vec<BuildHandle>,
    submitted: Vec<BuildHandle>,
    mut interrupted: bool,
    interrupts: &mut Interrupts,
) {
    let resumed_ids: Vec<String> = resumed
        .iter()
        .map(|r| r.build_request_id().to_owned())
        .collect();
    let mut pending: FuturesUnordered<_> = resumed
        .into_iter()
        .chain(submitted)
        .map(|h| async move {
            let id = h.build_request_id().to_owned();
            (id, h.outcome().await)
        })
        .collect();
    if pending.len() > resumed_ids.len() {
        eprintln!(
            "waiting for {} build request(s) submitted by other commands",
            pending.len() - resumed_ids.len()
        );
    }
    loop {
        tokio::select! {
            ended = pending.next() => match ended {
                Some((id, outcome)) => report_other(&id, outcome),
                None => return,
            },
            () = interrupts.next() => {
                if interrupted {
                    exit_now();
                }
                interrupted = true;
                eprintln!("interrupted: cancelling the resumed requests; requests submitted by other commands go on (Ctrl-C again to exit at once)");
                for id in &resumed_ids {
                    let _ = orchestrator.cancel(id, "interrupted (Ctrl-C)");
                }
            }
        }
    }
}

/// The end of a request taken up that was no longer running, as the
/// store records it.
fn ended_in_store(orchestrator: &Orchestrator, id: Option<&str>, started: Instant) -> ExitCode {
    let Some(id) = id else {
        return ExitCode::from(1);
    };
    let state = orchestrator.state();
    let (ended, succeeded) = state
        .request(id)
        .map_or(("unknown".to_owned(), false), |r| {
            (
                format!("{:?}", r.state).to_ascii_lowercase(),
                r.state == RequestState::Succeeded,
            )
        });
    println!(
        "build request {id}: {ended} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    exit_code(succeeded, false)
}

fn report_other(id: &str, outcome: Result<BuildOutcome, databuild_core::BuildError>) {
    match outcome {
        Ok(o) if o.succeeded() => eprintln!("build request {id} succeeded"),
        Ok(o) if o.canceled => eprintln!("build request {id} cancelled"),
        Ok(o) => eprintln!(
            "build request {id} did not build {} partition(s)",
            o.not_built.len()
        ),
        Err(e) => eprintln!("build request {id}: {e}"),
    }
}

fn exit_code(succeeded: bool, interrupted: bool) -> ExitCode {
    if interrupted {
        ExitCode::from(130)
    } else if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The second interrupt: out at once.
fn exit_now() -> ! {
    eprintln!("interrupted again: exiting; running jobs go on and the next build takes them up");
    std::process::exit(130);
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment this is made.
struct Interrupts {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next interrupt.
    async fn next(&mut self) {
        async fn one(s: Option<&mut tokio::signal::unix::Signal>) {
            if let Some(s) = s
                && s.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        let Self { int, term } = self;
        tokio::select! {
            () = one(int.as_mut()) => {}
            () = one(term.as_mut()) => {}
        }
    }
}

/// Draws the request's progress from its events until `outcome` resolves.
/// The first interrupt calls `cancel` and keeps waiting for the runs to
/// stop; a second exits at once with 130.
async fn follow<T>(
    mut events: futures::stream::BoxStream<
        'static,
        Result<databuild_core::BuildEvent, databuild_core::BelError>,
    >,
    outcome: impl std::future::Future<Output = T>,
    cancel: impl Fn(),
    plain: bool,
    interrupts: &mut Interrupts,
) -> (T, bool) {
    let mut progress = Progress::default();
    let bar = (!plain).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut interrupted = false;
    tokio::pin!(outcome);
    let result = loop {
        tokio::select! {
            out = &mut outcome => break out,
            Some(Ok(e)) = events.next() => {
                if let Some(line) = progress.apply(&e)
                    && plain
                {
                    eprintln!("{line}");
                }
            }
            _ = tick.tick() => {
                if let Some(bar) = &bar {
                    let mut msg = progress.counts();
                    for line in progress.running_lines(now_ns(), 8) {
                        msg.push('\n');
                        msg.push_str(&line);
                    }
                    bar.set_message(msg);
                    bar.tick();
                }
            }
            () = interrupts.next() => {
                if interrupted {
                    exit_now();
                }
                interrupted = true;
                eprintln!("interrupted: cancelling the build (Ctrl-C again to exit at once)");
                cancel();
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if plain {
        eprintln!("{}", progress.counts());
    }
    (result, interrupted)
}

fn summary(outcome: &BuildOutcome, took: Duration, wanted: &[PartitionRef]) {
    let id = &outcome.build_request_id;
    println!(
        "build request {id}: built {} partition(s), {} already available, {} from other builds in {:.1} s",
        outcome.built.len(),
        outcome.skipped.len(),
        outcome.delegated.len(),
        took.as_secs_f64()
    );
    if outcome.canceled {
        println!("cancelled");
    }
    for n in &outcome.not_built {
        println!("not built: {}: {}", n.partition, n.reason);
    }
    let example = outcome
        .not_built
        .first()
        .map(|n| n.partition.to_string())
        .or_else(|| wanted.first().map(ToString::to_string))
        .unwrap_or_default();
    println!("next:");
    println!("  databuild explain '{example}'       why it is (or is not) built");
    println!("  databuild report {id} -o report.html   the plan, a timeline, failures");
    println!("  databuild trace {id} -o trace.json     for https://ui.perfetto.dev");
}

/// What became of a request handed to the holder of the store.
enum Submitted {
    /// It ended; the exit code says how.
    Ended(ExitCode),
    /// The holder stopped before it ended, and this process took the
    /// store: `open` when the store has the request, still open (else the
    /// holder never recorded it).
    HolderGone { bel: SqliteBel, open: bool },
}

/// What the watch of a submitted request saw.
enum Watched {
    /// Its end (or the end of the log's stream).
    Ended(Progress),
    /// The store became free while it was open: this process holds it.
    Free(SqliteBel),
}

/// Another process holds the store and took request `id`: follow it
/// through the log until it ends, or until the store is free (its holder
/// died), which this process then takes.
async fn follow_submitted(home: &Home, id: &str, plain: bool) -> Result<Submitted, CliError> {
    eprintln!(
        "build request {id} (run by the build already holding {})",
        home.dir().display()
    );
    let started = Instant::now();
    let bel = home.reader()?;
    let events = bel.subscribe(0, EventFilter::build_request(id));
    let watched = {
        let mut events = bel.subscribe(0, EventFilter::build_request(id));
        let home = home.clone();
        async move {
            let mut p = Progress::default();
            let mut free = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    e = events.next() => match e {
                        Some(Ok(e)) => {
                            p.apply(&e);
                            if p.ended.is_some() {
                                return Watched::Ended(p);
                            }
                        }
                        _ => return Watched::Ended(p),
                    },
                    _ = free.tick() => {
                        if let Ok(bel) = home.writer() {
                            return Watched::Free(bel);
                        }
                    }
                }
            }
        }
    };
    let cancel = {
        let socket = home.control_socket();
        let id = id.to_owned();
        move || {
            let socket = socket.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let sent = crate::control::send(
                    &socket,
                    ControlOp::Cancel {
                        build_request_id: id.clone(),
                    },
                )
                .await;
                if sent.is_err() {
                    eprintln!(
                        "cannot reach the build running request {id} (it is stopping, and runs the requests it took to their end): Ctrl-C again to stop following it"
                    );
                }
            });
        }
    };
    let mut interrupts = Interrupts::new();
    let (watched, interrupted) = follow(events, watched, cancel, plain, &mut interrupts).await;
    let took = started.elapsed();
    let (ended, reason) = match watched {
        Watched::Ended(p) => (p.ended, p.end_reason),
        Watched::Free(bel) => {
            let state = super::state_of(&bel).await?;
            match state.request(id) {
                Some(r) if r.is_terminal() => {
                    (Some(format!("{:?}", r.state).to_ascii_lowercase()), None)
                }
                _ if interrupted => {
                    eprintln!(
                        "the build running request {id} stopped before it ended; the next build takes it up"
                    );
                    return Ok(Submitted::Ended(ExitCode::from(130)));
                }
                open => {
                    eprintln!(
                        "the build running request {id} stopped before it ended: taking it up here"
                    );
                    return Ok(Submitted::HolderGone {
                        open: open.is_some(),
                        bel,
                    });
                }
            }
        }
    };
    let ended = ended.unwrap_or_else(|| "unknown".into());
    match reason.filter(|r| !r.is_empty()) {
        Some(reason) => println!(
            "build request {id}: {ended} in {:.1} s: {reason}",
            took.as_secs_f64()
        ),
        None => println!("build request {id}: {ended} in {:.1} s", took.as_secs_f64()),
    }
    println!("next:");
    println!("  databuild report {id} -o report.html   the plan, a timeline, failures");
    Ok(Submitted::Ended(exit_code(
        ended == "succeeded",
        interrupted,
    )))
}
