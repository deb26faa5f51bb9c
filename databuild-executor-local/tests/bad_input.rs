//! The bad-input matrix (issue #7), with real processes in the DataBuild job
//! protocol: each case ends in a typed error (or outcome) naming the
//! culprit, loses nothing (the log passes the state-diagram checker and
//! replays to the live state), and leaves the orchestrator serving: a good
//! request on the same orchestrator succeeds afterwards.
//!
//! The cases that are not about processes have their tests where the code
//! is; `SECURITY.md` lists every case and its test.

use std::sync::Arc;
use std::time::Duration;

use databuild_core::bel::check::check_log;
use databuild_core::state::BuildState;
use databuild_core::{
    BelSink, BuildError, BuildOptions, EventFilter, Graph, MemoryBel, Orchestrator,
    OrchestratorSettings, PartitionRef, ProcessJob,
};
use databuild_executor_local::{LocalConfig, LocalExecutor};

/// Prints one valid config per ref given.
const CONFIG: &str = r#"printf '{"configs":['; sep=; for r in "$@"; do printf '%s{"outputs":[{"str":"%s"}],"inputs":[],"args":[],"env":{}}' "$sep" "$r"; sep=,; done; printf ']}'"#;

/// Job `//<name>` making `<name>/...`: `config` runs `config`, `exec` runs
/// `exec` (both POSIX sh; `config` gets the refs as `$@`).
fn job(name: &str, config: &str, exec: &str) -> ProcessJob {
    let script = format!("if [ \"$1\" = config ]; then shift; {config}; else {exec}; fi");
    ProcessJob::builder(
        format!("//{name}"),
        vec!["sh".into(), "-c".into(), script, "sh".into()],
    )
    .pattern(format!("{name}/.*"))
    .config_timeout(Duration::from_secs(2))
    .build()
    .unwrap()
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

struct Rig {
    o: Orchestrator,
    bel: MemoryBel,
    dir: tempfile::TempDir,
}

fn rig(jobs: Vec<ProcessJob>) -> Rig {
    rig_in(tempfile::tempdir().unwrap(), jobs, |c| c)
}

fn rig_in(
    dir: tempfile::TempDir,
    jobs: Vec<ProcessJob>,
    f: impl FnOnce(LocalConfig) -> LocalConfig,
) -> Rig {
    let mut g = Graph::builder().job(job("ok", CONFIG, "echo fine"));
    for j in jobs {
        g = g.job(j);
    }
    let bel = MemoryBel::new();
    let state = dir.path().join("state");
    let o = Orchestrator::builder()
        .graph(g.build().unwrap())
        .bel(Arc::new(bel.clone()))
        .executor(Arc::new(LocalExecutor::new(f(LocalConfig::new(&state)
            .kill_grace(Duration::from_secs(1))
            .drain_grace(Duration::from_millis(500))))))
        .state_dir(&state)
        .parallelism(2)
        .settings(OrchestratorSettings::default().kill_grace(Duration::from_secs(3)))
        .build()
        .unwrap();
    Rig { o, bel, dir }
}

impl Rig {
    /// Nothing lost, and still serving.
    async fn still_serves(&self) {
        let n = self.o.state().requests().count();
        let outcome = self.o.build(&[r(&format!("ok/{n}"))]).await.unwrap();
        assert!(
            outcome.succeeded(),
            "the orchestrator still serves: {outcome:?}"
        );
        let events = self
            .bel
            .read(0, &EventFilter::all(), usize::MAX)
            .await
            .unwrap();
        check_log(&events).unwrap();
        assert_eq!(BuildState::replay(&events).unwrap(), self.o.state());
    }

    /// The one reason a failed build gives.
    async fn fails(&self, wanted: &str) -> String {
        let outcome = self.o.build(&[r(wanted)]).await.unwrap();
        assert!(!outcome.succeeded(), "{outcome:?}");
        outcome.not_built[0].reason.clone()
    }

    async fn plan_error(&self, wanted: &str) -> String {
        match self.o.build(&[r(wanted)]).await {
            Err(BuildError::Plan(e)) => e.to_string(),
            other => panic!("expected a plan error, got {other:?}"),
        }
    }

    fn log_of(&self, run: &str) -> String {
        let logs = self.dir.path().join("state/logs");
        for day in std::fs::read_dir(logs).unwrap().flatten() {
            let p = day.path().join(format!("{run}.jsonl"));
            if p.exists() {
                return std::fs::read_to_string(p).unwrap();
            }
        }
        panic!("no log for {run}")
    }

    fn only_run(&self, label: &str) -> String {
        self.o
            .state()
            .runs()
            .find(|r| r.task.job.as_ref().is_some_and(|j| j.label == label))
            .map(|r| r.job_run_id.clone())
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_output() {
    let rig = rig(vec![job("bad", "echo '{\"configs\": [ nope'", "true")]);
    let e = rig.plan_error("bad/1").await;
    assert!(e.contains("//bad") && e.contains("nope"), "{e}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_of_config_output() {
    let rig = rig(vec![job(
        "huge",
        "head -c 104857600 /dev/zero | tr '\\0' x",
        "true",
    )]);
    let e = rig.plan_error("huge/1").await;
    assert!(
        e.contains("//huge") && e.contains("xxxx"),
        "quotes a prefix: {e}"
    );
    assert!(e.len() < 10_000, "but only a prefix");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_that_exits_non_zero() {
    let rig = rig(vec![job(
        "exits",
        "echo 'no such table' >&2; exit 4",
        "true",
    )]);
    let e = rig.plan_error("exits/1").await;
    assert!(e.contains("//exits") && e.contains("no such table"), "{e}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_that_hangs() {
    let rig = rig(vec![job("hangs", "sleep 600", "true")]);
    let e = rig.plan_error("hangs/1").await;
    assert!(e.contains("//hangs") && e.contains("2s"), "{e}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_and_nul_bytes_in_job_output() {
    let rig = rig(vec![job("bytes", CONFIG, "printf 'a\\377b\\000c\\n'")]);
    let outcome = rig.o.build(&[r("bytes/1")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let log = rig.log_of(&rig.only_run("//bytes"));
    assert!(log.contains("a\u{FFFD}b\\u0000c"), "kept, lossily: {log}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_line_without_a_newline() {
    let rig = rig(vec![job(
        "long",
        CONFIG,
        "head -c 10485760 /dev/zero | tr '\\0' y",
    )]);
    let outcome = rig.o.build(&[r("long/1")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let log = rig.log_of(&rig.only_run("//long"));
    assert!(log.lines().count() >= 10, "logged in capped pieces");
    assert!(log.lines().all(|l| l.len() < 3 << 20));
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_line_with_invalid_json() {
    let rig = rig(vec![job(
        "marker",
        CONFIG,
        "echo '__DATABUILD_ERROR__::{\"missing_deps\": [oops'",
    )]);
    let reason = rig.fails("marker/1").await;
    assert!(
        reason.contains("__DATABUILD_ERROR__") && reason.contains("oops"),
        "{reason}"
    );
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_deps_naming_refs_no_job_produces() {
    let rig = rig(vec![job(
        "needs",
        CONFIG,
        "echo '__DATABUILD_ERROR__::{\"missing_deps\":[{\"impacted\":[\"needs/1\"],\"missing\":[\"nobody/makes-this\"]}]}'",
    )]);
    let reason = rig.fails("needs/1").await;
    assert!(reason.contains("nobody/makes-this"), "{reason}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_and_run_time_cycles() {
    // Static: a/x reads b/x, b/x reads a/x.
    let reads = |other: &str| {
        format!(
            r#"printf '{{"configs":['; sep=; for r in "$@"; do k=${{r#*/}}; printf '%s{{"outputs":[{{"str":"%s"}}],"inputs":[{{"dep_type_code":1,"partition_ref":{{"str":"{other}/%s"}}}}],"args":[],"env":{{}}}}' "$sep" "$r" "$k"; sep=,; done; printf ']}}'"#
        )
    };
    // Run time: c/x says it needs d/x, whose config reads c/x.
    let rig = rig(vec![
        job("a", &reads("b"), "true"),
        job("b", &reads("a"), "true"),
        job(
            "c",
            CONFIG,
            "echo '__DATABUILD_ERROR__::{\"missing_deps\":[{\"impacted\":[\"c/1\"],\"missing\":[\"d/1\"]}]}'",
        ),
        job("d", &reads("c"), "true"),
    ]);
    let e = rig.plan_error("a/1").await;
    assert!(
        e.contains("cycle") && e.contains("a/1") && e.contains("b/1"),
        "{e}"
    );
    let reason = rig.fails("c/1").await;
    assert!(
        reason.contains("cycle") && reason.contains("c/1"),
        "{reason}"
    );
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_and_unmatched_refs() {
    let twin = ProcessJob::builder("//twin", vec!["true".into()])
        .pattern("ok/ambiguous")
        .build()
        .unwrap();
    let rig = rig(vec![twin]);
    let e = rig.plan_error("ok/ambiguous").await;
    assert!(e.contains("//ok") && e.contains("//twin"), "{e}");
    let e = rig.plan_error("nobody/1").await;
    assert!(e.contains("nobody/1"), "{e}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_with_dot_dot_nul_or_control_characters() {
    for bad in ["ok/../etc", "ok/a\0b", "ok/a\nb", "ok/\u{1b}[31m"] {
        let e = PartitionRef::new(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:?}")), "the input, quoted: {e}");
    }
    // A config that returns such a ref as an input is refused, naming it.
    let rig = rig(vec![job(
        "sneaky",
        r#"printf '{"configs":[{"outputs":[{"str":"%s"}],"inputs":[{"dep_type_code":1,"partition_ref":{"str":"ok/../../etc/passwd"}}],"args":[],"env":{}}]}' "$1""#,
        "true",
    )]);
    let e = rig.plan_error("sneaky/1").await;
    assert!(e.contains("ok/../../etc/passwd"), "{e}");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_forks_a_daemon_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let rig = rig_in(
        dir,
        vec![job(
            "forks",
            CONFIG,
            &format!(
                "(sleep 600 & echo $! > {}) ; echo started",
                pidfile.display()
            ),
        )],
        |c| c,
    );
    let outcome = tokio::time::timeout(Duration::from_secs(30), rig.o.build(&[r("forks/1")]))
        .await
        .expect("the run does not wait for the daemon")
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for init to reap it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .is_some_and(|zombie| !zombie)
    };
    for _ in 0..50 {
        if !alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive(), "the daemon was killed with the job's group");
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ignores_sigterm() {
    let rig = rig(vec![job(
        "stubborn",
        CONFIG,
        "trap '' TERM; echo up; sleep 600",
    )]);
    let handle = rig.o.start(&[r("stubborn/1")], BuildOptions::default());
    let id = handle.build_request_id().to_owned();
    while !rig
        .o
        .state()
        .runs()
        .any(|r| r.state == databuild_core::state::RunState::Running)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.o.cancel(&id, "enough").unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), handle.outcome())
        .await
        .expect("killed after the grace")
        .unwrap();
    assert!(outcome.canceled, "{outcome:?}");
    let run = rig.only_run("//stubborn");
    assert_eq!(
        rig.o.state().run(&run).unwrap().state,
        databuild_core::state::RunState::Canceled
    );
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_closes_stdout_and_keeps_running() {
    let rig = rig(vec![job(
        "quiet",
        CONFIG,
        "echo before; exec 1>&- 2>&-; sleep 2; exit 0",
    )]);
    let started = std::time::Instant::now();
    let outcome = rig.o.build(&[r("quiet/1")]).await.unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it ran to its end"
    );
    rig.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_log_directory() {
    // A log directory under a regular file (root can write anywhere, so
    // chmod would not do): ENOTDIR, named.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state"), "a file, not a directory").unwrap();
    let rig = rig_in(dir, vec![job("logs", CONFIG, "true")], |c| c);
    match rig.o.build(&[r("logs/1")]).await {
        Ok(outcome) => {
            assert!(!outcome.succeeded());
            let reason = &outcome.not_built[0].reason;
            assert!(reason.contains("state"), "{reason}");
        }
        Err(e) => assert!(e.to_string().contains("state"), "{e}"),
    }
}
