//! The commands, one file each.

mod analyze;
mod build;
mod events;
mod explain;
mod logs;
mod picture;
mod status;
mod taint;

use std::process::ExitCode;
use std::sync::Arc;

use databuild_core::settings::Settings;
use databuild_core::state::BuildState;
use databuild_core::{BelSink, Executor, Orchestrator, PartitionRef};
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};
use databuild_executor_local::{LocalConfig, LocalExecutor};

use crate::graph_file::GraphFile;
use crate::home::Home;
use crate::routing::Routed;
use crate::{Cli, CliError, Command};

/// Runs a parsed command line (all but the hidden `runner`).
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let home = Home::new(&cli.home);
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let settings = Settings::load(cli.settings.as_deref(), &env)?;
    match cli.command {
        Command::Build {
            refs,
            plan,
            force,
            keep_going,
            plain,
        } => {
            build::run(
                &home,
                &cli.graph,
                &settings,
                build::What {
                    refs: &refs,
                    plan: plan.as_deref(),
                },
                build::How {
                    force,
                    keep_going,
                    plain,
                },
            )
            .await
        }
        Command::Analyze {
            refs,
            format,
            force,
            save,
        } => analyze::run(&home, &cli.graph, &refs, format, force, save.as_deref()).await,
        Command::Status { pattern } => status::run(&home, pattern.as_deref()).await,
        Command::Events {
            since,
            follow,
            job_run,
            build,
            partition,
            json,
        } => {
            events::run(
                &home,
                events::Options {
                    since,
                    follow,
                    job_run,
                    build,
                    partition,
                    json,
                },
            )
            .await
        }
        Command::Logs {
            job_run_id,
            follow,
            build,
        } => match (build, job_run_id) {
            (Some(id), _) => logs::combined(&home, &id).await,
            (None, Some(run)) => logs::run(&home, &run, follow).await,
            (None, None) => Ok(ExitCode::from(2)),
        },
        Command::Explain { partition } => explain::run(&home, &cli.graph, &partition).await,
        Command::Taint { refs } => taint::taint(&home, &refs).await,
        Command::Cancel { build_request_id } => {
            taint::cancel(&home, &cli.graph, &settings, &build_request_id).await
        }
        Command::Trace {
            build_request_id,
            output,
        } => picture::trace(&home, &build_request_id, &output).await,
        Command::Report {
            build_request_id,
            output,
        } => picture::report(&home, &build_request_id, &output).await,
        Command::Agent => crate::agent::run(&env).await,
        Command::Runner { .. } => Ok(ExitCode::from(2)),
    }
}

fn parse_refs(refs: &[String]) -> Result<Vec<PartitionRef>, CliError> {
    Ok(refs
        .iter()
        .map(PartitionRef::new)
        .collect::<Result<Vec<_>, _>>()?)
}

/// The build state of the store (empty when there is no store yet).
async fn load_state(home: &Home) -> Result<BuildState, CliError> {
    match home.reader() {
        Ok(bel) => state_of(&bel).await,
        Err(CliError::NoStore { .. }) => Ok(BuildState::new()),
        Err(e) => Err(e),
    }
}

async fn state_of(bel: &dyn BelSink) -> Result<BuildState, CliError> {
    BuildState::load(bel)
        .await
        .map_err(|e| CliError::Build(databuild_core::BuildError::Load(e)))
}

/// The executor for the file's jobs: the local executor in runner mode
/// (each run under a supervisor that outlives this process: this binary's
/// hidden `runner` command), plus the Docker executor when a job names an
/// image.
async fn executor(
    home: &Home,
    file: &GraphFile,
    settings: &Settings,
) -> Result<Arc<dyn Executor>, CliError> {
    let exe = std::env::current_exe().map_err(CliError::io("the databuild executable"))?;
    let local: Arc<dyn Executor> = Arc::new(LocalExecutor::new(
        LocalConfig::new(home.dir())
            .settings(settings)
            .runner(vec![exe.to_string_lossy().into_owned(), "runner".into()]),
    ));
    let Some(docker) = file.docker.as_ref().filter(|_| file.uses_docker()) else {
        return Ok(local);
    };
    let mut engines = docker.engines.iter().map(|e| {
        let mut engine = EngineConfig::unix(&e.name, &e.socket, e.slots);
        engine.labels = e.labels.clone();
        engine
    });
    let first = engines.next().ok_or(CliError::Executor {
        executor: "docker",
        reason: "no engine".into(),
    })?;
    let mut config =
        DockerConfig::new(first, home.dir().join("docker")).store(home.dir().to_string_lossy());
    for e in engines {
        config = config.engine(e);
    }
    config = config.settings(settings);
    if let Some(m) = docker.memory_bytes {
        config = config.memory_bytes(m);
    }
    if let Some(c) = docker.cpus {
        config = config.cpus(c);
    }
    let containers = DockerExecutor::connect(config)
        .await
        .map_err(|e| CliError::Executor {
            executor: "docker",
            reason: e.to_string(),
        })?;
    Ok(Arc::new(Routed::new(local, Arc::new(containers))))
}

/// An orchestrator over the file's jobs, writing `bel`, its state loaded
/// (which resumes what a previous build left open).
async fn orchestrator(
    home: &Home,
    file: &GraphFile,
    settings: &Settings,
    bel: Arc<dyn BelSink>,
) -> Result<Orchestrator, CliError> {
    let mut builder = Orchestrator::builder()
        .graph(file.graph()?)
        .bel(bel)
        .executor(executor(home, file, settings).await?)
        .settings(settings.orchestrator())
        .state_dir(home.dir());
    // The settings (file or DATABUILD_PARALLELISM) over the graph file's.
    if let Some(p) = settings.parallelism.or(file.parallelism) {
        builder = builder.parallelism(p);
    }
    for (name, slots) in &file.pools {
        builder = builder.pool(name, *slots);
    }
    let orchestrator = builder.build()?;
    orchestrator.load().await?;
    Ok(orchestrator)
}

/// Prints a line on stdout; false when stdout is gone (a closed pipe, as
/// in `databuild events | head`), so the caller stops quietly.
fn emit(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").is_ok()
}

/// `HH:MM:SS.mmm` (UTC) of a unix-ns time.
fn clock_time(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1_000 % 60,
        day_ms % 1_000
    )
}

/// The lowercase name of a partition status (`available`).
fn status_name(code: i32) -> String {
    databuild_core::proto::PartitionStatus::try_from(code)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PARTITION_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("status {code}"))
}

/// The last `n` lines of a run's log (text only), if it has one.
fn log_tail(home: &Home, job_run_id: &str, n: usize) -> Vec<String> {
    let Some(path) = home.log_of(job_run_id) else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let mut lines: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<databuild_core::executor::LogRecord>(l).ok())
        .map(|r| r.text)
        .collect();
    let skip = lines.len().saturating_sub(n);
    lines.drain(..skip);
    lines
}
