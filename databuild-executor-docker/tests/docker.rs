//! The Docker executor against real engines: the cases the conformance
//! suite does not cover.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use databuild_core::executor::{ExecutorError, JobRunSpec, Outcome, RunUpdate, RunUpdates};
use databuild_core::job::ProcessLaunch;
use databuild_core::{Executor, JobConfig, JobLabel, Launch, PartitionRef};
use databuild_executor_docker::{ConnectError, DockerConfig, DockerExecutor, EngineConfig};
use futures::StreamExt;

fn spec(dir: &std::path::Path, script: &str, image: Option<&str>) -> JobRunSpec {
    let id = format!("t-{}", common::uuid_like());
    let mut launch = ProcessLaunch::new(vec!["sh".into(), "-c".into(), script.into(), "sh".into()]);
    if let Some(image) = image {
        launch = launch.image(image);
    }
    JobRunSpec::new(
        id.clone(),
        "docker-tests",
        JobLabel::new("//docker").unwrap(),
        JobConfig::new([PartitionRef::new(format!("docker/{id}")).unwrap()]),
        Launch::Process(launch),
        dir.join(format!("logs/{id}.jsonl")),
    )
}

async fn collect(updates: RunUpdates) -> Vec<RunUpdate> {
    tokio::time::timeout(Duration::from_secs(120), updates.collect())
        .await
        .expect("the run ended within 120 s")
}

fn outcome(updates: &[RunUpdate]) -> &Outcome {
    match updates.last() {
        Some(RunUpdate::Exited(o)) => o,
        other => panic!("the last update is {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_engine_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig::new(
        EngineConfig::unix("gone", dir.path().join("no-engine.sock"), 1),
        dir.path(),
    );
    let err = DockerExecutor::connect(config).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::Unreachable { engine, .. } if engine == "gone"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-engine.sock"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_launch_error_naming_it() {
    let Some(engines) = common::engines("a_missing_image_is_a_launch_error_naming_it", 1).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let executor = DockerExecutor::connect(common::config(&engines[..1], dir.path()))
        .await
        .unwrap();
    let err = executor
        .launch(spec(dir.path(), "true", Some("databuild-test/absent:1")))
        .await
        .err()
        .expect("the launch fails");
    match &err {
        ExecutorError::Launch {
            reason, retryable, ..
        } => {
            assert!(reason.contains("databuild-test/absent:1"), "{reason}");
            assert!(!retryable, "a missing image does not come back by itself");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_kill_is_reported_as_out_of_memory() {
    let Some(engines) =
        common::engines("a_memory_limit_kill_is_reported_as_out_of_memory", 1).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&engines[..1], dir.path()).memory_bytes(16 << 20);
    let executor = DockerExecutor::connect(config).await.unwrap();
    // 64 MiB in one shell variable, under a 16 MiB limit.
    let updates = executor
        .launch(spec(
            dir.path(),
            "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}",
            None,
        ))
        .await
        .unwrap();
    let updates = collect(updates).await;
    match outcome(&updates) {
        Outcome::Failed {
            reason, retryable, ..
        } => {
            assert!(reason.contains("out of memory"), "{reason}");
            assert!(!retryable);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_outlive_their_executor_and_are_reattached() {
    let Some(engines) =
        common::engines("containers_outlive_their_executor_and_are_reattached", 1).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&engines[..1], dir.path());
    let first = DockerExecutor::connect(config.clone()).await.unwrap();
    // One run still going when its orchestrator is gone, one that ends
    // while nobody watches.
    let running = spec(dir.path(), "echo started; exec sleep 300", None);
    let ended = spec(dir.path(), "echo done; exit 0", None);
    let (running_id, ended_id) = (running.job_run_id.clone(), ended.job_run_id.clone());
    let mut a = first.launch(running).await.unwrap();
    assert!(matches!(a.next().await, Some(RunUpdate::Running { .. })));
    let b = first.launch(ended).await.unwrap();
    collect(b).await;
    drop(a);
    drop(first);

    let second = DockerExecutor::connect(config).await.unwrap();
    let listed: BTreeSet<(String, bool)> = second
        .list_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.job_run_id, r.running))
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([(running_id.clone(), true), (ended_id.clone(), false)])
    );
    // The one that ended: its outcome and its output, collected.
    let done = collect(second.reattach(&ended_id).await.unwrap()).await;
    assert!(
        matches!(outcome(&done), Outcome::Succeeded { .. }),
        "{done:?}"
    );
    // The one still running: followed, and stopped on request.
    let mut updates = second.reattach(&running_id).await.unwrap();
    assert!(matches!(
        updates.next().await,
        Some(RunUpdate::Running { .. })
    ));
    second.cancel(&running_id, "enough").await.unwrap();
    let rest = collect(updates).await;
    assert_eq!(
        outcome(&rest),
        &Outcome::Canceled {
            reason: "enough".into()
        }
    );
    // Recorded: the containers go.
    second.forget(&running_id).await.unwrap();
    second.forget(&ended_id).await.unwrap();
    assert!(second.list_runs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_spread_over_engines_by_free_slots() {
    let Some(engines) = common::engines("runs_are_spread_over_engines_by_free_slots", 2).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let executor = Arc::new(
        DockerExecutor::connect(common::config(&engines[..2], dir.path()))
            .await
            .unwrap(),
    );
    let mut handles = Vec::new();
    let mut streams = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let s = spec(dir.path(), "exec sleep 300", None);
        ids.push(s.job_run_id.clone());
        let mut updates = executor.launch(s).await.unwrap();
        match updates.next().await {
            Some(RunUpdate::Running { handle }) => handles.push(handle),
            other => panic!("{other:?}"),
        }
        streams.push(updates);
    }
    let on = |engine: &str| handles.iter().filter(|h| h.contains(engine)).count();
    assert_eq!((on("engine1/"), on("engine2/")), (2, 2), "{handles:?}");
    let taken: Vec<usize> = executor.engines().iter().map(|e| e.1).collect();
    assert_eq!(taken, [2, 2]);
    for id in &ids {
        executor.cancel(id, "done").await.unwrap();
    }
    for s in streams {
        let rest = collect(s).await;
        assert!(matches!(outcome(&rest), Outcome::Canceled { .. }));
    }
    for id in &ids {
        executor.forget(id).await.unwrap();
    }
    let taken: Vec<usize> = executor.engines().iter().map(|e| e.1).collect();
    assert_eq!(taken, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_containers_are_kept_when_asked() {
    let Some(engines) = common::engines("failed_containers_are_kept_when_asked", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let executor =
        DockerExecutor::connect(common::config(&engines[..1], dir.path()).keep_failed(true))
            .await
            .unwrap();
    let failing = spec(dir.path(), "echo broken; exit 2", None);
    let passing = spec(dir.path(), "true", None);
    let (failing_id, passing_id) = (failing.job_run_id.clone(), passing.job_run_id.clone());
    for s in [failing, passing] {
        let id = s.job_run_id.clone();
        collect(executor.launch(s).await.unwrap()).await;
        executor.forget(&id).await.unwrap();
    }
    // The failed run's container stays for debugging; the other goes.
    let listed: Vec<String> = executor
        .list_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.job_run_id)
        .collect();
    assert!(listed.contains(&failing_id), "{listed:?}");
    assert!(!listed.contains(&passing_id), "{listed:?}");
    // Forgotten again (as by hand), it goes too; the removal runs in the
    // background, so give it a moment before the runtime ends.
    executor.forget(&failing_id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// SECURITY.md: containers are not privileged, have no network but
/// loopback by default, run as the configured user, and with
/// `read_only_rootfs` cannot write their root file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_confined() {
    let Some(engines) = common::engines("containers_run_confined", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&engines[..1], dir.path()).user("1234:1234");
    config.read_only_rootfs = true;
    let executor = DockerExecutor::connect(config).await.unwrap();
    let run = spec(
        dir.path(),
        "echo uid=$(id -u); echo nets=$(ls /sys/class/net | tr '\\n' ' '); \
         touch /probe 2>/dev/null && echo wrote-root || echo root-read-only",
        None,
    );
    let log = run.log_path.clone();
    let updates = collect(executor.launch(run).await.unwrap()).await;
    assert!(
        matches!(outcome(&updates), Outcome::Succeeded { .. }),
        "{updates:?}"
    );
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("\"uid=1234\""), "{text}");
    assert!(
        text.contains("\"nets=lo\""),
        "no network but loopback: {text}"
    );
    assert!(text.contains("\"root-read-only\""), "{text}");

    // Even as root in the image, a job is not privileged: it lacks
    // CAP_SYS_ADMIN (bit 21 of its effective capabilities).
    let executor = DockerExecutor::connect(common::config(&engines[..1], dir.path()))
        .await
        .unwrap();
    let run = spec(
        dir.path(),
        "cap=$(grep CapEff /proc/self/status | cut -f2); echo sys_admin=$(( (0x$cap >> 21) & 1 ))",
        None,
    );
    let log = run.log_path.clone();
    let updates = collect(executor.launch(run).await.unwrap()).await;
    assert!(
        matches!(outcome(&updates), Outcome::Succeeded { .. }),
        "{updates:?}"
    );
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("\"sys_admin=0\""), "{text}");
}

/// SECURITY.md: a mount outside the allow-list, through `..` or a
/// symbolic link out of an allowed root, is refused when the executor is
/// configured.
#[tokio::test]
async fn mounts_outside_the_allow_list_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir_all(allowed.join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("secret")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), allowed.join("link")).unwrap();
    for host in [
        dir.path().join("secret"),
        allowed.join("../secret"),
        allowed.join("link"),
        std::path::PathBuf::from("relative/path"),
    ] {
        let config = DockerConfig::new(
            EngineConfig::unix("any", dir.path().join("no-engine.sock"), 1),
            dir.path(),
        )
        .allow_mounts_under(&allowed)
        .mount(&host, "/data", true);
        let Err(err) = DockerExecutor::connect(config).await else {
            panic!("{}: the mount was accepted", host.display());
        };
        assert!(
            matches!(
                &err,
                ConnectError::InvalidSetting {
                    setting: "mounts",
                    ..
                }
            ),
            "{}: {err:?}",
            host.display()
        );
        assert!(err.to_string().contains("allowed mount root"), "{err}");
    }
    // Inside the root it passes the check (and then fails on the engine).
    let config = DockerConfig::new(
        EngineConfig::unix("any", dir.path().join("no-engine.sock"), 1),
        dir.path(),
    )
    .allow_mounts_under(&allowed)
    .mount(allowed.join("data"), "/data", true);
    let Err(err) = DockerExecutor::connect(config).await else {
        panic!("no engine listens there");
    };
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
}
