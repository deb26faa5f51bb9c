//! The `node_agent` example: the pipeline with one agent per date, spread
//! over the engines of `DATABUILD_TEST_DOCKER_ENGINES` (mandatory when
//! DATABUILD_TEST_DOCKER=1, as in CI), run twice; and its explanation when
//! no engine answers.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` builds the examples next to the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples").join("node_agent")
}

#[test]
fn without_an_engine_it_says_what_it_needs() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(example())
        .env("DATABUILD_HOME", home.path())
        .env(
            "DATABUILD_DOCKER_SOCKETS",
            home.path().join("no-engine.sock"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs Docker engines"), "{err}");
    assert!(err.contains("no-engine.sock"), "{err}");
    assert!(err.contains("--example pipeline"), "{err}");
}

#[test]
fn each_date_runs_in_an_agent_on_both_engines() {
    let sockets: Vec<PathBuf> = std::env::var("DATABUILD_TEST_DOCKER_ENGINES")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .filter(|s| s.exists())
        .collect();
    let mandatory = std::env::var("DATABUILD_TEST_DOCKER").is_ok_and(|v| v == "1");
    if sockets.len() < 2 {
        assert!(
            !mandatory,
            "DATABUILD_TEST_DOCKER=1 but DATABUILD_TEST_DOCKER_ENGINES lists fewer than two engines"
        );
        println!("skipping each_date_runs_in_an_agent_on_both_engines: it needs two engines");
        return;
    }
    let sockets = std::env::join_paths(&sockets[..2]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(example())
            .env("DATABUILD_HOME", home.path())
            .env("DATABUILD_DOCKER_SOCKETS", &sockets)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = run();
    // Seven dates, one agent each, three tasks each, on both engines.
    let agents: Vec<&str> = first.lines().filter(|l| l.starts_with("agent ")).collect();
    assert_eq!(agents.len(), 7, "{first}");
    assert!(
        agents.iter().all(|l| l.ends_with(": 3 task(s) run there")),
        "{first}"
    );
    assert!(
        agents.iter().any(|l| l.contains("docker:engine1/")),
        "{first}"
    );
    assert!(
        agents.iter().any(|l| l.contains("docker:engine2/")),
        "{first}"
    );
    assert!(first.contains("built 9 partitions"), "{first}");
    assert!(first.contains("weekly/week_end=2024-01-07: {"), "{first}");
    // Everything is there: nothing runs again.
    let second = run();
    assert!(second.contains("built 0 partitions"), "{second}");
    assert!(!second.lines().any(|l| l.starts_with("agent ")), "{second}");
}
