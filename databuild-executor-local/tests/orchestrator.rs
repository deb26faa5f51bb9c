//! The orchestrator running a plan on real processes.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use databuild_core::bel::{EventFilter, JsonlBel};
use databuild_core::job::ProcessLaunch;
use databuild_core::state::BuildState;
use databuild_core::{
    BelSink, DataBuildJob, Graph, JobConfig, JobConfigError, JobLabel, Launch, Orchestrator,
    PartitionPattern, PartitionRef,
};
use databuild_executor_local::{LocalConfig, LocalExecutor};

/// `<name>/<n>` needs `<input>/<n>`; a run appends its outputs to `record`.
#[derive(Debug)]
struct ShellJob {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
    input: Option<&'static str>,
    script: String,
}

#[async_trait]
impl DataBuildJob for ShellJob {
    fn label(&self) -> &JobLabel {
        &self.label
    }
    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }
    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        Ok(outputs
            .iter()
            .map(|o| {
                let mut c = JobConfig::new([o.clone()]);
                if let Some(input) = self.input {
                    let n = o.as_str().rsplit('/').next().unwrap_or_default();
                    c = c.materialize(PartitionRef::new(format!("{input}/{n}")).unwrap());
                }
                c
            })
            .collect())
    }
    fn launch(&self) -> Launch {
        Launch::Process(ProcessLaunch::new(vec![
            "sh".into(),
            "-c".into(),
            self.script.clone(),
            "sh".into(),
        ]))
    }
}

fn job(name: &str, input: Option<&'static str>, record: &Path, extra: &str) -> ShellJob {
    ShellJob {
        label: JobLabel::new(format!("//{name}")).unwrap(),
        patterns: vec![PartitionPattern::new(&format!("{name}/.*")).unwrap()],
        input,
        script: format!(
            "{extra} echo \"$DATABUILD_JOB_LABEL $DATABUILD_OUTPUTS\" >> {}",
            record.display()
        ),
    }
}

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_a_chain_of_processes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let graph = Graph::builder()
        .job(job("raw", None, &record, ""))
        .job(job("daily", Some("raw"), &record, ""))
        .build()
        .unwrap();
    let (bel, _) = JsonlBel::open_default(dir.path().join("bel.jsonl"))
        .await
        .unwrap();
    let bel: Arc<dyn BelSink> = Arc::new(bel);
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::clone(&bel))
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(
            dir.path().join("state"),
        ))))
        .state_dir(dir.path().join("state"))
        .parallelism(2)
        .build()
        .unwrap();
    let outcome = orchestrator
        .build(&[r("daily/1"), r("daily/2")])
        .await
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.built.len(), 4);

    // Each raw partition was written before the daily one that needs it.
    let lines: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for n in ["1", "2"] {
        let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
        assert!(pos(&format!("//raw [\"raw/{n}\"]")) < pos(&format!("//daily [\"daily/{n}\"]")));
    }
    // The JSONL log replays to the live state, and each run wrote its log.
    let events = bel.read(0, &EventFilter::all(), usize::MAX).await.unwrap();
    assert_eq!(BuildState::replay(&events).unwrap(), orchestrator.state());
    let logs = walk(&dir.path().join("state/logs"));
    assert_eq!(logs, 4, "one log file per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_process_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let graph = Graph::builder()
        .job(job(
            "raw",
            None,
            &record,
            "echo 'no data today' >&2; exit 4;",
        ))
        .job(job("daily", Some("raw"), &record, ""))
        .build()
        .unwrap();
    let (bel, _) = JsonlBel::open_default(dir.path().join("bel.jsonl"))
        .await
        .unwrap();
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::new(bel))
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(
            dir.path().join("state"),
        ))))
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let outcome = orchestrator.build(&[r("daily/1")]).await.unwrap();
    assert!(!outcome.succeeded());
    let raw = outcome
        .not_built
        .iter()
        .find(|n| n.partition == r("raw/1"))
        .unwrap();
    assert!(raw.reason.contains("exit code 4"), "{}", raw.reason);
    assert!(!record.exists(), "the daily job never ran");
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { 1 }
        })
        .sum()
}
