//! Finding the engines the tests run against.
//!
//! `DATABUILD_TEST_DOCKER_ENGINES` lists engine sockets, separated by `:`
//! (`.ci/run` starts two; `.ci/docker-engines up 2 DIR` does the same by
//! hand), else `/var/run/docker.sock`. Without a reachable engine a test
//! prints that it skips, unless `DATABUILD_TEST_DOCKER=1` (CI), where an
//! unreachable engine fails it. The image is `databuild-test/busybox:latest`
//! (static busybox, imported by `.ci/docker-engines`).

#![allow(dead_code)]

use std::path::PathBuf;

use databuild_executor_docker::{DockerConfig, DockerExecutor, EngineConfig};

pub(crate) const IMAGE: &str = "databuild-test/busybox:latest";

/// The engine sockets to test against, or `None` (after printing why) when
/// the test should skip.
pub(crate) async fn engines(test: &str, wanted: usize) -> Option<Vec<PathBuf>> {
    let listed = std::env::var("DATABUILD_TEST_DOCKER_ENGINES")
        .unwrap_or_else(|_| "/var/run/docker.sock".to_owned());
    let sockets: Vec<PathBuf> = listed
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let mandatory = std::env::var("DATABUILD_TEST_DOCKER").is_ok_and(|v| v == "1");
    let mut reachable = Vec::new();
    for s in &sockets {
        let config = DockerConfig::new(EngineConfig::unix("probe", s, 1), std::env::temp_dir());
        match DockerExecutor::connect(config).await {
            Ok(_) => reachable.push(s.clone()),
            Err(e) if mandatory => panic!("{test}: DATABUILD_TEST_DOCKER=1 but {e}"),
            Err(e) => {
                println!("skipping {test}: no Docker engine ({e})");
                return None;
            }
        }
    }
    if reachable.len() < wanted {
        assert!(
            !mandatory,
            "{test}: DATABUILD_TEST_DOCKER=1 but only {} of {wanted} engines are listed in DATABUILD_TEST_DOCKER_ENGINES",
            reachable.len()
        );
        println!(
            "skipping {test}: it needs {wanted} engines, DATABUILD_TEST_DOCKER_ENGINES lists {}",
            reachable.len()
        );
        return None;
    }
    Some(reachable)
}

/// Settings for one test: the given engines (2 slots each), the test image,
/// a store label of its own (so tests do not see each other's containers).
pub(crate) fn config(sockets: &[PathBuf], state: &std::path::Path) -> DockerConfig {
    let mut engines = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| EngineConfig::unix(format!("engine{}", i + 1), s, 2));
    let mut config = DockerConfig::new(engines.next().expect("one engine"), state)
        .default_image(IMAGE)
        .store(format!("test-{}", uuid_like()))
        .kill_grace(std::time::Duration::from_secs(2));
    for e in engines {
        config = config.engine(e);
    }
    config
}

/// A unique enough suffix.
pub(crate) fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{}", t, std::process::id())
}
