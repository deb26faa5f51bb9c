//! The `docker_pipeline` example: the main example's graph in containers
//! on a real engine (mandatory when DATABUILD_TEST_DOCKER=1, as in CI),
//! and its explanation when no engine answers.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` builds the examples next to the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples").join("docker_pipeline")
}

#[test]
fn without_an_engine_it_says_what_it_needs() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(example())
        .env("DATABUILD_HOME", home.path())
        .env(
            "DATABUILD_DOCKER_SOCKET",
            home.path().join("no-engine.sock"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a Docker engine"), "{err}");
    assert!(err.contains("no-engine.sock"), "{err}");
    assert!(
        err.contains("--example pipeline"),
        "the way without Docker: {err}"
    );
}

#[test]
fn builds_the_week_in_containers() {
    let socket = std::env::var("DATABUILD_TEST_DOCKER_ENGINES")
        .ok()
        .and_then(|s| s.split(':').next().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
    let mandatory = std::env::var("DATABUILD_TEST_DOCKER").is_ok_and(|v| v == "1");
    if !socket.exists() {
        assert!(
            !mandatory,
            "DATABUILD_TEST_DOCKER=1 but no engine at {}",
            socket.display()
        );
        println!(
            "skipping builds_the_week_in_containers: no Docker engine at {}",
            socket.display()
        );
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(example())
            .env("DATABUILD_HOME", home.path())
            .env("DATABUILD_DOCKER_SOCKET", &socket)
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
    assert!(
        first.contains("built 23 partitions in containers"),
        "{first}"
    );
    assert!(
        first.contains(r#"weekly/week_end=2024-01-07: {"cost_eur":156.75,"events":627}"#),
        "the same result as on the local executor: {first}"
    );
    let second = run();
    assert!(second.contains("built 0 partitions"), "{second}");
}
