//! The main example's graph on the Docker executor: every job run is a
//! container of an image this example makes itself, with no registry.
//!
//! 1. It checks that a Docker engine answers (`$DATABUILD_DOCKER_SOCKET`,
//!    default `/var/run/docker.sock`), and says what it needs when none does.
//! 2. It builds the `pipeline` example as a static binary
//!    (`--target x86_64-unknown-linux-gnu`, `crt-static`) and imports an
//!    image holding only that binary, at the same path as on this host, so
//!    that one argv serves both the `config` call (run here) and the run
//!    (in the container).
//! 3. It builds `weekly/week_end=2024-01-07` (or the refs given) with the
//!    SQLite BEL under `./.databuild-docker` (`$DATABUILD_HOME`); the data
//!    directory is the one host path mounted into the containers, which run
//!    as this user, with no network.
//!
//! Run: `cargo run -p databuild-examples --example docker_pipeline [-- <ref>...]`

use std::path::{Path, PathBuf};
use std::sync::Arc;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::{Orchestrator, PartitionRef};
use databuild_examples::image;
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};

type Error = Box<dyn std::error::Error + Send + Sync>;

const IMAGE: &str = "databuild-example/pipeline:latest";

fn main() -> Result<(), Error> {
    let socket = PathBuf::from(
        std::env::var("DATABUILD_DOCKER_SOCKET").unwrap_or_else(|_| "/var/run/docker.sock".into()),
    );
    let home = PathBuf::from(
        std::env::var("DATABUILD_HOME").unwrap_or_else(|_| ".databuild-docker".into()),
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
    rt.block_on(run(&socket, &home, &requested))
}

async fn run(socket: &Path, home: &Path, requested: &[PartitionRef]) -> Result<(), Error> {
    // 1. An engine, or an explanation.
    let user = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
    let data = home.join("data");
    let config = DockerConfig::new(EngineConfig::unix("local", socket, 2), home.join("docker"))
        .store(home.to_string_lossy())
        .user(user)
        .allow_mounts_under(&data)
        .mount(&data, &data, false);
    let executor = match DockerExecutor::connect(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "docker_pipeline needs a Docker engine, and none answers at {}: {e}\n\
                 Start one (`sudo dockerd`, or Docker Desktop), or point DATABUILD_DOCKER_SOCKET\n\
                 at the socket of one you can use. No registry is needed: the example makes\n\
                 its image from a static build of the pipeline program. Without Docker, the\n\
                 same graph runs as local processes: cargo run -p databuild-examples --example pipeline",
                socket.display()
            );
            std::process::exit(2);
        }
    };

    // 2. The job program, static, in an image of its own.
    let program = image::static_build(&["--example", "pipeline"], "examples/pipeline")?;
    image::import(socket, IMAGE, &[(&program, &program)]).await?;
    println!("image {IMAGE} holds {}", program.display());

    // 3. The build.
    let graph = databuild_examples::pipeline::graph(&program, &data, Some(IMAGE))?;
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(SqliteBel::open(home.join("bel.sqlite"))?))
        .executor(Arc::new(executor))
        .state_dir(home)
        .build()?;
    let outcome = orchestrator.build(requested).await?;
    println!(
        "build request {}: built {} partitions in containers, {} already available",
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
    println!(
        "next: cargo run -q -p databuild-cli -- --home {} report {} -o report.html",
        home.display(),
        outcome.build_request_id
    );
    if outcome.succeeded() {
        Ok(())
    } else {
        Err("the build failed".into())
    }
}
