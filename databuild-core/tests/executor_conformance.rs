//! The executor conformance suite on the in-process executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use databuild_core::PartitionRef;
use databuild_core::executor::{ExitStatus, Outcome};
use databuild_core::job::ProcessLaunch;
use databuild_core::job::protocol::MissingDeps;
use databuild_core::testkit::executor::{self, Behaviour, ExecutorHarness};
use databuild_core::testkit::scripted::{Script, ScriptedExecutor};
use databuild_core::{DataBuildJob, Executor, FnJob, InProcessExecutor, Launch};

struct InProcess {
    executor: Arc<InProcessExecutor>,
    dir: tempfile::TempDir,
}

fn fn_job(f: fn() -> Result<(), String>, hang: bool) -> Launch {
    FnJob::builder("//conformance")
        .pattern(".*")
        .config(|_| Ok(vec![]))
        .exec(move |_| async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            f().map_err(Into::into)
        })
        .build()
        .expect("job")
        .launch()
}

impl ExecutorHarness for InProcess {
    fn name(&self) -> &str {
        "in-process"
    }
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::clone(&self.executor) as Arc<dyn Executor>
    }
    fn launch_for(&self, behaviour: &Behaviour) -> Option<Launch> {
        match behaviour {
            Behaviour::Succeed => Some(fn_job(|| Ok(()), false)),
            Behaviour::Fail => Some(fn_job(|| Err("failed on purpose".into()), false)),
            Behaviour::Hang => Some(fn_job(|| Ok(()), true)),
            // In-process jobs have no stdout protocol.
            _ => None,
        }
    }
    fn log_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn captures_logs(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_executor_conforms() {
    let harness = InProcess {
        executor: Arc::new(InProcessExecutor::new()),
        dir: tempfile::tempdir().unwrap(),
    };
    executor::run_all(&harness).await;
}

/// The scripted executor, with an auto script reading the behaviour from
/// the launch's argv.
struct Scripted {
    executor: Arc<ScriptedExecutor>,
    dir: tempfile::TempDir,
}

fn scripted() -> ScriptedExecutor {
    ScriptedExecutor::with_script(|spec| {
        let Launch::Process(p) = &spec.launch else {
            return Script::Manual;
        };
        match p.argv[1].as_str() {
            "succeed" => Script::succeed(),
            "fail" => Script::Exit(Outcome::task_failed(
                "failed on purpose",
                Some(ExitStatus::Code(3)),
            )),
            "hang" => Script::Hang,
            missing => Script::Exit(Outcome::MissingDeps {
                missing_deps: vec![MissingDeps {
                    impacted: spec.config.outputs.clone(),
                    missing: vec![
                        PartitionRef::new(missing.trim_start_matches("missing:")).unwrap(),
                    ],
                }],
                exit: Some(ExitStatus::Code(1)),
            }),
        }
    })
}

impl ExecutorHarness for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::clone(&self.executor) as Arc<dyn Executor>
    }
    fn launch_for(&self, behaviour: &Behaviour) -> Option<Launch> {
        let what = match behaviour {
            Behaviour::Succeed => "succeed".to_owned(),
            Behaviour::Fail => "fail".to_owned(),
            Behaviour::Hang => "hang".to_owned(),
            Behaviour::ReportMissing { missing } => format!("missing:{missing}"),
            _ => return None,
        };
        Some(Launch::Process(ProcessLaunch::new(vec![
            "scripted".into(),
            what,
        ])))
    }
    fn log_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn captures_logs(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_executor_conforms() {
    let harness = Scripted {
        executor: Arc::new(scripted()),
        dir: tempfile::tempdir().unwrap(),
    };
    executor::run_all(&harness).await;
}
