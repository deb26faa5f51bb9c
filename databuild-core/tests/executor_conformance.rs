//! The executor conformance suite on the in-process executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use databuild_core::testkit::executor::{self, Behaviour, ExecutorHarness};
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
