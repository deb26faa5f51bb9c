//! Node agents on real Docker engines: a subgraph run as one `databuild
//! agent` container (a static build of this crate's binary, in an image of
//! static busybox made here), its events relayed into the orchestrator's
//! log once each, its combined log kept; the agent killed, paused, or its
//! orchestrator restarted mid-run; and plan files the agent must refuse.
//!
//! Engines come from `DATABUILD_TEST_DOCKER_ENGINES` (`:`-separated
//! sockets); without one the tests print that they skip, unless
//! `DATABUILD_TEST_DOCKER=1` (CI), where they fail.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptionsBuilder, InspectContainerOptions};
use databuild_cli::graph_file::GraphFile;
use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, BuildEvent, EventFilter};
use databuild_core::job::{RetryPolicy, SchedulingHints};
use databuild_core::orchestrator::OrchestratorSettings;
use databuild_core::state::BuildState;
use databuild_core::{BuildOptions, Graph, MemoryBel, Orchestrator, PartitionRef, SubgraphJob};
use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};
use futures::StreamExt;

const AGENT_IMAGE: &str = "databuild-test/agent:latest";
const AGENT: &str = "/usr/local/bin/databuild";

/// The engine sockets, or `None` (after saying why) when the test skips.
fn engines(test: &str, wanted: usize) -> Option<Vec<PathBuf>> {
    let mandatory = std::env::var("DATABUILD_TEST_DOCKER").as_deref() == Ok("1");
    let listed = std::env::var("DATABUILD_TEST_DOCKER_ENGINES").unwrap_or_default();
    let sockets: Vec<PathBuf> = listed
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .filter(|s| s.exists())
        .collect();
    if sockets.len() < wanted {
        assert!(
            !mandatory,
            "{test}: DATABUILD_TEST_DOCKER=1 but DATABUILD_TEST_DOCKER_ENGINES lists {} reachable engine(s) of {wanted}",
            sockets.len()
        );
        println!(
            "skipping {test}: it needs {wanted} Docker engine(s) in DATABUILD_TEST_DOCKER_ENGINES"
        );
        return None;
    }
    Some(sockets)
}

/// Builds the `databuild` binary with the C runtime linked in (once per
/// test process) and returns its path.
fn static_agent() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace.join("target"), PathBuf::from)
                .join("static");
            let triple = "x86_64-unknown-linux-gnu";
            let status = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .current_dir(workspace)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "-q", "-p", "databuild-cli", "--bin", "databuild"])
            .args(["--target", triple])
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .unwrap();
            assert!(status.success(), "building the static databuild failed");
            target_dir.join(triple).join("debug/databuild")
        })
        .clone()
}

/// `docker import` into `docker`: static busybox with its applets, `/tmp`,
/// and the agent at [`AGENT`].
async fn import_agent_image(docker: &Docker) {
    let mut archive = tar::Builder::new(Vec::new());
    let dir = |archive: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        archive.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    let file = |archive: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        archive.append_data(&mut h, path, bytes).unwrap();
    };
    for d in ["bin", "tmp", "usr", "usr/local", "usr/local/bin"] {
        dir(&mut archive, d);
    }
    file(
        &mut archive,
        "bin/busybox",
        &std::fs::read("/bin/busybox").unwrap(),
    );
    for applet in ["sh", "echo", "sleep", "cat", "printf", "mkdir"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        archive
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    file(
        &mut archive,
        AGENT.trim_start_matches('/'),
        &std::fs::read(static_agent()).unwrap(),
    );
    let tarball = archive.into_inner().unwrap();
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(AGENT_IMAGE)
        .changes(vec!["ENV PATH=/bin:/usr/local/bin".to_owned()])
        .build();
    let mut progress = docker.create_image(
        Some(options),
        Some(bollard::body_full(tarball.into())),
        None,
    );
    while let Some(step) = progress.next().await {
        step.unwrap();
    }
}

async fn docker(socket: &Path) -> Docker {
    Docker::connect_with_unix(&socket.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// A chain `c/0 <- c/1 <- ... <- c/{n-1}`: each task says hello on stdout
/// and stderr, sleeps `pause` seconds and writes its partition's file.
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
  echo "task $1 says hello"
  echo "task $1 warns on stderr" >&2
  sleep "$PAUSE"
  echo "$1" > "$DATA/c-$1"
  ;;
esac
"#;

/// One test's world: its directory (job script, data, graph file), the
/// subgraph's graph, and a Docker executor over `sockets`.
struct World {
    dir: tempfile::TempDir,
    graph_file: PathBuf,
    inner: Graph,
    config: DockerConfig,
}

impl World {
    /// A world on the engines at `sockets`, named `engine1`, `engine2`...
    async fn new(sockets: &[PathBuf], pause: &str) -> World {
        let mut engines = Vec::new();
        for (i, s) in sockets.iter().enumerate() {
            engines.push((
                EngineConfig::unix(format!("engine{}", i + 1), s, 2),
                docker(s).await,
            ));
        }
        Self::on(engines, pause).await
    }

    /// A world on `engines`, with a client of each to import the image.
    async fn on(engines: Vec<(EngineConfig, Docker)>, pause: &str) -> World {
        for (_, client) in &engines {
            import_agent_image(client).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let script = root.join("job.sh");
        std::fs::write(&script, JOB_SH).unwrap();
        let graph_file = root.join("databuild.toml");
        std::fs::write(
            &graph_file,
            format!(
                "[[job]]\nlabel = \"//t:chain\"\nentrypoint = [\"/bin/sh\", {script:?}]\noutputs = ['c/\\d+']\nenv = {{ DATA = {data:?}, PAUSE = {pause:?} }}\n",
                script = script.display().to_string(),
                data = data.display().to_string(),
            ),
        )
        .unwrap();
        let inner = GraphFile::read(&graph_file).unwrap().graph().unwrap();
        let user = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        let mut engines = engines.into_iter().map(|(e, _)| e);
        let mut config = DockerConfig::new(engines.next().unwrap(), root.join("docker"))
            .store(format!("agent-test-{}", uuid()))
            .user(user)
            .kill_grace(Duration::from_secs(2))
            .allow_mounts_under(&root)
            .mount(&root, &root, false);
        for e in engines {
            config = config.engine(e);
        }
        World {
            dir,
            graph_file,
            inner,
            config,
        }
    }

    fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    /// The outer graph: one subgraph job over the chain, two attempts.
    fn graph(&self, keepalive: &str) -> Graph {
        let job = SubgraphJob::builder("//t:node", self.inner.clone())
            .image(AGENT_IMAGE)
            .agent([AGENT, "agent"])
            .graph_file(&self.graph_file)
            .env("DATABUILD_KEEPALIVE_INTERVAL", keepalive)
            .hints(SchedulingHints {
                retry: RetryPolicy {
                    max_attempts: 2,
                    initial_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(10),
                },
                ..SchedulingHints::default()
            })
            .build()
            .unwrap();
        Graph::builder().job(job).build().unwrap()
    }

    async fn orchestrator(
        &self,
        executor: &Arc<DockerExecutor>,
        bel: &MemoryBel,
        liveness: Duration,
    ) -> Orchestrator {
        Orchestrator::builder()
            .graph(self.graph("200ms"))
            .bel(Arc::new(bel.clone()))
            .executor(Arc::clone(executor) as Arc<dyn databuild_core::Executor>)
            .state_dir(self.root().join("state"))
            .settings(OrchestratorSettings::default().liveness_timeout(liveness))
            .build()
            .unwrap()
    }
}

fn uuid() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{t:x}-{}", std::process::id())
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

async fn all(bel: &MemoryBel) -> Vec<BuildEvent> {
    bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap()
}

/// The log passes the checker (so no node event is recorded twice), and
/// each node's relayed events, read as a log of their own (seqs on the
/// node), pass it too and start at 1 with no gap. Returns the relayed
/// events by node.
fn checked(events: &[BuildEvent]) -> std::collections::BTreeMap<String, Vec<BuildEvent>> {
    check_log(events).unwrap();
    BuildState::replay(events).unwrap_or_else(|v| {
        let kinds: Vec<String> = events
            .iter()
            .map(|e| format!("{} {} {} {:?}", e.seq, e.kind(), e.job_run_id, e.origin))
            .collect();
        panic!("{v}\n{}", kinds.join("\n"))
    });
    let mut nodes: std::collections::BTreeMap<String, Vec<BuildEvent>> = Default::default();
    for e in events {
        if let Some(o) = &e.origin {
            let mut own = e.clone();
            own.seq = o.seq;
            own.origin = None;
            nodes.entry(o.node.clone()).or_default().push(own);
        }
    }
    for (node, log) in &nodes {
        for (i, e) in log.iter().enumerate() {
            assert_eq!(
                e.seq,
                i as u64 + 1,
                "node {node}: relayed events in order, once each"
            );
        }
        check_log(log).unwrap();
        let state = BuildState::replay(log).unwrap_or_else(|v| {
            let kinds: Vec<String> = log
                .iter()
                .map(|e| format!("{} {} {}", e.seq, e.kind(), e.job_run_id))
                .collect();
            panic!("node {node}: {v}\n{}", kinds.join("\n"))
        });
        // Every run of the node ends in its record: a lost node's open runs
        // are closed by the orchestrator.
        let open: Vec<_> = state.runs().filter(|r| !r.state.is_terminal()).collect();
        assert!(open.is_empty(), "node {node} leaves runs open: {open:?}");
    }
    nodes
}

/// Waits until some node relayed `succeeded` successful runs; returns that
/// node (the agent's run id).
async fn wait_for_node(bel: &MemoryBel, succeeded: usize) -> String {
    for _ in 0..1200 {
        let events = all(bel).await;
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for e in &events {
            if let Some(o) = &e.origin
                && e.kind() == "job_run_succeeded"
            {
                *counts.entry(o.node.clone()).or_default() += 1;
            }
        }
        if let Some((node, _)) = counts.into_iter().find(|(_, n)| *n >= succeeded) {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no node relayed {succeeded} successful runs");
}

/// The engine (index) whose container is `name`.
async fn engine_of(sockets: &[PathBuf], name: &str) -> usize {
    for (i, s) in sockets.iter().enumerate() {
        if docker(s)
            .await
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .is_ok()
        {
            return i;
        }
    }
    panic!("no engine has container {name}");
}

/// The retry's agent ran only what the lost node `lost` had not finished:
/// together they built the `total` partitions, none twice.
fn retry_ran_only_the_rest(
    nodes: &std::collections::BTreeMap<String, Vec<BuildEvent>>,
    lost: &str,
    total: usize,
) {
    assert_eq!(nodes.len(), 2, "the lost node and its retry");
    let finished = |node: &str| -> Vec<String> {
        nodes[node]
            .iter()
            .filter_map(|e| match &e.event {
                Some(databuild_core::bel::Event::PartitionStatusChanged(p))
                    if p.status == databuild_core::proto::PartitionStatus::Available as i32 =>
                {
                    p.partition.as_ref().map(|r| r.str.clone())
                }
                _ => None,
            })
            .collect()
    };
    let before = finished(lost);
    let retry = nodes.keys().find(|n| *n != lost).unwrap();
    let rest = finished(retry);
    assert!(before.len() >= 3, "{before:?}");
    assert_eq!(
        before.len() + rest.len(),
        total,
        "lost node {before:?}, retry {rest:?}"
    );
    assert!(
        rest.iter().all(|p| !before.contains(p)),
        "nothing ran twice"
    );
}

fn running_handles(events: &[BuildEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(databuild_core::bel::Event::JobRunRunning(r)) if e.origin.is_none() => {
                Some((e.job_run_id.clone(), r.handle.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_a_fifty_task_plan_and_every_event_arrives_once() {
    let Some(sockets) = engines("an_agent_runs_a_fifty_task_plan", 1) else {
        return;
    };
    let world = World::new(&sockets[..1], "0").await;
    let executor = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    let o = world
        .orchestrator(&executor, &bel, Duration::from_secs(30))
        .await;
    let outcome = o.build(&[r("c/49")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    for n in 0..50 {
        let written = std::fs::read_to_string(world.root().join(format!("data/c-{n}"))).unwrap();
        assert_eq!(written.trim(), n.to_string());
    }
    let events = all(&bel).await;
    let nodes = checked(&events);
    assert_eq!(nodes.len(), 1, "one agent");
    let (node, relayed) = nodes.iter().next().unwrap();
    let succeeded = relayed
        .iter()
        .filter(|e| e.kind() == "job_run_succeeded")
        .count();
    assert_eq!(succeeded, 50, "the agent ran the 50 tasks");
    // The agent's last event is its build's end: nothing was lost.
    assert_eq!(relayed.last().unwrap().kind(), "build_succeeded");
    // The combined log, with the build's logs: every task's stdout and
    // stderr, and the agent's own entries.
    let state = BuildState::replay(&events).unwrap();
    assert!(state.run(node).is_some());
    let logs = std::fs::read_dir(world.root().join("state/logs"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.to_string_lossy().contains(node.as_str()))
        .expect("the node run's log");
    let text = std::fs::read_to_string(logs).unwrap();
    for n in 0..50 {
        assert!(
            text.contains(&format!("task {n} says hello")),
            "task {n}'s stdout"
        );
        assert!(
            text.contains(&format!("task {n} warns on stderr")),
            "task {n}'s stderr"
        );
    }
    assert!(text.contains("[agent] started"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_a_lost_node_and_its_plan_runs_again_on_the_other_engine() {
    let Some(sockets) = engines("a_killed_agent_is_a_lost_node", 2) else {
        return;
    };
    let world = World::new(&sockets[..2], "0.05").await;
    let executor = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    let o = world
        .orchestrator(&executor, &bel, Duration::from_secs(30))
        .await;
    let build = o.start(&[r("c/19")], BuildOptions::default());
    let node = wait_for_node(&bel, 3).await;
    let first_engine = engine_of(&sockets, &node).await;
    docker(&sockets[first_engine])
        .await
        .kill_container(
            &node,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let outcome = build.outcome().await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let events = all(&bel).await;
    let nodes = checked(&events);
    let failed = events
        .iter()
        .find(|e| e.kind() == "job_run_failed" && e.job_run_id == node)
        .expect("the killed agent's run failed");
    retry_ran_only_the_rest(&nodes, &node, 20);
    let reason = format!("{:?}", failed.event);
    assert!(reason.contains("node lost"), "{reason}");
    let handles = running_handles(&events);
    assert_eq!(handles.len(), 2, "{handles:?}");
    let retry_engine = format!("engine{}", 2 - first_engine);
    assert!(
        handles[1].1.contains(&retry_engine),
        "the retry went to the other engine: {handles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_agent_falls_silent_and_its_run_is_lost_then_retried() {
    let Some(sockets) = engines("a_paused_agent_falls_silent", 2) else {
        return;
    };
    let world = World::new(&sockets[..2], "0.05").await;
    let executor = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    let o = world
        .orchestrator(&executor, &bel, Duration::from_secs(5))
        .await;
    let build = o.start(&[r("c/19")], BuildOptions::default());
    let node = wait_for_node(&bel, 3).await;
    let first_engine = engine_of(&sockets, &node).await;
    let paused = docker(&sockets[first_engine]).await;
    paused.pause_container(&node).await.unwrap();
    let outcome = build.outcome().await.unwrap();
    // Let the paused container go (its run is over for the orchestrator).
    let _ = paused.unpause_container(&node).await;
    let _ = paused
        .remove_container(
            &node,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    assert!(outcome.succeeded(), "{outcome:?}");
    let events = all(&bel).await;
    let nodes = checked(&events);
    retry_ran_only_the_rest(&nodes, &node, 20);
    assert!(
        events
            .iter()
            .any(|e| e.kind() == "job_run_lost" && e.job_run_id == node),
        "the silent agent's run is Lost"
    );
    let handles = running_handles(&events);
    assert_eq!(handles.len(), 2, "{handles:?}");
    assert!(
        handles[1]
            .1
            .contains(&format!("engine{}", 2 - first_engine))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_orchestrator_reattaches_to_its_agent_without_duplicates() {
    let Some(sockets) = engines("a_restarted_orchestrator_reattaches", 1) else {
        return;
    };
    let world = World::new(&sockets[..1], "0.05").await;
    let first = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    let o = world
        .orchestrator(&first, &bel, Duration::from_secs(30))
        .await;
    let _crashed = o.start(&[r("c/29")], BuildOptions::default());
    let node = wait_for_node(&bel, 3).await;
    // The orchestrator stops here: a new one starts on the log as it is.
    let prefix = all(&bel).await;
    let copy = MemoryBel::new();
    copy.append(prefix.clone()).await.unwrap();
    let second = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let o2 = world
        .orchestrator(&second, &copy, Duration::from_secs(30))
        .await;
    o2.load().await.unwrap();
    let resumed = o2.resumed();
    assert_eq!(resumed.len(), 1);
    let outcome = resumed.into_iter().next().unwrap().outcome().await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let events = all(&copy).await;
    let nodes = checked(&events);
    assert_eq!(nodes.len(), 1, "no second agent: {:?}", nodes.keys());
    assert_eq!(nodes.keys().next(), Some(&node));
    let relayed = &nodes[&node];
    assert_eq!(
        relayed
            .iter()
            .filter(|e| e.kind() == "job_run_succeeded")
            .count(),
        30
    );
    let after = &events[prefix.len()..];
    assert!(
        !after
            .iter()
            .any(|e| e.kind() == "job_scheduled" && e.origin.is_none()),
        "nothing was launched again: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_a_plan_made_for_another_graph_with_a_typed_error() {
    let Some(sockets) = engines("an_agent_refuses_a_mismatched_plan", 1) else {
        return;
    };
    let world = World::new(&sockets[..1], "0").await;
    // The agent gets a graph file whose job differs from the one the plan
    // was made with.
    let other = world.root().join("other.toml");
    let text = std::fs::read_to_string(&world.graph_file).unwrap();
    std::fs::write(&other, text.replace("PAUSE = \"0\"", "PAUSE = \"1\"")).unwrap();
    let job = SubgraphJob::builder("//t:node", world.inner.clone())
        .image(AGENT_IMAGE)
        .agent([AGENT, "agent"])
        .graph_file(&other)
        .build()
        .unwrap();
    let executor = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    let o = Orchestrator::builder()
        .graph(Graph::builder().job(job).build().unwrap())
        .bel(Arc::new(bel.clone()))
        .executor(executor as Arc<dyn databuild_core::Executor>)
        .state_dir(world.root().join("state"))
        .build()
        .unwrap();
    let outcome = o.build(&[r("c/3")]).await.unwrap();
    assert!(!outcome.succeeded());
    let events = all(&bel).await;
    checked(&events);
    let failed = events
        .iter()
        .find(|e| e.kind() == "job_run_failed")
        .expect("the agent's run failed");
    let text = format!("{:?}", failed.event);
    assert!(text.contains("refused"), "{text}");
    assert!(
        text.contains("another definition of job //t:chain"),
        "the error names the job: {text}"
    );
    assert!(text.contains("retryable: false"), "{text}");
}

/// An engine reached over TCP with TLS shares no file system with the
/// orchestrator: the agent's plan and graph file go in by upload (the job
/// script and the data are the one directory mounted, as for any job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_an_engine_over_tls_gets_its_plan_and_graph_file_by_upload() {
    let (Ok(addr), Some(dir)) = (
        std::env::var("DATABUILD_TEST_DOCKER_TLS"),
        std::env::var_os("DATABUILD_TEST_DOCKER_TLS_DIR").map(PathBuf::from),
    ) else {
        assert!(
            std::env::var("DATABUILD_TEST_DOCKER").as_deref() != Ok("1"),
            "DATABUILD_TEST_DOCKER=1 needs DATABUILD_TEST_DOCKER_TLS and DATABUILD_TEST_DOCKER_TLS_DIR"
        );
        println!(
            "skipping an_agent_on_an_engine_over_tls: no TLS engine (DATABUILD_TEST_DOCKER_TLS is not set)"
        );
        return;
    };
    let (key, cert, ca) = (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("ca.pem"),
    );
    let client =
        Docker::connect_with_ssl(&addr, &key, &cert, &ca, 120, bollard::API_DEFAULT_VERSION)
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
    let engine = EngineConfig {
        name: "tls".into(),
        endpoint: databuild_executor_docker::Endpoint::Tls {
            addr,
            key,
            cert,
            ca,
        },
        slots: 2,
        labels: Default::default(),
    };
    let world = World::on(vec![(engine, client)], "0").await;
    let executor = Arc::new(DockerExecutor::connect(world.config.clone()).await.unwrap());
    let bel = MemoryBel::new();
    let o = world
        .orchestrator(&executor, &bel, Duration::from_secs(30))
        .await;
    let outcome = o.build(&[r("c/4")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let events = all(&bel).await;
    let nodes = checked(&events);
    assert_eq!(nodes.len(), 1);
    let handles = running_handles(&events);
    assert!(handles[0].1.contains("docker:tls/"), "{handles:?}");
    for n in 0..5 {
        assert!(world.root().join(format!("data/c-{n}")).exists());
    }
}
