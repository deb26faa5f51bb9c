//! The in-process executor: runs [`FnJob`](crate::FnJob)s as tokio tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{
    Capabilities, Executor, ExecutorError, ExecutorInfo, JobRunSpec, Outcome, RunUpdate, RunUpdates,
};
use crate::job::{FnJobContext, Launch};

/// Runs in-process jobs ([`Launch::InProcess`]) as tokio tasks.
///
/// A run that returns `Ok` succeeds; an error fails it (retryable, quoting
/// the error); a panic fails it quoting the panic message. Cancelling
/// aborts the task at its next await and confirms once it is gone.
#[derive(Debug, Clone, Default)]
pub struct InProcessExecutor {
    runs: Arc<Mutex<HashMap<String, Running>>>,
}

#[derive(Debug)]
struct Running {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl InProcessExecutor {
    /// The executor's name in events and errors.
    pub const NAME: &'static str = "in-process";

    /// A new executor.
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[async_trait]
impl Executor for InProcessExecutor {
    fn info(&self) -> ExecutorInfo {
        ExecutorInfo::new(Self::NAME, Capabilities::default().with_cancel(true))
    }

    async fn launch(&self, spec: JobRunSpec) -> Result<RunUpdates, ExecutorError> {
        let Launch::InProcess(exec) = &spec.launch else {
            return Err(ExecutorError::Incompatible {
                backend: Self::NAME.to_owned(),
                job: spec.job.to_string(),
                reason: "only in-process (FnJob) jobs run here".to_owned(),
            });
        };
        let exec = exec.clone();
        let token = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        {
            let mut runs = self.runs();
            if runs.contains_key(&spec.job_run_id) {
                return Err(ExecutorError::Launch {
                    job_run_id: spec.job_run_id,
                    reason: "this job run is already running".to_owned(),
                    retryable: false,
                });
            }
            runs.insert(
                spec.job_run_id.clone(),
                Running {
                    token: token.clone(),
                    reason: Arc::clone(&reason),
                },
            );
        }
        let mut context = FnJobContext::new(spec.job_run_id.clone(), spec.config);
        context.attempt = spec.attempt;
        context.build_request_id = spec.build_request_id;
        context.scratch_dir = spec.scratch_dir;

        let (tx, rx) = mpsc::channel(4);
        let runs = Arc::clone(&self.runs);
        let job_run_id = spec.job_run_id;
        let _ = tx
            .send(RunUpdate::Running {
                handle: format!("task:{job_run_id}"),
            })
            .await;
        tokio::spawn(async move {
            let mut task = tokio::spawn(exec.call(context));
            let outcome = tokio::select! {
                joined = &mut task => match joined {
                    Ok(Ok(())) => Outcome::Succeeded { manifest: Vec::new() },
                    Ok(Err(e)) => Outcome::task_failed(e.to_string(), None),
                    Err(e) if e.is_panic() => Outcome::task_failed(
                        format!("the job panicked: {}", panic_message(&*e.into_panic())),
                        None,
                    ),
                    Err(e) => Outcome::task_failed(format!("the job's task ended: {e}"), None),
                },
                () = token.cancelled() => {
                    task.abort();
                    // Confirm the task is gone before reporting it.
                    let _ = task.await;
                    let reason = reason.lock().unwrap_or_else(|e| e.into_inner()).take();
                    Outcome::Canceled { reason: reason.unwrap_or_default() }
                }
            };
            runs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job_run_id);
            let _ = tx.send(RunUpdate::Exited(outcome)).await;
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn cancel(&self, job_run_id: &str, reason: &str) -> Result<(), ExecutorError> {
        let runs = self.runs();
        let run = runs
            .get(job_run_id)
            .ok_or_else(|| ExecutorError::UnknownRun {
                job_run_id: job_run_id.to_owned(),
            })?;
        run.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| reason.to_owned());
        run.token.cancel();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::job::{DataBuildJob, FnJob, JobConfig};
    use crate::partition::PartitionRef;

    fn spec(id: &str, job: &FnJob) -> JobRunSpec {
        let config = JobConfig::new([PartitionRef::new("x/1").unwrap()]);
        JobRunSpec::new(
            id,
            "req",
            job.label().clone(),
            config,
            job.launch(),
            PathBuf::from("/nonexistent"),
        )
    }

    async fn run(exec: &InProcessExecutor, id: &str, job: &FnJob) -> Vec<RunUpdate> {
        exec.launch(spec(id, job)).await.unwrap().collect().await
    }

    fn job(f: impl Fn(FnJobContext) -> Result<(), String> + Send + Sync + 'static) -> FnJob {
        let f = Arc::new(f);
        FnJob::builder("//j")
            .pattern("x/.*")
            .config(|_| Ok(vec![]))
            .exec(move |ctx| {
                let f = Arc::clone(&f);
                async move { f(ctx).map_err(Into::into) }
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn success_failure_and_panic() {
        let exec = InProcessExecutor::new();
        let ok = run(
            &exec,
            "r1",
            &job(|ctx| {
                assert_eq!(ctx.job_run_id, "r1");
                assert_eq!(ctx.build_request_id, "req");
                Ok(())
            }),
        )
        .await;
        assert_eq!(
            ok[0],
            RunUpdate::Running {
                handle: "task:r1".into()
            }
        );
        assert_eq!(
            ok[1],
            RunUpdate::Exited(Outcome::Succeeded { manifest: vec![] })
        );

        let failed = run(&exec, "r2", &job(|_| Err("disk on fire".into()))).await;
        assert!(
            matches!(&failed[1], RunUpdate::Exited(Outcome::Failed { reason, retryable: true, .. }) if reason == "disk on fire"),
            "{failed:?}"
        );

        let panicked = run(&exec, "r3", &job(|_| panic!("index out of range"))).await;
        assert!(
            matches!(&panicked[1], RunUpdate::Exited(Outcome::Failed { reason, .. }) if reason.contains("panicked: index out of range")),
            "{panicked:?}"
        );
    }

    #[tokio::test]
    async fn cancel_confirms_the_task_is_gone() {
        use std::sync::atomic::{AtomicBool, Ordering};
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let exec = InProcessExecutor::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let started = Arc::new(tokio::sync::Notify::new());
        let (flag, start) = (Arc::clone(&dropped), Arc::clone(&started));
        let hang = FnJob::builder("//hang")
            .pattern("x/.*")
            .config(|_| Ok(vec![]))
            .exec(move |_| {
                let (flag, start) = (Arc::clone(&flag), Arc::clone(&start));
                async move {
                    let _guard = OnDrop(flag);
                    start.notify_one();
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            })
            .build()
            .unwrap();
        let mut updates = exec.launch(spec("r1", &hang)).await.unwrap();
        assert!(matches!(
            updates.next().await,
            Some(RunUpdate::Running { .. })
        ));
        started.notified().await;
        exec.cancel("r1", "user asked").await.unwrap();
        assert_eq!(
            updates.next().await,
            Some(RunUpdate::Exited(Outcome::Canceled {
                reason: "user asked".into()
            }))
        );
        assert!(
            dropped.load(Ordering::SeqCst),
            "the job's future was dropped before Canceled"
        );
        assert!(updates.next().await.is_none());
        let err = exec.cancel("r1", "again").await.unwrap_err();
        assert!(matches!(err, ExecutorError::UnknownRun { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn refuses_process_jobs_and_double_launches() {
        let exec = InProcessExecutor::new();
        let j = job(|_| Ok(()));
        let mut s = spec("r1", &j);
        s.launch = Launch::Process(crate::job::ProcessLaunch::new(vec!["true".into()]));
        let err = exec.launch(s).await.err();
        assert!(
            matches!(err, Some(ExecutorError::Incompatible { .. })),
            "{err:?}"
        );

        let slow = FnJob::builder("//slow")
            .pattern("x/.*")
            .config(|_| Ok(vec![]))
            .exec(|_| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .build()
            .unwrap();
        let _first = exec.launch(spec("r2", &slow)).await.unwrap();
        let again = exec.launch(spec("r2", &slow)).await;
        assert!(
            matches!(
                again,
                Err(ExecutorError::Launch {
                    retryable: false,
                    ..
                })
            ),
            "{:?}",
            again.err()
        );
        exec.cancel("r2", "done").await.unwrap();
        assert_eq!(exec.info().name, "in-process");
        assert!(matches!(
            exec.list_runs().await,
            Err(ExecutorError::Unsupported { .. })
        ));
    }

    #[test]
    fn databuild_env() {
        let j = job(|_| Ok(()));
        let mut s = spec("run-1", &j);
        s.attempt = 2;
        s.scratch_dir = Some(PathBuf::from("/scratch/req"));
        let env = s.databuild_env();
        assert_eq!(env["DATABUILD_JOB_RUN_ID"], "run-1");
        assert_eq!(env["DATABUILD_JOB_LABEL"], "//j");
        assert_eq!(env["DATABUILD_BUILD_REQUEST_ID"], "req");
        assert_eq!(env["DATABUILD_ATTEMPT"], "2");
        assert_eq!(env["DATABUILD_OUTPUTS"], r#"["x/1"]"#);
        assert_eq!(env["DATABUILD_SCRATCH_DIR"], "/scratch/req");
        // Outputs too large for the environment are left out.
        s.config.outputs = (0..10_000)
            .map(|i| PartitionRef::new(format!("x/{i:08}")).unwrap())
            .collect();
        assert!(!s.databuild_env().contains_key("DATABUILD_OUTPUTS"));
    }
}
