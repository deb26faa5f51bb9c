//! 200 trivial containers through the orchestrator and the Docker executor,
//! against a shell loop of `docker run --rm` with the same parallelism, in
//! the same run (issue #5's comparison).
//!
//! Run (with an engine; `.ci/docker-engines up 1 /tmp/engines` starts one
//! and imports the test image):
//!
//! ```sh
//! cargo run --release -p databuild-benches --bin docker_dispatch -- \
//!     --socket /tmp/engines/engine1.sock [--n 200] [--parallelism 4] [--reps 2]
//! ```
//!
//! Both sides run `true` in `databuild-test/busybox:latest` with no
//! network and remove the container afterwards. Reports each side's wall
//! time, the ratio (ours / the loop; the goal is at most 0.8) and the
//! per-container overhead (wall time × parallelism / containers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use databuild_core::job::ProcessLaunch;
use databuild_core::{
    DataBuildJob, Graph, JobConfig, JobConfigError, JobLabel, Launch, MemoryBel, Orchestrator,
    PartitionPattern, PartitionRef,
};
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};

type Error = Box<dyn std::error::Error>;

const IMAGE: &str = "databuild-test/busybox:latest";

#[derive(Debug)]
struct Trivial {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
}

#[async_trait]
impl DataBuildJob for Trivial {
    fn label(&self) -> &JobLabel {
        &self.label
    }
    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }
    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        Ok(outputs
            .iter()
            .map(|o| JobConfig::new([o.clone()]))
            .collect())
    }
    fn launch(&self) -> Launch {
        Launch::Process(ProcessLaunch::new(vec!["true".into()]).image(IMAGE))
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn ours(socket: &std::path::Path, n: usize, parallelism: usize) -> Result<f64, Error> {
    let dir = tempfile::tempdir()?;
    let executor = DockerExecutor::connect(
        DockerConfig::new(EngineConfig::unix("bench", socket, parallelism), dir.path())
            .store(format!("bench-{}", std::process::id())),
    )
    .await?;
    let graph = Graph::builder()
        .job(Trivial {
            label: JobLabel::new("//trivial")?,
            patterns: vec![PartitionPattern::new(r"trivial/\d+")?],
        })
        .build()?;
    let o = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(MemoryBel::new()))
        .executor(Arc::new(executor))
        .state_dir(dir.path())
        .parallelism(parallelism)
        .build()?;
    let wanted: Vec<PartitionRef> = (0..n)
        .map(|i| PartitionRef::new(format!("trivial/{i}")))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let outcome = o.build(&wanted).await?;
    let t = start.elapsed().as_secs_f64();
    if !outcome.succeeded() {
        return Err(format!("the build failed: {:?}", outcome.not_built.first()).into());
    }
    Ok(t)
}

fn shell_loop(socket: &std::path::Path, n: usize, parallelism: usize) -> Result<f64, Error> {
    let script = format!(
        "seq {n} | xargs -P {parallelism} -I{{}} /usr/bin/docker -H unix://{} run --rm --network none {IMAGE} true",
        socket.display()
    );
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()?;
    let t = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("the docker run loop failed: {status}").into());
    }
    Ok(t)
}

fn main() -> Result<(), Error> {
    let socket = PathBuf::from(arg("--socket").unwrap_or_else(|| "/var/run/docker.sock".into()));
    let n: usize = arg("--n").map_or(Ok(200), |s| s.parse())?;
    let parallelism: usize = arg("--parallelism").map_or(Ok(4), |s| s.parse())?;
    let reps: usize = arg("--reps").map_or(Ok(2), |s| s.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{n} containers, parallelism {parallelism}, engine {}",
        socket.display()
    );
    for rep in 1..=reps {
        let loop_t = shell_loop(&socket, n, parallelism)?;
        let ours_t = rt.block_on(ours(&socket, n, parallelism))?;
        println!(
            "rep {rep}: databuild {ours_t:.2} s ({:.0} ms per container), docker run loop {loop_t:.2} s ({:.0} ms per container), ratio {:.2}",
            ours_t * 1e3 * parallelism as f64 / n as f64,
            loop_t * 1e3 * parallelism as f64 / n as f64,
            ours_t / loop_t
        );
    }
    Ok(())
}
