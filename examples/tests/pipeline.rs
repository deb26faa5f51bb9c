//! The main example, end to end: real job processes on the local executor,
//! the SQLite BEL, a dependency discovered at run time, and a second run
//! that rebuilds nothing.

use std::path::PathBuf;
use std::process::Command;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::check::check_log;
use databuild_core::bel::{BelSink, EventFilter};
use databuild_core::state::BuildState;

/// `cargo test` builds the examples next to the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples").join("pipeline")
}

#[tokio::test]
async fn builds_the_week_then_nothing() {
    let home = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(example())
            .env("DATABUILD_HOME", home.path())
            .output()
            .expect("run the pipeline example");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("built 23 partitions"), "{first}");
    assert!(
        first.contains("waits   weekly/week_end=2024-01-07 for rates/year=2024"),
        "discovered at run time: {first}"
    );
    assert!(first.contains("done    rates/year=2024"), "{first}");
    assert!(
        first.contains("databuild-cli -- --home"),
        "where to look next: {first}"
    );
    assert!(first.contains(" report "), "{first}");
    assert!(
        first.contains(r#"weekly/week_end=2024-01-07: {"cost_eur":156.75,"events":627}"#),
        "{first}"
    );
    let second = run();
    assert!(second.contains("built 0 partitions"), "{second}");

    let bel = SqliteBel::open_read_only(home.path().join("bel.sqlite")).unwrap();
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    check_log(&events).unwrap();
    let state = BuildState::replay(&events).unwrap();
    assert_eq!(state.requests().count(), 2);
    let missing_deps = events
        .iter()
        .filter(|e| e.kind() == "job_run_missing_deps")
        .count();
    assert_eq!(missing_deps, 1, "the weekly job asked for the rates once");
}
