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

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use databuild_bel_sqlite::SqliteBel;
use databuild_core::{Orchestrator, PartitionRef};
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};
use futures::StreamExt;

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
    let program = static_pipeline()?;
    import_image(socket, &program).await?;
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

/// Builds the `pipeline` example with the C runtime linked in, so that it
/// runs in an image with nothing else, and returns its path.
fn static_pipeline() -> Result<PathBuf, Error> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("static");
    let triple = "x86_64-unknown-linux-gnu";
    println!("building the pipeline program as a static binary (the first time takes a while)");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&workspace)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "-q",
                "-p",
                "databuild-examples",
                "--example",
                "pipeline",
            ])
            .args(["--target", triple])
            .arg("--target-dir")
            .arg(&target_dir)
            .status()?;
    if !status.success() {
        return Err(format!("building the static pipeline program failed ({status})").into());
    }
    Ok(target_dir.join(triple).join("debug/examples/pipeline"))
}

/// `docker import`: an image whose only file is `program`, at its own path.
async fn import_image(socket: &Path, program: &Path) -> Result<(), Error> {
    let bytes = std::fs::read(program)?;
    let inside = program.strip_prefix("/")?;
    let mut archive = tar::Builder::new(Vec::new());
    // Its directories first, then the program as one plain file.
    let mut dirs: Vec<&Path> = inside.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs.into_iter().filter(|d| !d.as_os_str().is_empty()) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        archive.append_data(&mut header, dir, std::io::empty())?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(bytes.len() as u64);
    archive.append_data(&mut header, inside, bytes.as_slice())?;
    let tarball = archive.into_inner()?;
    let docker =
        Docker::connect_with_unix(&socket.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await?;
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(IMAGE)
        .build();
    let mut progress = docker.create_image(
        Some(options),
        Some(bollard::body_full(tarball.into())),
        None,
    );
    while let Some(step) = progress.next().await {
        step?;
    }
    Ok(())
}
