//! The main example's pipeline with each date's subgraph (raw, clean,
//! daily) pushed to a Docker engine as one node agent: `databuild agent` in
//! a container runs that date's three tasks there, with no round trip per
//! task, and sends back its events and one combined log. The week and the
//! rates run on this host. Agents are spread over the engines given.
//!
//! 1. It connects to the engines in `$DATABUILD_DOCKER_SOCKETS`
//!    (`:`-separated, default `/var/run/docker.sock`) and says what it
//!    needs when none answers (exit code 2).
//! 2. It builds the `pipeline` program and the `databuild` command as
//!    static binaries and imports, into each engine, an image holding the
//!    two (the program at its path on this host, so one argv serves the
//!    `config` call here and the run there).
//! 3. It writes the graph file the agents run (`agent.toml`: the pipeline's
//!    raw, clean and daily jobs), reads it back as the subgraph, and builds
//!    `weekly/week_end=2024-01-07` (or the refs given) under
//!    `./.databuild-agents` (`$DATABUILD_HOME`) with the SQLite BEL.
//!
//! Run: `cargo run -p databuild-examples --example node_agent [-- <ref>...]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use databuild_bel_sqlite::SqliteBel;
use databuild_cli::graph_file::GraphFile;
use databuild_cli::routing::Routed;
use databuild_core::bel::{BelSink, Event, EventFilter};
use databuild_core::{Executor, Graph, Orchestrator, PartitionRef, ProcessJob, SubgraphJob};
use databuild_examples::{image, pipeline};
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};
use databuild_executor_local::{LocalConfig, LocalExecutor};

type Error = Box<dyn std::error::Error + Send + Sync>;

const IMAGE: &str = "databuild-example/agent:latest";
const AGENT: &str = "/usr/local/bin/databuild";

fn main() -> Result<(), Error> {
    let sockets: Vec<PathBuf> = std::env::var("DATABUILD_DOCKER_SOCKETS")
        .unwrap_or_else(|_| "/var/run/docker.sock".into())
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let home = PathBuf::from(
        std::env::var("DATABUILD_HOME").unwrap_or_else(|_| ".databuild-agents".into()),
    );
    std::fs::create_dir_all(home.join("data"))?;
    let home = std::fs::canonicalize(home)?;
    let mut requested = std::env::args()
        .skip(1)
        .map(PartitionRef::new)
        .collect::<Result<Vec<_>, _>>()?;
    if requested.is_empty() {
        requested.push(PartitionRef::new("weekly/week_end=2024-01-07")?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(&sockets, &home, &requested))
}

async fn run(sockets: &[PathBuf], home: &Path, requested: &[PartitionRef]) -> Result<(), Error> {
    // 1. The engines, or an explanation.
    let data = home.join("data");
    let user = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
    let mut engines = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| EngineConfig::unix(format!("engine{}", i + 1), s, 2));
    let first = engines
        .next()
        .ok_or("DATABUILD_DOCKER_SOCKETS names no socket")?;
    let mut config = DockerConfig::new(first, home.join("docker"))
        .store(home.to_string_lossy())
        .user(user)
        .allow_mounts_under(&data)
        .mount(&data, &data, false);
    for e in engines {
        config = config.engine(e);
    }
    let docker = match DockerExecutor::connect(config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "node_agent needs Docker engines, and one of {sockets:?} does not answer: {e}\n\
                 Start one (`sudo dockerd`), or list the sockets of engines you can use in\n\
                 DATABUILD_DOCKER_SOCKETS (separated by `:`). No registry is needed: the\n\
                 example makes its image from static builds. Without Docker, the same\n\
                 pipeline runs as local processes: cargo run -p databuild-examples --example pipeline"
            );
            std::process::exit(2);
        }
    };
    if sockets.len() < 2 {
        println!(
            "one engine given: every agent runs there (list two in DATABUILD_DOCKER_SOCKETS to spread them)"
        );
    }

    // 2. The image: the pipeline program and the agent, both static.
    let program = image::static_build(&["--example", "pipeline"], "examples/pipeline")?;
    let agent = image::static_build(&["-p", "databuild-cli", "--bin", "databuild"], "databuild")?;
    for s in sockets {
        image::import(
            s,
            IMAGE,
            &[(&program, &program), (&agent, Path::new(AGENT))],
        )
        .await?;
    }
    println!("image {IMAGE} holds {} and {AGENT}", program.display());

    // 3. The subgraph the agents run, as a graph file, read back.
    let graph_file = home.join("agent.toml");
    std::fs::write(&graph_file, agent_graph_file(&program, &data))?;
    let subgraph = GraphFile::read(&graph_file)?.graph()?;
    let per_date = SubgraphJob::builder("//pipeline:per_date", subgraph)
        .image(IMAGE)
        .agent([AGENT, "agent"])
        .graph_file(&graph_file)
        // One agent per date: `raw/date=D`, `clean/date=D`, `daily/date=D`.
        .group_by(|r| r.as_str().rsplit('=').next().unwrap_or_default().to_owned())
        .build()?;
    // The week and the rates run here, as local processes.
    let mut graph = Graph::builder().job(per_date);
    for (name, pattern) in pipeline::jobs() {
        if matches!(name, "weekly" | "rates") {
            let job = ProcessJob::builder(
                format!("//pipeline:{name}"),
                vec![
                    program.to_string_lossy().into_owned(),
                    "job".into(),
                    name.into(),
                ],
            )
            .pattern(pattern.as_str())
            .env("PIPELINE_DATA", data.to_string_lossy())
            .build()?;
            graph = graph.job(job);
        }
    }
    let local = LocalExecutor::new(LocalConfig::new(home));
    let executor: Arc<dyn Executor> = Arc::new(Routed::new(Arc::new(local), Arc::new(docker)));
    let bel = Arc::new(SqliteBel::open(home.join("bel.sqlite"))?);
    let orchestrator = Orchestrator::builder()
        .graph(graph.build()?)
        .bel(Arc::clone(&bel) as Arc<dyn BelSink>)
        .executor(executor)
        .state_dir(home)
        .build()?;
    let outcome = orchestrator.build(requested).await?;

    // What ran where: agents per engine, and the tasks each relayed.
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await?;
    let mut agents: BTreeMap<String, String> = BTreeMap::new();
    let mut relayed: BTreeMap<String, usize> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.build_request_id == outcome.build_request_id || e.origin.is_some())
    {
        match (&e.event, &e.origin) {
            (Some(Event::JobRunRunning(r)), None) if r.handle.starts_with("docker:") => {
                agents.insert(e.job_run_id.clone(), r.handle.clone());
            }
            (Some(Event::JobRunSucceeded(_)), Some(o)) => {
                *relayed.entry(o.node.clone()).or_default() += 1
            }
            _ => {}
        }
    }
    for (run, handle) in &agents {
        println!(
            "agent {run} ({handle}): {} task(s) run there",
            relayed.get(run).copied().unwrap_or(0)
        );
    }
    println!(
        "build request {}: built {} partitions, {} already available",
        outcome.build_request_id,
        outcome.built.len(),
        outcome.skipped.len()
    );
    for n in &outcome.not_built {
        println!("  FAILED  {}: {}", n.partition, n.reason);
    }
    for r in requested {
        if let Ok(text) = std::fs::read_to_string(data.join(r.as_str()).join("part.json")) {
            println!("{r}: {text}");
        }
    }
    if outcome.succeeded() {
        Ok(())
    } else {
        Err("the build failed".into())
    }
}

/// The graph file of the jobs the agents run: the pipeline's raw, clean
/// and daily jobs as local processes (inside the agent's container).
fn agent_graph_file(program: &Path, data: &Path) -> String {
    let mut text = String::new();
    for (name, pattern) in pipeline::jobs() {
        if matches!(name, "raw" | "clean" | "daily") {
            text.push_str(&format!(
                "[[job]]\nlabel = \"//pipeline:{name}\"\nentrypoint = [{program:?}, \"job\", \"{name}\"]\noutputs = [{pattern:?}]\nenv = {{ PIPELINE_DATA = {data:?} }}\n\n",
                program = program.to_string_lossy(),
                pattern = pattern.as_str(),
                data = data.to_string_lossy(),
            ));
        }
    }
    text
}
