//! A chain of 1,000 trivial tasks run by one node agent (`databuild
//! agent`) in a Docker container, against the same chain run by the
//! orchestrator on this host's local executor, in the same process,
//! alternating rounds (the goal: the agent at most 1.1× the host's time).
//!
//! Run (with an engine; `.ci/docker-engines up 1 /tmp/engines` starts one):
//!
//! ```sh
//! DATABUILD_DOCKER_SOCKET=/tmp/engines/engine1.sock \
//!     cargo run --release -p databuild-benches --bin agent_chain -- \
//!     [--n 1000] [--rounds 3] [--warmup 1] [--planning 3] [--agent PATH]
//! ```
//!
//! `--warmup` rounds are printed, not counted; the summary gives medians of
//! `--rounds`. `--planning` times the planning alone first (the chain's
//! analysis, and the subgraph job's config), that many times each.
//!
//! It first builds the `databuild` binary statically, in release
//! (`RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p
//! databuild-cli --bin databuild --target x86_64-unknown-linux-gnu
//! --target-dir target/static`), and imports an image of static busybox and
//! that binary (`databuild-bench/agent:latest`). Both sides build the same
//! graph file: one job, `/bin/busybox sh job.sh`, whose config (on the
//! host, one call per wave) makes `c/{n}` need `c/{n-1}` and whose run is
//! `:`. The host side is `Orchestrator` + `LocalExecutor` + a memory BEL set
//! up as the agent sets up its own; the agent side is one `SubgraphJob`
//! task on the Docker executor (planning on the host, the container's start,
//! the agent's run, its events relayed back). Each side's wall time is
//! `orchestrator.build(&[c/{n-1}])`; the other figures come from the
//! events' own timestamps (the agent's events keep the time the agent
//! stamped them with: the container shares the host's clock) and from the
//! time each batch was appended to the host's log.
//!
//! `--agent PATH` runs that agent binary instead of building one (a
//! dynamically linked one gets the libraries `ldd` lists in the image):
//! `cargo build --release -p databuild-cli --bin databuild` and
//! `--agent target/release/databuild` compare the static agent with a
//! dynamically linked one. (A static glibc binary cannot resolve
//! `posix_spawn_file_actions_addchdir_np`, so Rust's standard library
//! forks to spawn a process in another directory; the agent therefore
//! moves into its jobs' directory and the local executor does not set it
//! again, and its tasks are spawned with `posix_spawn` either way.)
//!
//! Without an engine answering at `DATABUILD_DOCKER_SOCKET` (default
//! `/var/run/docker.sock`) it says so and exits with code 2.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use databuild_cli::graph_file::GraphFile;
use databuild_core::bel::{BlobDigest, SeqRange, now_ns};
use databuild_core::proto::build_event::Event;
use databuild_core::settings::Settings;
use databuild_core::{
    BelError, BelSink, BuildEvent, DataBuildJob, EventFilter, Graph, MemoryBel, Orchestrator,
    PartitionRef, Planner, SubgraphJob,
};
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};
use databuild_executor_local::{LocalConfig, LocalExecutor};
use futures::StreamExt;
use futures::stream::BoxStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

const IMAGE: &str = "databuild-bench/agent:latest";
const AGENT: &str = "/usr/local/bin/databuild";
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The chain's job: config makes `c/{n}` need `c/{n-1}`; a run does
/// nothing.
const JOB_SH: &str = r#"mode=$1; shift
case $mode in
config)
  printf '{"configs":['
  sep=''
  for r in "$@"; do
    n=${r#c/}
    if [ "$n" -gt 0 ]; then
      inputs="[{\"dep_type_code\":1,\"partition_ref\":{\"str\":\"c/$((n-1))\"}}]"
    else
      inputs='[]'
    fi
    printf '%s{"outputs":[{"str":"%s"}],"inputs":%s,"args":["%s"]}' "$sep" "$r" "$inputs" "$n"
    sep=','
  done
  printf ']}\n'
  ;;
exec)
  :
  ;;
esac
"#;

/// A memory BEL that notes when each batch was appended (Unix ns).
#[derive(Debug, Clone, Default)]
struct Stamped {
    bel: MemoryBel,
    appended: Arc<Mutex<Vec<(SeqRange, i64)>>>,
}

impl Stamped {
    async fn events(&self) -> Result<Vec<BuildEvent>, BelError> {
        self.bel.read(0, &EventFilter::all(), usize::MAX).await
    }

    /// The time each event (by seq, from 1) reached the log.
    fn arrivals(&self) -> Vec<i64> {
        let appended = self.appended.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (range, at) in appended.iter() {
            let last = usize::try_from(range.last).unwrap_or(usize::MAX);
            if out.len() < last {
                out.resize(last, 0);
            }
            for seq in range.first..=range.last {
                out[usize::try_from(seq).unwrap_or(0) - 1] = *at;
            }
        }
        out
    }
}

#[async_trait]
impl BelSink for Stamped {
    async fn append(&self, batch: Vec<BuildEvent>) -> Result<SeqRange, BelError> {
        let range = self.bel.append(batch).await?;
        let at = now_ns();
        self.appended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((range, at));
        Ok(range)
    }
    async fn read(
        &self,
        since: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<BuildEvent>, BelError> {
        self.bel.read(since, filter, limit).await
    }
    async fn head(&self) -> Result<u64, BelError> {
        self.bel.head().await
    }
    fn subscribe(
        &self,
        since: u64,
        filter: EventFilter,
    ) -> BoxStream<'static, Result<BuildEvent, BelError>> {
        self.bel.subscribe(since, filter)
    }
    async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobDigest, BelError> {
        self.bel.put_blob(bytes).await
    }
    async fn get_blob(&self, digest: &BlobDigest) -> Result<Option<Vec<u8>>, BelError> {
        self.bel.get_blob(digest).await
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Builds `databuild` with the C runtime linked in, in release, and
/// returns its path.
fn static_agent() -> Result<PathBuf, Error> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("static");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "-q", "--release", "-p", "databuild-cli"])
            .args(["--bin", "databuild", "--target", TRIPLE])
            .arg("--target-dir")
            .arg(&target_dir)
            .status()?;
    if !status.success() {
        return Err("building the static databuild failed".into());
    }
    Ok(target_dir.join(TRIPLE).join("release/databuild"))
}

async fn docker(socket: &Path) -> Result<Docker, Error> {
    Ok(
        Docker::connect_with_unix(&socket.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await?,
    )
}

/// The shared libraries `ldd` lists for `binary` (none for a static one),
/// by the path the loader looks them up at.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = std::process::Command::new("ldd").arg(binary).output()?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| {
            let l = l.split(" (").next()?;
            let path = l.rsplit("=> ").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `docker import`: static busybox with a few applets, `/tmp`, the agent
/// at [`AGENT`] and, for a dynamically linked agent, its libraries.
async fn import_image(socket: &Path, agent: &Path, libraries: &[PathBuf]) -> Result<(), Error> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = ["bin", "tmp", "usr", "usr/local", "usr/local/bin"]
        .map(String::from)
        .to_vec();
    for lib in libraries {
        for parent in lib.ancestors().skip(1) {
            let d = parent.to_string_lossy().trim_start_matches('/').to_owned();
            if !d.is_empty() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs.sort();
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        archive.append_data(&mut h, d, std::io::empty())?;
    }
    let mut files = vec![
        ("bin/busybox".to_owned(), std::fs::read("/bin/busybox")?),
        (
            AGENT.trim_start_matches('/').to_owned(),
            std::fs::read(agent)?,
        ),
    ];
    for lib in libraries {
        let path = lib.to_string_lossy().trim_start_matches('/').to_owned();
        files.push((path, std::fs::read(lib)?));
    }
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        archive.append_data(&mut h, path, bytes.as_slice())?;
    }
    for applet in ["sh", "echo", "cat", "printf"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        archive.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let tarball = archive.into_inner()?;
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(IMAGE)
        .changes(vec!["ENV PATH=/bin:/usr/local/bin".to_owned()])
        .build();
    let docker = docker(socket).await?;
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

/// The job script, its graph file and the graph read from it.
struct World {
    root: PathBuf,
    graph_file: PathBuf,
    inner: Graph,
    outer: Graph,
    n: usize,
}

impl World {
    fn new(root: &Path, n: usize) -> Result<World, Error> {
        let root = std::fs::canonicalize(root)?;
        let script = root.join("job.sh");
        std::fs::write(&script, JOB_SH)?;
        let graph_file = root.join("databuild.toml");
        std::fs::write(
            &graph_file,
            format!(
                "[[job]]\nlabel = \"//b:chain\"\nentrypoint = [\"/bin/busybox\", \"sh\", {script:?}]\noutputs = ['c/\\d+']\n",
                script = script.display().to_string(),
            ),
        )?;
        let inner = GraphFile::read(&graph_file)?.graph()?;
        let outer = Graph::builder()
            .job(Self::subgraph(&inner, &graph_file)?)
            .build()?;
        Ok(World {
            root,
            graph_file,
            inner,
            outer,
            n,
        })
    }

    /// The outer graph's one job: the whole chain, one agent.
    fn subgraph(inner: &Graph, graph_file: &Path) -> Result<SubgraphJob, Error> {
        Ok(SubgraphJob::builder("//b:node", inner.clone())
            .image(IMAGE)
            .agent([AGENT, "agent"])
            .graph_file(graph_file)
            .env("DATABUILD_KEEPALIVE_INTERVAL", "1s")
            .build()?)
    }

    fn wanted(&self) -> Result<Vec<PartitionRef>, Error> {
        Ok(vec![PartitionRef::new(format!("c/{}", self.n - 1))?])
    }

    /// A fresh work directory for one round.
    fn work(&self) -> Result<tempfile::TempDir, Error> {
        Ok(tempfile::tempdir_in(&self.root)?)
    }
}

/// The first and last timestamps of events of `kind` among `events`.
fn span(events: &[&BuildEvent], kind: &str) -> Option<(i64, i64)> {
    let mut ts = events
        .iter()
        .filter(|e| e.kind() == kind)
        .map(|e| e.timestamp_ns);
    let first = ts.next()?;
    Some((first, ts.next_back().unwrap_or(first)))
}

/// One host round's figures (ns).
#[derive(Debug, Clone, Copy)]
struct Host {
    wall: i64,
    /// Build start to the first task queued (the chain's planning).
    planning: i64,
    /// First task running to the last task succeeded.
    exec: i64,
    events: usize,
    /// This process's CPU time (user + system) over the build.
    cpu: i64,
}

/// This process's CPU time so far (user + system, all threads), in ns.
fn cpu_ns() -> i64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() * 1_000_000_000 + tv.tv_usec() * 1_000;
        t(u.user_time()) + t(u.system_time())
    })
}

async fn host_round(w: &World) -> Result<Host, Error> {
    let work = w.work()?;
    let state = work.path().join("state");
    let settings = Settings::default();
    // As the agent sets itself up: default settings, scratch on tmpfs.
    let scratch = if Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!(
            "/dev/shm/databuild-bench-host-{}-{}",
            std::process::id(),
            now_ns()
        ))
    } else {
        work.path().join("scratch")
    };
    let bel = Stamped::default();
    let o = Orchestrator::builder()
        .graph(w.inner.clone())
        .bel(Arc::new(bel.clone()))
        .executor(Arc::new(LocalExecutor::new(
            LocalConfig::new(&state).settings(&settings),
        )))
        .settings(settings.orchestrator())
        .state_dir(&state)
        .scratch_root(&scratch)
        .build()?;
    let cpu0 = cpu_ns();
    let t0 = now_ns();
    let start = Instant::now();
    let outcome = o.build(&w.wanted()?).await?;
    let wall = i64::try_from(start.elapsed().as_nanos())?;
    let cpu = cpu_ns() - cpu0;
    let _ = std::fs::remove_dir_all(&scratch);
    if !outcome.succeeded() || outcome.built.len() != w.n {
        return Err(format!("the host build failed: {:?}", outcome.not_built.first()).into());
    }
    let events = bel.events().await?;
    let all: Vec<&BuildEvent> = events.iter().collect();
    let (queued, _) = span(&all, "job_run_queued").ok_or("no run queued")?;
    let (running, _) = span(&all, "job_run_running").ok_or("no run running")?;
    let (_, succeeded) = span(&all, "job_run_succeeded").ok_or("no run succeeded")?;
    Ok(Host {
        wall,
        planning: queued - t0,
        exec: succeeded - running,
        events: events.len(),
        cpu,
    })
}

/// One agent round's figures (ns).
#[derive(Debug, Clone, Copy)]
struct Agent {
    wall: i64,
    /// Build start to the node's run queued (planning the subgraph).
    planning: i64,
    /// Queued to the agent's first event: the container created and
    /// started, the agent's process start, reading the graph file and the
    /// plan. (The host records the node's `job_run_running` only after the
    /// engine's start call returns, which is after the agent's first event.)
    launch: i64,
    /// The agent's first event to its first task running.
    agent_first: i64,
    /// Build start to the agent's first task running.
    to_first_task: i64,
    /// The agent's first task running to its last task succeeded.
    exec: i64,
    /// The agent's last event to the build's end on the host (its result,
    /// the container's exit, the node's run recorded).
    tail: i64,
    /// Of the tail: the last relayed event's append on the host to the
    /// node's `job_run_task_succeeded` (the agent's combined log and result
    /// line, its exit, the engine's report of it).
    exit: i64,
    /// This process's CPU time (user + system) over the build.
    cpu: i64,
    /// Relayed events.
    relayed: usize,
    /// Agent stamp to host append, per relayed event: p50, p99, max.
    lag: (i64, i64, i64),
}

async fn agent_round(w: &World, socket: &Path, round: usize) -> Result<Agent, Error> {
    let work = w.work()?;
    let root = &w.root;
    let user = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
    let config = DockerConfig::new(EngineConfig::unix("bench", socket, 2), work.path())
        .store(format!("agent-bench-{}-{round}", std::process::id()))
        .user(user)
        .allow_mounts_under(root)
        .mount(root, root, false);
    let executor = Arc::new(DockerExecutor::connect(config).await?);
    let bel = Stamped::default();
    let o = Orchestrator::builder()
        .graph(w.outer.clone())
        .bel(Arc::new(bel.clone()))
        .executor(executor as Arc<dyn databuild_core::Executor>)
        .state_dir(work.path().join("state"))
        .build()?;
    let cpu0 = cpu_ns();
    let t0 = now_ns();
    let start = Instant::now();
    let outcome = o.build(&w.wanted()?).await?;
    let wall = i64::try_from(start.elapsed().as_nanos())?;
    let cpu = cpu_ns() - cpu0;
    let end = t0 + wall;
    if !outcome.succeeded() {
        return Err(format!("the agent build failed: {:?}", outcome.not_built.first()).into());
    }
    let events = bel.events().await?;
    let arrivals = bel.arrivals();
    let own: Vec<&BuildEvent> = events.iter().filter(|e| e.origin.is_none()).collect();
    let relayed: Vec<&BuildEvent> = events.iter().filter(|e| e.origin.is_some()).collect();
    let done = relayed
        .iter()
        .filter(|e| matches!(e.event, Some(Event::JobRunSucceeded(_))))
        .count();
    if done != w.n {
        return Err(format!("the agent ran {done} of {} tasks", w.n).into());
    }
    let (queued, _) = span(&own, "job_run_queued").ok_or("the node was not queued")?;
    let first = relayed.first().ok_or("no relayed event")?.timestamp_ns;
    let last_event = relayed.last().ok_or("no relayed event")?;
    let last = last_event.timestamp_ns;
    let last_arrival = arrivals[usize::try_from(last_event.seq).unwrap_or(0) - 1];
    let (node_exit, _) =
        span(&own, "job_run_task_succeeded").ok_or("the node's task did not succeed")?;
    let (task_running, _) = span(&relayed, "job_run_running").ok_or("no task ran")?;
    let (_, task_succeeded) = span(&relayed, "job_run_succeeded").ok_or("no task ran")?;
    let mut lags: Vec<i64> = relayed
        .iter()
        .map(|e| arrivals[usize::try_from(e.seq).unwrap_or(0) - 1] - e.timestamp_ns)
        .collect();
    lags.sort_unstable();
    Ok(Agent {
        wall,
        planning: queued - t0,
        launch: first - queued,
        agent_first: task_running - first,
        to_first_task: task_running - t0,
        exec: task_succeeded - task_running,
        tail: end - last,
        exit: node_exit - last_arrival,
        cpu,
        relayed: relayed.len(),
        lag: (
            lags[lags.len() / 2],
            lags[lags.len() * 99 / 100],
            lags[lags.len() - 1],
        ),
    })
}

/// Planning alone, `reps` times each, alternating: the chain analysed by
/// the planner (what the host build does first), and the subgraph job's
/// config over the same request (what the agent build's planning does: the
/// same analysis, then the plan saved and encoded). Medians, ns: the
/// planner's wall time, the config's wall time and this process's CPU time
/// in the config.
async fn planning_alone(w: &World, reps: usize) -> Result<(i64, i64, i64), Error> {
    let planner = Planner::new(w.inner.clone());
    let job = World::subgraph(&w.inner, &w.graph_file)?;
    let wanted = w.wanted()?;
    let (mut analyze, mut config, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        planner.analyze(&wanted).await?;
        analyze.push(i64::try_from(start.elapsed().as_nanos())?);
        let cpu0 = cpu_ns();
        let start = Instant::now();
        job.config(&wanted).await?;
        config.push(i64::try_from(start.elapsed().as_nanos())?);
        cpu.push(cpu_ns() - cpu0);
    }
    Ok((median(analyze), median(config), median(cpu)))
}

async fn engine_answers(socket: &Path) -> bool {
    match docker(socket).await {
        Ok(d) => d.ping().await.is_ok(),
        Err(_) => false,
    }
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> Result<(), Error> {
    let socket = PathBuf::from(
        std::env::var("DATABUILD_DOCKER_SOCKET").unwrap_or_else(|_| "/var/run/docker.sock".into()),
    );
    let n: usize = arg("--n").map_or(Ok(1000), |s| s.parse())?;
    let rounds: usize = arg("--rounds").map_or(Ok(3), |s| s.parse())?;
    let warmup: usize = arg("--warmup").map_or(Ok(1), |s| s.parse())?;
    let planning: usize = arg("--planning").map_or(Ok(3), |s| s.parse())?;
    if n == 0 || rounds == 0 {
        return Err("--n and --rounds must be positive".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if !rt.block_on(engine_answers(&socket)) {
        println!(
            "skipping agent_chain: no Docker engine answers at {} (set DATABUILD_DOCKER_SOCKET)",
            socket.display()
        );
        std::process::exit(2);
    }
    let agent = match arg("--agent") {
        Some(path) => PathBuf::from(path),
        None => static_agent()?,
    };
    let libraries = shared_libraries(&agent)?;
    rt.block_on(import_image(&socket, &agent, &libraries))?;
    let dir = tempfile::tempdir()?;
    let world = World::new(dir.path(), n)?;
    println!(
        "chain of {n} tasks, engine {}, agent {} ({:.1} MiB, {}), graph {}",
        socket.display(),
        agent.display(),
        std::fs::metadata(&agent)?.len() as f64 / (1 << 20) as f64,
        if libraries.is_empty() {
            "static".to_owned()
        } else {
            format!("dynamic, {} libraries in the image", libraries.len())
        },
        world.graph_file.display()
    );
    let mut planning_cpu = None;
    if planning > 0 {
        let (analyze, config, cpu) = rt.block_on(planning_alone(&world, planning))?;
        println!(
            "planning alone (median of {planning}): the planner over the chain {:.0} ms, the subgraph job's config {:.0} ms ({:.0} ms of this process's CPU)",
            ms(analyze),
            ms(config),
            ms(cpu)
        );
        planning_cpu = Some(cpu);
    }
    println!(
        "{:<7} | {:>8} {:>8} {:>8} {:>6} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} | {:>6} | {:>7} {:>15} | {:>5}",
        "round",
        "host(s)",
        "plan",
        "exec",
        "cpu",
        "agent(s)",
        "plan",
        "launch",
        "to task",
        "1st task",
        "exec",
        "tail",
        "cpu",
        "events",
        "relayed",
        "lag p50/p99/max",
        "ratio"
    );
    let mut hosts = Vec::new();
    let mut agents = Vec::new();
    for round in 0..warmup + rounds {
        let h = rt.block_on(host_round(&world))?;
        let a = rt.block_on(agent_round(&world, &socket, round))?;
        let name = if round < warmup {
            format!("warm-{}", round + 1)
        } else {
            format!("{}", round - warmup + 1)
        };
        println!(
            "{name:<7} | {:>8.3} {:>8.0} {:>8.0} {:>6.0} | {:>8.3} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>6.0} | {:>6} | {:>7} {:>15} | {:>5.2}",
            h.wall as f64 / 1e9,
            ms(h.planning),
            ms(h.exec),
            ms(h.cpu),
            a.wall as f64 / 1e9,
            ms(a.planning),
            ms(a.launch),
            ms(a.agent_first),
            ms(a.to_first_task),
            ms(a.exec),
            ms(a.tail),
            ms(a.cpu),
            h.events,
            a.relayed,
            format!("{:.1}/{:.1}/{:.1}", ms(a.lag.0), ms(a.lag.1), ms(a.lag.2)),
            a.wall as f64 / h.wall as f64
        );
        if round >= warmup {
            hosts.push(h);
            agents.push(a);
        }
    }
    let host_wall = median(hosts.iter().map(|h| h.wall).collect());
    let agent_wall = median(agents.iter().map(|a| a.wall).collect());
    let host_exec = median(hosts.iter().map(|h| h.exec).collect());
    let agent_exec = median(agents.iter().map(|a| a.exec).collect());
    let relayed = median(agents.iter().map(|a| a.relayed as i64).collect());
    let startup = median(agents.iter().map(|a| a.to_first_task).collect());
    let host_plan = median(hosts.iter().map(|h| h.planning).collect());
    let excess: Vec<i64> = hosts
        .iter()
        .zip(&agents)
        .map(|(h, a)| (a.exec - h.exec) / a.relayed as i64)
        .collect();
    println!();
    println!(
        "medians of {rounds} round(s): host {:.3} s, agent {:.3} s, ratio {:.2} (goal at most 1.1)",
        host_wall as f64 / 1e9,
        agent_wall as f64 / 1e9,
        agent_wall as f64 / host_wall as f64
    );
    let host_rest = median(hosts.iter().map(|h| h.wall - h.planning).collect());
    let agent_rest = median(agents.iter().map(|a| a.wall - a.planning).collect());
    println!(
        "without the planning (the same config calls on the host on both sides): host {:.3} s, agent {:.3} s, ratio {:.2}",
        host_rest as f64 / 1e9,
        agent_rest as f64 / 1e9,
        agent_rest as f64 / host_rest as f64
    );
    println!(
        "agent start-up (build start to its first task running) {:.0} ms, of which planning {:.0} ms (the host's own planning: {:.0} ms)",
        ms(startup),
        ms(median(agents.iter().map(|a| a.planning).collect())),
        ms(host_plan),
    );
    println!(
        "  node queued to the agent's first event (container created and started, agent boot) {:.0} ms, then to its first task running {:.0} ms",
        ms(median(agents.iter().map(|a| a.launch).collect())),
        ms(median(agents.iter().map(|a| a.agent_first).collect())),
    );
    println!(
        "task execution (first task running to last task succeeded): host {:.0} ms, agent {:.0} ms",
        ms(host_exec),
        ms(agent_exec)
    );
    println!(
        "streaming: {relayed} relayed events; (agent exec - host exec) per relayed event {:.1} µs (median of rounds); relay lag p50 {:.2} ms",
        median(excess) as f64 / 1e3,
        ms(median(agents.iter().map(|a| a.lag.0).collect())),
    );
    println!(
        "tail (agent's last event to the build's end on the host) {:.0} ms, of which its last event's append to the node's exit recorded {:.0} ms",
        ms(median(agents.iter().map(|a| a.tail).collect())),
        ms(median(agents.iter().map(|a| a.exit).collect()))
    );
    let host_cpu = median(hosts.iter().map(|h| h.cpu).collect());
    let agent_cpu = median(agents.iter().map(|a| a.cpu).collect());
    println!(
        "this process's CPU (user + system) over the build: host side {:.0} ms, agent side {:.0} ms",
        ms(host_cpu),
        ms(agent_cpu),
    );
    if let Some(cpu) = planning_cpu {
        println!(
            "  the agent side's less its planning alone: {:.0} ms, {:.1} µs per relayed event (receiving, parsing and recording them, with the node's own run)",
            ms(agent_cpu - cpu),
            (agent_cpu - cpu) as f64 / 1e3 / relayed as f64
        );
    }
    Ok(())
}
