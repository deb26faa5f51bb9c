//! `databuild build <ref>...`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use databuild_core::bel::now_ns;
use databuild_core::orchestrator::BuildOptions;
use databuild_core::{BelSink, BuildOutcome, EventFilter};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::CliError;
use crate::control::{self, ControlOp, ControlServer};
use crate::graph_file::GraphFile;
use crate::home::{Home, is_locked};
use crate::progress::Progress;

/// What to build: refs, or a saved plan.
pub(super) struct What<'a> {
    pub(super) refs: &'a [String],
    pub(super) plan: Option<&'a Path>,
}

pub(super) async fn run(
    home: &Home,
    graph: &Path,
    settings: &databuild_core::settings::Settings,
    what: What<'_>,
    force: bool,
    keep_going: bool,
    plain: bool,
) -> Result<ExitCode, CliError> {
    let refs = what.refs;
    let file = GraphFile::read(graph)?;
    let saved = match what.plan {
        Some(path) => Some(crate::saved_plan::load(path, &file.graph()?)?),
        None => None,
    };
    let wanted = match &saved {
        Some(plan) => plan.requested().to_vec(),
        None => super::parse_refs(refs)?,
    };
    let plain = plain || !std::io::stderr().is_terminal();
    let bel = match home.writer() {
        Ok(bel) => Arc::new(bel),
        Err(e) if is_locked(&e) => {
            if saved.is_some() {
                return Err(CliError::Control {
                    socket: home.control_socket(),
                    reason: "a saved plan runs only in the build that holds the store: wait for the running build to end".into(),
                });
            }
            return submit(home, refs, force, keep_going, plain).await;
        }
        Err(e) => return Err(e),
    };
    let started = Instant::now();
    let orchestrator =
        super::orchestrator(home, &file, settings, Arc::clone(&bel) as Arc<dyn BelSink>).await?;
    let resumed = orchestrator.resumed();
    for r in &resumed {
        eprintln!(
            "resuming build request {} (left open by a build that stopped)",
            r.build_request_id()
        );
    }
    let server = ControlServer::start(&home.control_socket(), orchestrator.clone())?;
    let head = bel.head().await?;
    let options = BuildOptions::default().force(force).keep_going(keep_going);
    let handle = match saved {
        Some(plan) => orchestrator.start_plan(plan, options),
        None => orchestrator.start(&wanted, options),
    };
    let id = handle.build_request_id().to_owned();
    eprintln!("build request {id}");
    let events = bel.subscribe(head, EventFilter::build_request(&id));
    let cancel = {
        let orchestrator = orchestrator.clone();
        let id = id.clone();
        move || {
            let _ = orchestrator.cancel(&id, "interrupted (Ctrl-C)");
        }
    };
    let (outcome, interrupted) = follow(events, handle.outcome(), cancel, plain).await;
    let outcome = outcome?;
    // Requests this process also runs: resumed ones, and those other
    // commands submitted through the control socket.
    for r in resumed {
        report_other(r.build_request_id().to_owned(), r.outcome().await);
    }
    loop {
        let submitted = server.take_submitted();
        if submitted.is_empty() {
            break;
        }
        for s in submitted {
            report_other(s.build_request_id().to_owned(), s.outcome().await);
        }
    }
    drop(server);
    summary(&outcome, started.elapsed(), &wanted);
    Ok(exit_code(outcome.succeeded(), interrupted))
}

fn report_other(id: String, outcome: Result<BuildOutcome, databuild_core::BuildError>) {
    match outcome {
        Ok(o) if o.succeeded() => eprintln!("build request {id} succeeded"),
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

/// Draws the request's progress from its events until `outcome` resolves.
/// The first Ctrl-C (or SIGTERM) calls `cancel` and keeps waiting for the
/// runs to stop; a second exits at once with 130.
async fn follow<T>(
    mut events: futures::stream::BoxStream<
        'static,
        Result<databuild_core::BuildEvent, databuild_core::BelError>,
    >,
    outcome: impl std::future::Future<Output = T>,
    cancel: impl Fn(),
    plain: bool,
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
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
            _ = tokio::signal::ctrl_c() => {
                if interrupted {
                    eprintln!("interrupted again: exiting; running jobs go on and the next build takes them up");
                    std::process::exit(130);
                }
                interrupted = true;
                eprintln!("interrupted: cancelling the build (Ctrl-C again to exit at once)");
                cancel();
            }
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {
                if interrupted {
                    std::process::exit(130);
                }
                interrupted = true;
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

fn summary(outcome: &BuildOutcome, took: Duration, wanted: &[databuild_core::PartitionRef]) {
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

/// Another process holds the store: hand the request to it and follow the
/// request through the log.
async fn submit(
    home: &Home,
    refs: &[String],
    force: bool,
    keep_going: bool,
    plain: bool,
) -> Result<ExitCode, CliError> {
    let socket = home.control_socket();
    let reply = control::send(
        &socket,
        ControlOp::Build {
            refs: refs.to_vec(),
            force,
            keep_going,
        },
    )
    .await?;
    let id = match (reply.ok, reply.build_request_id) {
        (true, Some(id)) => id,
        _ => {
            return Err(CliError::Control {
                socket,
                reason: reply.error.unwrap_or_else(|| "no build request id".into()),
            });
        }
    };
    eprintln!(
        "build request {id} (run by the build already holding {})",
        home.dir().display()
    );
    let started = Instant::now();
    let bel = home.reader()?;
    let events = bel.subscribe(0, EventFilter::build_request(&id));
    let watched = {
        let mut events = bel.subscribe(0, EventFilter::build_request(&id));
        async move {
            let mut p = Progress::default();
            while let Some(Ok(e)) = events.next().await {
                p.apply(&e);
                if p.ended.is_some() {
                    break;
                }
            }
            p.ended
        }
    };
    let cancel = {
        let socket = socket.clone();
        let id = id.clone();
        move || {
            let socket = socket.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let _ = control::send(
                    &socket,
                    ControlOp::Cancel {
                        build_request_id: id,
                    },
                )
                .await;
            });
        }
    };
    let (ended, interrupted) = follow(events, watched, cancel, plain).await;
    let ended = ended.unwrap_or_else(|| "unknown".into());
    println!(
        "build request {id}: {ended} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("next:");
    println!("  databuild report {id} -o report.html   the plan, a timeline, failures");
    Ok(exit_code(ended == "succeeded", interrupted))
}
