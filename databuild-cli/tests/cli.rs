//! The `databuild` command, run as a process against real job programs
//! (`tests/fixtures/jobs.py`, in the DataBuild job protocol), a real
//! SQLite BEL and the local executor in runner mode.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;
use predicates::prelude::*;
use serde_json::Value;

/// A project directory: a graph file over the fixture jobs, a data
/// directory, the default home `.databuild`.
struct Project {
    dir: tempfile::TempDir,
}

const JOBS: [(&str, &str); 5] = [
    ("raw", r"raw/date=\d{4}-\d{2}-\d{2}"),
    ("daily", r"daily/date=\d{4}-\d{2}-\d{2}"),
    ("weekly", r"weekly/end=\d{4}-\d{2}-\d{2}"),
    ("broken", r"broken/date=\d{4}-\d{2}-\d{2}"),
    ("slow", r"slow/date=\d{4}-\d{2}-\d{2}"),
];

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs.py");
        let mut toml = String::from("[build]\nparallelism = 2\n");
        for (job, pattern) in JOBS {
            toml.push_str(&format!(
                "\n[[job]]\nlabel = \"//t:{job}\"\nentrypoint = [\"python3\", {fixture:?}, \"{job}\"]\noutputs = ['{pattern}']\nenv = {{ DATA = {data:?}, SLOW_SECONDS = \"{slow}\" }}\n{retry}",
                data = dir.path().join("data"),
                slow = if job == "slow" { 30 } else { 0 },
                retry = if job == "broken" { "retry = { attempts = 2, backoff = \"100ms\" }\n" } else { "" },
            ));
        }
        std::fs::write(dir.path().join("databuild.toml"), toml).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("databuild").unwrap();
        c.current_dir(self.path())
            .env_remove("DATABUILD_HOME")
            .env_remove("DATABUILD_GRAPH")
            .timeout(Duration::from_secs(120));
        c
    }

    /// The command as a child process (to signal it, or run it beside
    /// another).
    fn spawn(&self, args: &[&str]) -> Child {
        std::process::Command::cargo_bin("databuild")
            .unwrap()
            .current_dir(self.path())
            .env_remove("DATABUILD_HOME")
            .env_remove("DATABUILD_GRAPH")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn events(&self, args: &[&str]) -> Vec<Value> {
        let out = self
            .cmd()
            .arg("events")
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The id of the newest build request.
    fn last_request(&self) -> String {
        self.events(&[])
            .iter()
            .rev()
            .find(|e| e.get("build_request_received").is_some())
            .map(|e| e["build_request_id"].as_str().unwrap().to_owned())
            .expect("a build request")
    }

    fn data(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join("data").join(name)).ok()
    }

    /// Waits until an event of `kind` is in the log.
    fn wait_for_event(&self, kind: &str) -> Value {
        self.wait_for(kind, |e| e.get(kind).is_some())
    }

    /// Waits until an event of `kind` of build request `id` is in the log.
    fn wait_for_event_of(&self, kind: &str, id: &str) -> Value {
        self.wait_for(kind, |e| {
            e.get(kind).is_some() && e["build_request_id"].as_str() == Some(id)
        })
    }

    /// Waits until an event `is` is in the log.
    fn wait_for(&self, what: &str, is: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // One read: there may be no store yet, or (a moment after its
            // file appears) no schema in it yet.
            let out = self.cmd().args(["events", "--json"]).output().unwrap();
            if out.status.success()
                && let Some(e) = stdout(&out)
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .find(&is)
            {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event in time (events said: {})",
                stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes the `slow` job wait, in `config` and in `exec`, until the
    /// test releases it ([`release`](Self::release)); it then succeeds at
    /// once.
    fn hold_slow_job(&self) {
        let graph = self.path().join("databuild.toml");
        let text = std::fs::read_to_string(&graph).unwrap();
        let held = format!(
            "SLOW_SECONDS = \"0\", CONFIG_WAIT_FOR = {:?}, EXEC_WAIT_FOR = {:?}",
            self.path().join("planned-{ref}"),
            self.path().join("ran-{ref}"),
        );
        std::fs::write(&graph, text.replace("SLOW_SECONDS = \"30\"", &held)).unwrap();
    }

    /// Starts `build <partition>` (of the held `slow` job) and waits until
    /// a request other than `others` records `event` (`build_planning`:
    /// its `config` is held; `job_run_running`, with `config` released
    /// first: its run is held). Returns the process and its request's id.
    fn start_held(&self, partition: &str, event: &str, others: &[&str]) -> (Child, String) {
        let child = self.spawn(&["build", "--plain", partition]);
        let seen = self.wait_for(event, |e| {
            e.get(event).is_some()
                && !others.contains(&e["build_request_id"].as_str().unwrap_or_default())
        });
        (child, seen["build_request_id"].as_str().unwrap().to_owned())
    }

    /// Checks that `status` counts `total` build requests, `open` of them
    /// open.
    fn assert_requests(&self, total: usize, open: usize) {
        self.cmd()
            .args(["status"])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "{total} build request(s), {open} open"
            )));
    }

    /// Lets the held `slow` job go on: `step` is `planned` (its `config`)
    /// or `ran` (its `exec`) for `partition`.
    fn release(&self, step: &str, partition: &str) {
        let name = format!("{step}-{}", partition.replace('/', "_"));
        std::fs::write(self.path().join(name), "").unwrap();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e.get(kind).is_some()).count()
}

/// Waits for `child` to exit, then collects what it printed.
fn finish(mut child: Child, within: Duration) -> Output {
    wait_exit(&mut child, within);
    child.wait_with_output().unwrap()
}

/// Waits for `child` (called `name`) to exit 0, and returns what it printed.
fn succeeds(name: &str, child: Child) -> Output {
    let out = finish(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{name}: {:?}\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn build_then_nothing_to_rebuild() {
    let p = Project::new();
    p.cmd()
        .args(["build", "weekly/end=2024-01-07"])
        .assert()
        .success()
        .stdout(predicate::str::contains("built 7 partition(s)"))
        .stdout(predicate::str::contains("databuild explain"))
        .stdout(predicate::str::contains("databuild report"));
    let weekly = p.data("weekly_end=2024-01-07").unwrap();
    assert!(weekly.starts_with("weekly/end=2024-01-07 by "), "{weekly}");
    assert!(p.data("raw_date=2024-01-05").is_some());

    p.cmd()
        .args(["build", "weekly/end=2024-01-07"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "built 0 partition(s), 1 already available",
        ));
    let second = p.last_request();
    let events = p.events(&["--build", &second]);
    assert_eq!(count(&events, "job_run_running"), 0, "{events:?}");
    assert_eq!(count(&events, "build_succeeded"), 1);
    // The job ran once: its output still names the first run.
    assert_eq!(p.data("weekly_end=2024-01-07").unwrap(), weekly);

    p.cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("7 partition(s): 7 available"))
        .stdout(predicate::str::contains("2 build request(s), 0 open"));
    p.cmd()
        .args(["status", "--pattern", r"raw/.*"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 partition(s): 3 available"))
        .stdout(predicate::str::contains("available  raw/date=2024-01-06"));
}

#[test]
fn a_failed_build_exits_1_and_explain_logs_and_report_say_why() {
    let p = Project::new();
    let out = p.run(&[
        "build",
        "--keep-going",
        "broken/date=2024-01-01",
        "raw/date=2024-01-01",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("not built: broken/date=2024-01-01"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        p.data("raw_date=2024-01-01")
            .as_deref()
            .map(|s| s.starts_with("raw/")),
        Some(true)
    );

    p.cmd()
        .args(["explain", "broken/date=2024-01-01"])
        .assert()
        .success()
        .stdout(predicate::str::contains("is built by job //t:broken"))
        .stdout(predicate::str::contains("is failed"))
        .stdout(predicate::str::contains("attempt 2 Failed"))
        .stdout(predicate::str::contains(
            "| broken: cannot build broken/date=2024-01-01",
        ));

    let failed = p
        .events(&[])
        .into_iter()
        .filter(|e| e.get("job_run_failed").is_some())
        .map(|e| e["job_run_id"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 2, "two attempts");
    p.cmd()
        .args(["logs", &failed[0]])
        .assert()
        .success()
        .stdout(predicate::str::contains("stderr   broken: cannot build"))
        .stdout(predicate::str::contains("exited with exit code 3"));
    // The request's combined log: its events and its runs' lines, by time.
    let request = p.last_request();
    let combined = p.run(&["logs", "--build", &request]);
    assert!(combined.status.success(), "{}", stderr(&combined));
    let text = stdout(&combined);
    assert!(text.contains("event    build_request_received"), "{text}");
    assert!(
        text.contains("broken: cannot build broken/date=2024-01-01"),
        "{text}"
    );
    assert!(text.contains("building raw/date=2024-01-01"), "{text}");
    let first_fail = text.find("broken: cannot build").unwrap();
    assert!(
        text.find("build_request_received").unwrap() < first_fail,
        "merged by time"
    );
    p.cmd().args(["logs", "--build", "nope"]).assert().code(2);
    // A finished run: --follow prints it and returns.
    p.cmd()
        .args(["logs", "--follow", &failed[1]])
        .assert()
        .success()
        .stdout(predicate::str::contains("broken: cannot build"));

    let id = p.last_request();
    p.cmd()
        .args(["report", &id, "-o", "report.html"])
        .assert()
        .success();
    let html = std::fs::read_to_string(p.path().join("report.html")).unwrap();
    assert_eq!(html.matches("class=\"run-bar ").count(), 3, "three runs");
    assert!(html.contains("broken: cannot build broken/date=2024-01-01"));
    assert!(
        !html.contains("http://") && !html.contains("https://") || !html.contains("src=\"http")
    );
}

#[test]
fn events_filter_by_partition_run_and_since() {
    let p = Project::new();
    p.cmd()
        .args(["build", "daily/date=2024-02-01"])
        .assert()
        .success();
    let all = p.events(&[]);
    let raw = p.events(&["--partition", "raw/date=2024-02-01"]);
    assert!(raw.len() < all.len());
    // The raw run's own events (its running event names no partition),
    // and events of others that name it (the daily run reads it).
    assert_eq!(count(&raw, "job_run_running"), 1, "{raw:?}");
    assert_eq!(count(&raw, "job_run_queued"), 2, "{raw:?}");
    let run = raw
        .iter()
        .find(|e| e.get("job_run_running").is_some())
        .unwrap()["job_run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let of_run = p.events(&["--job-run", &run]);
    assert!(of_run.iter().all(|e| e["job_run_id"] == run.as_str()));
    assert_eq!(count(&of_run, "job_run_queued"), 1);
    let since = p.events(&["--since", "5"]);
    assert_eq!(since.len(), all.len() - 5);
    assert_eq!(since[0]["seq"], "6");
    // Human-readable: one line per event, seq first.
    let text = stdout(&p.run(&["events"]));
    assert_eq!(text.lines().count(), all.len());
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("build_request_received")
    );
}

#[test]
fn analyze_prints_the_plan_in_four_formats() {
    let p = Project::new();
    let text = p.run(&["analyze", "weekly/end=2024-01-07"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.starts_with("7 task(s), 6 edge(s)"), "{text}");
    assert!(
        text.contains("reads daily/date=2024-01-05 daily/date=2024-01-06 daily/date=2024-01-07")
    );
    let mermaid = stdout(&p.run(&["analyze", "--format", "mermaid", "weekly/end=2024-01-07"]));
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    let dot = stdout(&p.run(&["analyze", "--format", "dot", "weekly/end=2024-01-07"]));
    assert!(dot.starts_with("digraph"), "{dot}");
    let json: Value = serde_json::from_str(&stdout(&p.run(&[
        "analyze",
        "--format",
        "json",
        "weekly/end=2024-01-07",
    ])))
    .unwrap();
    assert_eq!(json["tasks"].as_array().unwrap().len(), 7);
    // Nothing ran and nothing was written: analyze only reads.
    assert!(!p.path().join(".databuild/bel.sqlite").exists());
    assert!(p.data("raw_date=2024-01-05").is_none());
}

#[test]
fn bad_graph_files_name_the_line_and_the_field() {
    let p = Project::new();
    let graph = p.path().join("databuild.toml");
    let good = std::fs::read_to_string(&graph).unwrap();

    std::fs::write(&graph, good.replacen("outputs =", "outptus =", 1)).unwrap();
    p.cmd()
        .args(["build", "raw/date=2024-01-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "databuild.toml:7:1: `outptus`: unknown field",
        ));

    std::fs::write(&graph, good.replacen(r"\d{4}-", r"\d{4-", 1)).unwrap();
    p.cmd()
        .args(["analyze", "raw/date=2024-01-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(":7:").and(predicate::str::contains("`job[0].outputs`")));

    std::fs::write(
        &graph,
        good.replacen("parallelism = 2", "parallelism = -1", 1),
    )
    .unwrap();
    p.cmd()
        .args(["build", "raw/date=2024-01-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "databuild.toml:2:15: `build.parallelism`",
        ));

    std::fs::write(&graph, "[[job]]\nlabel = \"//a\"\n").unwrap();
    p.cmd()
        .args(["build", "raw/date=2024-01-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`entrypoint`: missing field"));

    std::fs::write(&graph, "[[job]\n").unwrap();
    p.cmd()
        .args(["build", "raw/date=2024-01-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("databuild.toml:1:"));

    p.cmd()
        .args(["--graph", "nowhere.toml", "build", "raw/date=2024-01-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "nowhere.toml: cannot read the graph file",
        ));
    // Nothing was started by any of them.
    assert!(!p.path().join(".databuild/bel.sqlite").exists());
}

#[test]
fn unknown_ids_refs_and_stores_are_usage_errors() {
    let p = Project::new();
    p.cmd()
        .args(["status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no build event log at"));
    p.cmd()
        .args(["build", "nothing/here"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing/here"));
    p.cmd()
        .args(["build", "raw/../etc"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("raw/../etc"));
    p.cmd()
        .args(["build", "raw/date=2024-03-01"])
        .assert()
        .success();
    for args in [
        vec!["logs", "nope"],
        vec!["events", "--job-run", "nope"],
        vec!["events", "--build", "nope"],
        vec!["trace", "nope"],
        vec!["report", "nope"],
        vec!["cancel", "nope"],
    ] {
        p.cmd()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("\"nope\""));
    }
    let id = p.last_request();
    p.cmd()
        .args(["cancel", &id])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already ended (succeeded)"));
    // A job requiring a label no executor has: unschedulable, named.
    let graph = p.path().join("databuild.toml");
    let text = std::fs::read_to_string(&graph).unwrap();
    std::fs::write(
        &graph,
        text.replacen(
            "\n[[job]]\nlabel = \"//t:raw\"",
            "\n[[job]]\nrequires = { gpu = \"true\" }\nlabel = \"//t:raw\"",
            1,
        ),
    )
    .unwrap();
    p.cmd()
        .args(["build", "raw/date=2024-03-02"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no executor has label gpu=true"));
    std::fs::write(&graph, text).unwrap();
    p.cmd()
        .args(["explain", "raw/date=1999-01-01"])
        .assert()
        .success()
        .stdout(predicate::str::contains("has never been asked for"));
}

#[test]
fn taint_makes_the_next_build_rebuild() {
    let p = Project::new();
    p.cmd()
        .args(["build", "daily/date=2024-01-06"])
        .assert()
        .success();
    let before = p.data("daily_date=2024-01-06").unwrap();
    p.cmd()
        .args(["taint", "daily/date=2024-01-06"])
        .assert()
        .success()
        .stdout(predicate::str::contains("tainted daily/date=2024-01-06"));
    p.cmd()
        .args(["status", "--pattern", "daily/.*"])
        .assert()
        .stdout(predicate::str::contains("1 tainted"));
    p.cmd()
        .args(["build", "daily/date=2024-01-06"])
        .assert()
        .success()
        .stdout(predicate::str::contains("built 1 partition(s)"));
    assert_ne!(
        p.data("daily_date=2024-01-06").unwrap(),
        before,
        "rebuilt by a new run"
    );
}

#[test]
fn trace_is_valid_trace_event_format() {
    let p = Project::new();
    p.cmd()
        .args(["build", "weekly/end=2024-01-07"])
        .assert()
        .success();
    let id = p.last_request();
    p.cmd()
        .args(["trace", &id, "-o", "trace.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("7 job run(s)"));
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("trace.json")).unwrap())
            .unwrap();
    let problems = databuild_cli::trace::validate(&trace);
    assert!(problems.is_empty(), "{problems:?}");
    let events = trace["traceEvents"].as_array().unwrap();
    let begins: Vec<&Value> = events.iter().filter(|e| e["ph"] == "B").collect();
    assert_eq!(begins.len(), 7, "one slice per job run");
    assert!(begins.iter().all(|b| b["args"]["job_run_id"].is_string()));
    // Tracks are slots: never more than the parallelism of 2.
    let tracks: std::collections::BTreeSet<i64> =
        begins.iter().map(|b| b["tid"].as_i64().unwrap()).collect();
    assert!(!tracks.is_empty() && tracks.len() <= 2, "{tracks:?}");
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"thread_name") && names.contains(&"process_name"));
}

/// The report opens in headless Chromium with no console errors, and the
/// page shows one bar per job run (counted in the rendered DOM). Saves a
/// screenshot next to the test binaries. Skips with a notice when
/// Chromium is not installed, unless DATABUILD_TEST_BROWSER=1 (CI).
#[test]
fn report_opens_in_a_browser_with_a_bar_per_run() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        assert!(
            std::env::var("DATABUILD_TEST_BROWSER").as_deref() != Ok("1"),
            "DATABUILD_TEST_BROWSER=1 but no chromium on PATH"
        );
        eprintln!("skipping report_opens_in_a_browser_with_a_bar_per_run: no chromium on PATH");
        return;
    };
    let p = Project::new();
    let out = p.run(&[
        "build",
        "--keep-going",
        "weekly/end=2024-01-07",
        "broken/date=2024-01-01",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let id = p.last_request();
    let runs = count(&p.events(&["--build", &id]), "job_run_running");
    assert_eq!(runs, 9, "7 built, 2 failed attempts");
    p.cmd()
        .args(["report", &id, "-o", "report.html"])
        .assert()
        .success();
    let url = format!("file://{}", p.path().join("report.html").display());
    let browser = |extra: &[&str]| {
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
            ])
            .args(["--enable-logging=stderr", "--v=0"])
            .arg(format!(
                "--user-data-dir={}",
                p.path().join("chromium").display()
            ))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = browser(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    let html = stdout(&dom);
    assert_eq!(
        html.matches("class=\"run-bar ").count(),
        runs,
        "one bar per job run"
    );
    assert!(html.contains("id=\"outcome\">failed<"));
    assert_eq!(
        html.matches("<g class=\"task ").count(),
        8,
        "the plan's tasks"
    );
    let log = stderr(&dom);
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let shot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let out = browser(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,1000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a picture was saved"
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn cancel_and_a_second_build_go_through_the_running_build() {
    let p = Project::new();
    let mut slow = p.spawn(&["build", "--plain", "slow/date=2024-01-01"]);
    let running = p.wait_for_event("job_run_running");
    let slow_id = running["build_request_id"].as_str().unwrap().to_owned();
    // Its control socket is its owner's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.path().join(".databuild/control.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    // A second build while the first holds the store: submitted to it.
    p.cmd()
        .args(["build", "--plain", "raw/date=2024-01-02"])
        .assert()
        .success()
        .stderr(predicate::str::contains("run by the build already holding"))
        .stdout(predicate::str::contains(": succeeded"));
    assert!(p.data("raw_date=2024-01-02").is_some());
    // Taint through it too.
    p.cmd()
        .args(["taint", "raw/date=2024-01-02"])
        .assert()
        .success();

    p.cmd()
        .args(["cancel", &slow_id])
        .assert()
        .success()
        .stdout(predicate::str::contains("cancelling build request"));
    let status = wait_exit(&mut slow, Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(1),
        "a cancelled build did not build what it was asked"
    );
    let events = p.events(&["--build", &slow_id]);
    assert_eq!(count(&events, "build_canceled"), 1);
    assert_eq!(count(&events, "job_run_canceled"), 1);
    assert!(p.data("slow_date=2024-01-01").is_none());
    p.cmd()
        .args(["status", "--pattern", "raw/.*"])
        .assert()
        .stdout(predicate::str::contains("1 tainted"));
}

#[test]
fn ctrl_c_cancels_the_build_and_exits_130() {
    let p = Project::new();
    let mut child = p.spawn(&["build", "--plain", "slow/date=2024-01-03"]);
    let running = p.wait_for_event("job_run_running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    let id = running["build_request_id"].as_str().unwrap();
    let events = p.events(&["--build", id]);
    assert_eq!(count(&events, "build_canceled"), 1, "{events:?}");
    assert_eq!(count(&events, "job_run_canceled"), 1);
}

/// Runner mode: the command dies (SIGKILL) while its job runs; the job
/// goes on, and the next `build` takes the request up and re-attaches to
/// the run instead of running the job again.
#[test]
fn a_killed_build_is_taken_up_by_the_next_without_running_the_job_twice() {
    let p = Project::new();
    let graph = p.path().join("databuild.toml");
    let text = std::fs::read_to_string(&graph).unwrap();
    std::fs::write(
        &graph,
        text.replace("SLOW_SECONDS = \"30\"", "SLOW_SECONDS = \"3\""),
    )
    .unwrap();
    let mut child = p.spawn(&["build", "--plain", "slow/date=2024-01-04"]);
    let running = p.wait_for_event("job_run_running");
    child.kill().unwrap();
    child.wait().unwrap();
    let run = running["job_run_id"].as_str().unwrap().to_owned();
    let first = running["build_request_id"].as_str().unwrap().to_owned();

    let out = p.run(&["build", "--plain", "slow/date=2024-01-04"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!("resuming build request {first}")),
        "{}",
        stderr(&out)
    );
    let events = p.events(&[]);
    let launched: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("job_scheduled").is_some())
        .collect();
    assert_eq!(launched.len(), 1, "one launch: {launched:?}");
    let data = p.data("slow_date=2024-01-04").unwrap();
    assert!(data.contains(&run), "written by the first run: {data}");
    let ended = p.events(&["--build", &first]);
    assert_eq!(count(&ended, "build_succeeded"), 1);
}

#[test]
fn events_follow_prints_events_as_they_are_appended() {
    use std::io::BufRead;
    let p = Project::new();
    p.cmd()
        .args(["build", "raw/date=2024-05-01"])
        .assert()
        .success();
    let mut follower = std::process::Command::cargo_bin("databuild")
        .unwrap()
        .current_dir(p.path())
        .env_remove("DATABUILD_HOME")
        .args(["events", "--follow", "--json", "--since", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    // The stored events, up to the first build's end ...
    loop {
        let e = next();
        let done = e.get("build_succeeded").is_some();
        seen.push(e);
        if done {
            break;
        }
    }
    // ... then a second build while the follower waits: its events arrive.
    let second = p.run(&["build", "raw/date=2024-05-02"]);
    assert!(second.status.success());
    loop {
        let e = next();
        let done = e.get("build_succeeded").is_some();
        seen.push(e);
        if done {
            break;
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert_eq!(seen[0]["seq"], "2", "from --since on");
    let seqs: Vec<u64> = seen
        .iter()
        .map(|e| e["seq"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap: {seqs:?}"
    );
    assert_eq!(
        count(&seen, "build_request_received"),
        1,
        "the second build's"
    );
}

#[test]
fn logs_follow_a_running_job_until_it_ends() {
    let p = Project::new();
    let graph = p.path().join("databuild.toml");
    let text = std::fs::read_to_string(&graph).unwrap();
    std::fs::write(
        &graph,
        text.replace("SLOW_SECONDS = \"30\"", "SLOW_SECONDS = \"2\""),
    )
    .unwrap();
    let mut build = p.spawn(&["build", "--plain", "slow/date=2024-06-01"]);
    let running = p.wait_for_event("job_run_running");
    let run = running["job_run_id"].as_str().unwrap();
    let started = Instant::now();
    p.cmd()
        .args(["logs", "--follow", run])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "stdout   building slow/date=2024-06-01",
        ))
        .stdout(predicate::str::contains("exited with exit code 0"));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for the end"
    );
    assert_eq!(
        wait_exit(&mut build, Duration::from_secs(30)).code(),
        Some(0)
    );
}

/// A graph file with a local job and a Docker job: each run goes to its
/// executor. Needs an engine with the test image (`.ci/docker-engines`);
/// mandatory when DATABUILD_TEST_DOCKER=1.
#[test]
fn a_docker_job_in_the_graph_file_runs_in_a_container() {
    let Some(socket) = std::env::var("DATABUILD_TEST_DOCKER_ENGINES")
        .ok()
        .and_then(|s| s.split(':').next().map(PathBuf::from))
        .filter(|s| s.exists())
    else {
        assert!(
            std::env::var("DATABUILD_TEST_DOCKER").as_deref() != Ok("1"),
            "DATABUILD_TEST_DOCKER=1 but no engine in DATABUILD_TEST_DOCKER_ENGINES"
        );
        eprintln!("skipping a_docker_job_in_the_graph_file_runs_in_a_container: no test engine");
        return;
    };
    let p = Project::new();
    // One POSIX sh script speaks the protocol on the host (config) and in
    // busybox (exec).
    let script = r#"if [ "$1" = config ]; then shift; printf '{"configs":['; sep=; for r in "$@"; do printf '%s{"outputs":[{"str":"%s"}],"inputs":[{"dep_type_code":1,"partition_ref":{"str":"raw/date=%s"}}],"args":["%s"],"env":{}}' "$sep" "$r" "${r#boxed/date=}" "$r"; sep=,; done; printf ']}\n'; else echo "built $2 in container $(hostname)"; fi"#;
    let graph = p.path().join("databuild.toml");
    let mut text = std::fs::read_to_string(&graph).unwrap();
    text.push_str(&format!(
        "\n[[job]]\nlabel = \"//t:boxed\"\nentrypoint = [\"sh\", \"-c\", {script:?}, \"boxed\"]\noutputs = ['boxed/date=\\d{{4}}-\\d{{2}}-\\d{{2}}']\nexecutor = \"docker\"\nimage = \"databuild-test/busybox:latest\"\n\n[docker]\nengines = [{{ socket = {socket:?}, slots = 2 }}]\n",
    ));
    std::fs::write(&graph, text).unwrap();
    let out = p.run(&["build", "--plain", "boxed/date=2024-07-01"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let events = p.events(&[]);
    let handles: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| {
            let r = e.get("job_run_running")?;
            Some((
                e["job_run_id"].as_str()?.to_owned(),
                r["handle"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect();
    assert_eq!(handles.len(), 2, "{handles:?}");
    let boxed = events
        .iter()
        .find(|e| {
            e.get("job_run_queued").is_some()
                && e["job_run_queued"]["task"]["job"]["label"] == "//t:boxed"
        })
        .unwrap()["job_run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let boxed_handle = &handles.iter().find(|(id, _)| *id == boxed).unwrap().1;
    assert!(
        boxed_handle.contains("engine1/"),
        "a container: {boxed_handle}"
    );
    let local_handle = &handles.iter().find(|(id, _)| *id != boxed).unwrap().1;
    assert!(
        !local_handle.contains("engine1/"),
        "a process: {local_handle}"
    );
    p.cmd()
        .args(["logs", &boxed])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "built boxed/date=2024-07-01 in container",
        ));
    assert!(
        p.data("raw_date=2024-07-01").is_some(),
        "the local input was built"
    );
}

/// Settings from a file (`--settings`) and `DATABUILD_*` variables reach
/// the orchestrator and the executors; a bad one is a usage error naming
/// the setting and where it came from.
#[test]
fn settings_come_from_a_file_and_the_environment() {
    let p = Project::new();
    p.cmd()
        .env("DATABUILD_LIVENESS_TIMEOUT", "soon")
        .args(["build", "raw/date=2024-08-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "setting liveness-timeout (DATABUILD_LIVENESS_TIMEOUT)",
        ));
    std::fs::write(p.path().join("site.toml"), "keepalive-intervl = \"1s\"\n").unwrap();
    p.cmd()
        .args(["--settings", "site.toml", "build", "raw/date=2024-08-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "setting keepalive-intervl (site.toml:1)",
        ));

    // Labels from the settings file make a job that requires them
    // schedulable; DATABUILD_PARALLELISM=1 (over the graph file's 2) runs
    // one job at a time: one slot track in the trace.
    let graph = p.path().join("databuild.toml");
    let text = std::fs::read_to_string(&graph).unwrap();
    std::fs::write(
        &graph,
        text.replacen(
            "\n[[job]]\nlabel = \"//t:raw\"",
            "\n[[job]]\nrequires = { gpu = \"true\" }\nlabel = \"//t:raw\"",
            1,
        ),
    )
    .unwrap();
    std::fs::write(p.path().join("site.toml"), "[labels]\ngpu = \"true\"\n").unwrap();
    p.cmd()
        .env("DATABUILD_PARALLELISM", "1")
        .args([
            "--settings",
            "site.toml",
            "build",
            "raw/date=2024-08-01",
            "raw/date=2024-08-02",
            "raw/date=2024-08-03",
        ])
        .assert()
        .success();
    let id = p.last_request();
    p.cmd()
        .args(["trace", &id, "-o", "trace.json"])
        .assert()
        .success();
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("trace.json")).unwrap())
            .unwrap();
    let tracks: std::collections::BTreeSet<i64> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "B")
        .map(|e| e["tid"].as_i64().unwrap())
        .collect();
    assert_eq!(tracks.len(), 1, "one run at a time: {tracks:?}");
}

/// Saved plans: `analyze --save` then `build --plan` runs exactly that
/// plan with no `config` call; what was built since is not rebuilt; a plan
/// made for other job definitions, cut short or foreign is refused naming
/// the file.
#[test]
fn a_saved_plan_runs_as_saved_and_a_stale_one_is_refused() {
    let p = Project::new();
    p.cmd()
        .args(["analyze", "--save", "plan.pb", "weekly/end=2024-01-07"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "saved the plan (7 task(s)) to plan.pb",
        ));
    p.cmd()
        .args(["build", "--plan", "plan.pb"])
        .assert()
        .success()
        .stdout(predicate::str::contains("built 7 partition(s)"));
    assert!(p.data("weekly_end=2024-01-07").is_some());
    let id = p.last_request();
    let events = p.events(&["--build", &id]);
    assert_eq!(count(&events, "job_config_succeeded"), 0, "no config call");
    assert_eq!(count(&events, "job_graph_emitted"), 1);
    assert_eq!(count(&events, "job_run_succeeded"), 7);
    // Run again: everything in it is built, nothing runs.
    p.cmd()
        .args(["build", "--plan", "plan.pb"])
        .assert()
        .success()
        .stdout(predicate::str::contains("built 0 partition(s)"));

    // Another definition of a job the plan runs: refused, naming the job.
    let graph = p.path().join("databuild.toml");
    let text = std::fs::read_to_string(&graph).unwrap();
    std::fs::write(
        &graph,
        text.replacen("SLOW_SECONDS = \"0\"", "SLOW_SECONDS = \"1\"", 1),
    )
    .unwrap();
    p.cmd()
        .args(["build", "--plan", "plan.pb"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("plan.pb").and(predicate::str::contains("//t:raw")));
    std::fs::write(&graph, &text).unwrap();

    // Cut short, and foreign.
    let bytes = std::fs::read(p.path().join("plan.pb")).unwrap();
    std::fs::write(p.path().join("cut.pb"), &bytes[..bytes.len() / 2]).unwrap();
    p.cmd()
        .args(["build", "--plan", "cut.pb"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cut.pb: the plan file is cut short or damaged",
        ));
    std::fs::write(p.path().join("foreign.pb"), "{\"not\": \"a plan\"}").unwrap();
    p.cmd()
        .args(["build", "--plan", "foreign.pb"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("foreign.pb: not a saved plan"));
}

/// `databuild agent` (seed 003's node executor): runs a saved plan with
/// settings from the environment only, and streams its events (its own
/// gap-free seqs), keep-alives and a result with the combined log.
#[test]
fn the_agent_runs_a_saved_plan_and_streams_it() {
    let p = Project::new();
    p.cmd()
        .args(["analyze", "--save", "plan.pb", "weekly/end=2024-01-07"])
        .assert()
        .success();
    let out = p
        .cmd()
        .arg("agent")
        .env("DATABUILD_PLAN", p.path().join("plan.pb"))
        .env("DATABUILD_GRAPH", p.path().join("databuild.toml"))
        .env("DATABUILD_STATE_DIR", p.path().join("agent"))
        .env("DATABUILD_KEEPALIVE_INTERVAL", "100ms")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["type"], "started");
    assert_eq!(records[0]["plan_tasks"], 7);
    let result = records.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["succeeded"], true);
    assert_eq!(result["partitions"].as_array().unwrap().len(), 7);
    // A manifest per run (each names its outputs).
    let manifests = result["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 7, "{manifests:?}");
    assert!(
        manifests.iter().all(|m| m["manifest"]["outputs"]
            .as_array()
            .is_some_and(|o| !o.is_empty())),
        "{manifests:?}"
    );
    assert!(records.iter().any(|r| r["type"] == "keepalive"));
    // Every event once, in order, and the log they make is sound.
    let events: Vec<databuild_core::BuildEvent> = records
        .iter()
        .filter(|r| r["type"] == "event")
        .map(|r| serde_json::from_value(r["event"].clone()).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    databuild_core::bel::check::check_log(&events).unwrap();
    let state = databuild_core::state::BuildState::replay(&events).unwrap();
    assert!(state.requests().all(|q| q.is_terminal()));
    assert_eq!(
        count(
            &records
                .iter()
                .filter(|r| r["type"] == "event")
                .map(|r| r["event"].clone())
                .collect::<Vec<_>>(),
            "job_config_succeeded"
        ),
        0
    );
    // The combined log: the agent's entries and every task's output.
    let log = result["log"].as_array().unwrap();
    assert!(log.iter().any(|e| e["source"] == "agent"));
    for day in ["05", "06", "07"] {
        let text = format!("building raw/date=2024-01-{day}");
        assert!(
            log.iter()
                .any(|e| e["stream"] == "stdout" && e["text"] == text.as_str()),
            "{text}"
        );
    }
    let times: Vec<i64> = log.iter().map(|e| e["time_ns"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "merged by time");
    assert!(p.data("weekly_end=2024-01-07").is_some());

    // A foreign plan file: a usage error naming it.
    std::fs::write(p.path().join("foreign.pb"), "nope").unwrap();
    p.cmd()
        .arg("agent")
        .env("DATABUILD_PLAN", p.path().join("foreign.pb"))
        .env("DATABUILD_GRAPH", p.path().join("databuild.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("foreign.pb: not a saved plan"));
}

/// Two `build`s released at the same moment (a barrier: each waits in a
/// shell for a file, then execs the command): one takes the store, the
/// other hands its request over the control socket (waiting for it to
/// listen if it comes first) or takes the store once it is free; both
/// succeed. Three rounds: on a new store, then on an existing one.
#[test]
fn two_builds_started_at_the_same_moment_both_succeed() {
    let p = Project::new();
    for round in 1..=3 {
        let go = p.path().join(format!("go{round}"));
        let day = format!("daily/date=2024-04-0{round}");
        let asks = [
            vec![day.clone()],
            vec![day.clone(), format!("raw/date=2024-05-0{round}")],
        ];
        let ready: Vec<PathBuf> = (0..asks.len())
            .map(|i| p.path().join(format!("ready{round}-{i}")))
            .collect();
        let children: Vec<Child> = asks
            .iter()
            .zip(&ready)
            .map(|(refs, ready)| {
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg(r#"touch "$0"; while [ ! -e "$1" ]; do sleep 0.001; done; shift; exec "$@""#)
                    .arg(ready)
                    .arg(&go)
                    .arg(env!("CARGO_BIN_EXE_databuild"))
                    .args(["build", "--plain"])
                    .args(refs)
                    .current_dir(p.path())
                    .env_remove("DATABUILD_HOME")
                    .env_remove("DATABUILD_GRAPH")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.iter().all(|r| r.exists()) {
            assert!(Instant::now() < deadline, "the shells did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::write(&go, "").unwrap();
        let outs: Vec<Output> = children
            .into_iter()
            .map(|c| finish(c, Duration::from_secs(120)))
            .collect();
        for out in &outs {
            assert!(
                out.status.success(),
                "round {round}: {:?}\n{}\n{}",
                out.status,
                stdout(out),
                stderr(out)
            );
        }
        let through = outs
            .iter()
            .filter(|o| stderr(o).contains("run by the build already holding"))
            .count();
        eprintln!("round {round}: {through} of 2 went through the control socket");
        assert!(p.data(&day.replace('/', "_")).is_some());
    }
    p.assert_requests(6, 0);
}

/// A second `build` while the first plans (its job's `config` is held)
/// and while it runs (its run is held) is handed to the first over the
/// control socket and succeeds; so does the first.
#[test]
fn a_second_build_goes_through_the_socket_while_the_first_plans_and_runs() {
    let p = Project::new();
    p.hold_slow_job();
    let slow = "slow/date=2024-01-01";
    let (first, id) = p.start_held(slow, "build_planning", &[]);
    p.cmd()
        .args(["build", "--plain", "raw/date=2024-01-02"])
        .assert()
        .success()
        .stderr(predicate::str::contains("run by the build already holding"))
        .stdout(predicate::str::contains(": succeeded in"));
    let events = p.events(&["--build", &id]);
    assert_eq!(count(&events, "job_graph_emitted"), 0, "still planning");

    p.release("planned", slow);
    p.wait_for_event_of("job_run_running", &id);
    p.cmd()
        .args(["build", "--plain", "raw/date=2024-01-03"])
        .assert()
        .success()
        .stderr(predicate::str::contains("run by the build already holding"));
    let events = p.events(&["--build", &id]);
    assert_eq!(count(&events, "job_run_succeeded"), 0, "still running");

    p.release("ran", slow);
    succeeds("the first", first);
    assert!(p.data("raw_date=2024-01-02").is_some() && p.data("raw_date=2024-01-03").is_some());
    p.assert_requests(3, 0);
}

/// A `build` with another graph file is refused by the build holding the
/// store, naming both files (a configuration error: exit 2); a copy of the
/// holder's file under another name builds the same and is taken.
#[test]
fn a_build_of_another_graph_file_is_refused_naming_both() {
    let p = Project::new();
    p.hold_slow_job();
    let slow = "slow/date=2024-01-01";
    let (first, id) = p.start_held(slow, "build_planning", &[]);
    let text = std::fs::read_to_string(p.path().join("databuild.toml")).unwrap();
    // Another environment for the raw job: it builds something else.
    std::fs::write(
        p.path().join("other.toml"),
        text.replacen("SLOW_SECONDS = \"0\"", "SLOW_SECONDS = \"1\"", 1),
    )
    .unwrap();
    std::fs::write(p.path().join("copy.toml"), &text).unwrap();
    let dir = p.path().canonicalize().unwrap();
    let out = p.run(&["-g", "other.toml", "build", "raw/date=2024-01-02"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    for file in ["databuild.toml", "other.toml"] {
        assert!(
            said.contains(&dir.join(file).display().to_string()),
            "names {file}: {said}"
        );
    }
    assert!(said.contains("defines other jobs"), "{said}");
    assert!(p.data("raw_date=2024-01-02").is_none());

    p.cmd()
        .args(["-g", "copy.toml", "build", "--plain", "raw/date=2024-01-02"])
        .assert()
        .success()
        .stderr(predicate::str::contains("run by the build already holding"));
    assert!(p.data("raw_date=2024-01-02").is_some());

    p.release("planned", slow);
    p.release("ran", slow);
    succeeds("the first", first);
    let events = p.events(&["--build", &id]);
    assert_eq!(count(&events, "build_succeeded"), 1);
}

/// A build that arrives while the holder stops (its own request ended, the
/// socket is gone, a request submitted earlier still runs) waits and
/// takes the store once it is free; the request submitted earlier is run
/// to its end, and nothing stays open.
#[test]
fn a_build_arriving_while_the_holder_stops_waits_and_takes_the_store() {
    let p = Project::new();
    p.hold_slow_job();
    let (a, b) = ("slow/date=2024-01-01", "slow/date=2024-01-02");
    for r in [a, b] {
        p.release("planned", r);
    }
    let (first, first_id) = p.start_held(a, "job_run_running", &[]);
    let (second, _) = p.start_held(b, "job_run_running", &[&first_id]);

    // The first's own request ends: it stops listening, then waits for
    // the second's.
    p.release("ran", a);
    let socket = p.path().join(".databuild/control.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while socket.exists() {
        assert!(Instant::now() < deadline, "the holder kept its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let third = p.spawn(&["build", "--plain", "raw/date=2024-01-05"]);
    // Give it time to find the store held and the socket gone (it tries
    // again meanwhile); the outcome is the same if it is late.
    std::thread::sleep(Duration::from_millis(500));
    p.release("ran", b);

    succeeds("the first", first);
    succeeds("the second", second);
    let out = succeeds("the third", third);
    assert!(
        !stderr(&out).contains("run by the build already holding"),
        "the stopping holder took nothing more: {}",
        stderr(&out)
    );
    assert!(p.data("slow_date=2024-01-02").is_some() && p.data("raw_date=2024-01-05").is_some());
    p.assert_requests(3, 0);
}

/// A build killed (SIGKILL) leaves its request open: `status` lists it
/// (id, state, what it asked), and `cancel`, with no build holding the
/// store, takes it up, stops its run and records the cancel.
#[test]
fn status_lists_a_request_a_killed_build_left_open_and_cancel_drops_it() {
    let p = Project::new();
    p.hold_slow_job();
    let slow = "slow/date=2024-01-01";
    p.release("planned", slow);
    let (mut child, id) = p.start_held(slow, "job_run_running", &[]);
    child.kill().unwrap();
    child.wait().unwrap();

    p.cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 build request(s), 1 open"))
        .stdout(predicate::str::contains(format!(
            "open request {id} (executing): {slow}; left open by a build that stopped"
        )));
    p.cmd()
        .args(["cancel", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "build request {id} cancelled"
        )));
    p.cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 build request(s), 0 open"))
        .stdout(predicate::str::contains("open request").not());
    let events = p.events(&["--build", &id]);
    assert_eq!(count(&events, "build_canceled"), 1, "{events:?}");
    assert_eq!(count(&events, "job_run_canceled"), 1, "{events:?}");
    assert!(p.data("slow_date=2024-01-01").is_none());
}

/// A small random generator (splitmix64), seeded from the clock or from
/// `DATABUILD_TEST_SEED`, so that a failing run can be replayed.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let seed = std::env::var("DATABUILD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("seed {seed} (DATABUILD_TEST_SEED replays it)");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// `build` killed (SIGKILL) twenty times at random moments, planning
/// included, over a graph of 200 partitions whose job counts each of its
/// executions (`tests/fixtures/count.sh` appends the run's id to a file);
/// then a build run to its end. Each partition is executed once, except
/// for runs the log records Lost, and the last build succeeds.
#[test]
fn builds_killed_at_random_moments_execute_each_partition_once() {
    let p = Project::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/count.sh");
    let counted = p.path().join("count");
    let mut toml = String::from("[build]\nparallelism = 8\n");
    for (job, pattern) in [("part", r"part/n=\d{3}"), ("sum", r"sum/g=\d")] {
        toml.push_str(&format!(
            "\n[[job]]\nlabel = \"//k:{job}\"\nentrypoint = [\"sh\", {script:?}, \"{job}\"]\noutputs = ['{pattern}']\nenv = {{ COUNT = {counted:?}, CONFIG_SECONDS = \"0.2\", EXEC_SECONDS = \"0.02\" }}\n",
        ));
    }
    std::fs::write(p.path().join("databuild.toml"), toml).unwrap();
    // Ten sums, each reading nineteen parts: 200 partitions.
    let mut args = vec!["build".to_owned(), "--plain".to_owned()];
    args.extend((0..10).map(|g| format!("sum/g={g}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut random = Random::new();
    let started = Instant::now();
    for _ in 0..20 {
        let mut child = std::process::Command::cargo_bin("databuild")
            .unwrap()
            .current_dir(p.path())
            .env_remove("DATABUILD_HOME")
            .env_remove("DATABUILD_GRAPH")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(random.below(800)));
        let _ = child.kill();
        child.wait().unwrap();
    }
    let killed = started.elapsed();
    // Time enough for a last build that runs everything again per request.
    let last = p
        .cmd()
        .timeout(Duration::from_secs(300))
        .args(&args)
        .output()
        .unwrap();
    eprintln!(
        "20 kills in {:.1} s, the last build in {:.1} s",
        killed.as_secs_f64(),
        (started.elapsed() - killed).as_secs_f64()
    );

    // What ran: each execution's run id and partition.
    let text = std::fs::read_to_string(&counted).unwrap_or_default();
    let executions: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once(' ').expect("<run id> <ref>"))
        .collect();
    let events = p.events(&[]);
    let lost: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e.get("job_run_lost").is_some())
        .map(|e| e["job_run_id"].as_str().unwrap())
        .collect();
    let mut by_partition: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (run, partition) in &executions {
        by_partition.entry(partition).or_default().push(run);
    }
    let again: Vec<String> = by_partition
        .iter()
        .filter(|(_, runs)| runs.iter().filter(|r| !lost.contains(*r)).count() != 1)
        .map(|(p, runs)| format!("{p} ({} executions)", runs.len()))
        .collect();
    let mut ids: Vec<&str> = executions.iter().map(|(r, _)| *r).collect();
    ids.sort_unstable();
    let executed = ids.len();
    ids.dedup();
    eprintln!(
        "{executed} executions of 200 partitions ({} partitions executed), {} runs lost, {} run ids executed twice, {} partitions executed other than once; the last build exited {:?}",
        by_partition.len(),
        lost.len(),
        executed - ids.len(),
        again.len(),
        last.status.code()
    );
    assert!(
        last.status.success(),
        "the last build: {}\n{}",
        stdout(&last),
        stderr(&last)
    );
    assert_eq!(executed, ids.len(), "a run id executed twice");
    assert_eq!(by_partition.len(), 200, "every partition executed");
    assert!(
        again.is_empty(),
        "{} partitions executed other than once without a lost run, such as {:?}",
        again.len(),
        &again[..again.len().min(5)]
    );
}
