//! Saved plans: a [`JobGraph`] written once and run later, exactly, with no
//! `config` call (`databuild analyze --save`, `databuild build --plan`, and
//! the subplan a node agent receives). The bytes are a header line, the
//! SHA-256 of the job definitions the plan was made from, and the plan (the
//! `JobGraph` proto, binary):
//!
//! ```text
//! databuild-plan v1
//! <definitions digest, 64 hex digits>
//! <JobGraph bytes>
//! ```
//!
//! Reading checks the header (a foreign file is refused), decodes the plan
//! (one cut short is refused), compares every task's job definition with
//! the graph's (a plan made for another definition of a job is refused,
//! naming the job) and then the digest of all the graph's jobs (a job added
//! or removed since is refused too: the plan is exactly what the graph
//! meant then).

use sha2::{Digest, Sha256};

use super::JobGraph;
use crate::graph::Graph;

const HEADER: &[u8] = b"databuild-plan v1\n";

/// Why saved plan bytes cannot be run against a graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SavedPlanError {
    /// The bytes do not start with the saved-plan header.
    #[error("not a saved plan (write one with `databuild analyze --save`)")]
    Foreign,
    /// The bytes end early or do not decode.
    #[error("the plan file is cut short or damaged: {reason}")]
    Damaged {
        /// What was wrong.
        reason: String,
    },
    /// A task runs a job the graph does not have.
    #[error("the plan runs job {job}, which the graph file no longer has")]
    UnknownJob {
        /// The job.
        job: String,
    },
    /// A task was planned for another definition of its job.
    #[error(
        "the plan was made for another definition of job {job} (its entrypoint, image or environment changed): analyze again"
    )]
    DefinitionChanged {
        /// The job.
        job: String,
    },
    /// The graph's set of jobs changed since the plan was saved.
    #[error(
        "the graph file's jobs changed since the plan was saved (a job was added, removed or redefined): analyze again"
    )]
    JobsChanged,
}

/// SHA-256 (hex) of every job's label and definition digest, by label.
pub fn definitions_digest(graph: &Graph) -> String {
    let mut jobs: Vec<(String, String)> = graph
        .jobs()
        .iter()
        .map(|j| (j.label().to_string(), j.definition_digest()))
        .collect();
    jobs.sort();
    let mut h = Sha256::new();
    for (label, digest) in jobs {
        h.update(label.as_bytes());
        h.update([0]);
        h.update(digest.as_bytes());
        h.update([b'\n']);
    }
    crate::job::launch_hex(&h.finalize())
}

/// `plan`, made from `graph`'s jobs, as saved-plan bytes.
pub fn encode_saved(graph: &Graph, plan: &JobGraph) -> Vec<u8> {
    let mut bytes = HEADER.to_vec();
    bytes.extend_from_slice(definitions_digest(graph).as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&plan.encode());
    bytes
}

/// Saved-plan `bytes` without the tasks whose outputs are all `available`
/// (see [`JobGraph::without_available`]), for the same definitions: the
/// rest of a plan that was partly run (a lost node agent's subplan, run
/// again elsewhere, does not rebuild what the lost agent finished).
pub fn cut_saved(
    bytes: &[u8],
    available: impl Fn(&crate::PartitionRef) -> bool,
) -> Result<Vec<u8>, SavedPlanError> {
    let (digest, plan) = split(bytes)?;
    let plan = plan
        .without_available(available)
        .map_err(|e| SavedPlanError::Damaged {
            reason: e.to_string(),
        })?;
    let mut out = HEADER.to_vec();
    out.extend_from_slice(digest);
    out.push(b'\n');
    out.extend_from_slice(&plan.encode());
    Ok(out)
}

/// The definitions digest and the plan of saved-plan `bytes`, unchecked.
fn split(bytes: &[u8]) -> Result<(&[u8], JobGraph), SavedPlanError> {
    let rest = bytes.strip_prefix(HEADER).ok_or(SavedPlanError::Foreign)?;
    let newline = rest
        .iter()
        .position(|b| *b == b'\n')
        .filter(|n| *n == 64)
        .ok_or_else(|| SavedPlanError::Damaged {
            reason: "no definitions digest".into(),
        })?;
    let plan = JobGraph::decode(&rest[newline + 1..]).map_err(|e| SavedPlanError::Damaged {
        reason: e.to_string(),
    })?;
    Ok((&rest[..newline], plan))
}

/// The plan in saved-plan `bytes`, checked against `graph`'s jobs.
pub fn decode_saved(bytes: &[u8], graph: &Graph) -> Result<JobGraph, SavedPlanError> {
    let (digest, plan) = split(bytes)?;
    // Task by task first, to name the job whose definition changed.
    for (_, task) in plan.tasks() {
        match graph.definition_digest(task.job.as_str()) {
            None => {
                return Err(SavedPlanError::UnknownJob {
                    job: task.job.to_string(),
                });
            }
            Some(now) if now != *task.definition_digest => {
                return Err(SavedPlanError::DefinitionChanged {
                    job: task.job.to_string(),
                });
            }
            Some(_) => {}
        }
    }
    if digest != definitions_digest(graph).as_bytes() {
        return Err(SavedPlanError::JobsChanged);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FnJob, JobConfig, PartitionRef, Planner};

    fn graph(pattern: &str) -> Graph {
        let job = FnJob::builder("//a")
            .pattern(pattern)
            .config(|outs: &[PartitionRef]| {
                Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect())
            })
            .build()
            .unwrap();
        Graph::builder().job(job).build().unwrap()
    }

    #[tokio::test]
    async fn a_saved_plan_reads_back_and_refuses_what_it_was_not_made_for() {
        let g = graph(r"a/\d+");
        let plan = Planner::new(g.clone())
            .analyze(&[PartitionRef::new("a/1").unwrap()])
            .await
            .unwrap();
        let bytes = encode_saved(&g, &plan);
        assert_eq!(decode_saved(&bytes, &g).unwrap().encode(), plan.encode());

        assert_eq!(decode_saved(b"{}", &g).err(), Some(SavedPlanError::Foreign));
        for cut in [HEADER.len(), HEADER.len() + 10, bytes.len() - 3] {
            assert!(
                matches!(
                    decode_saved(&bytes[..cut], &g),
                    Err(SavedPlanError::Damaged { .. })
                ),
                "cut at {cut}"
            );
        }
        // Cut: what is available is not run again; the rest reads back.
        let two = Planner::new(g.clone())
            .analyze(&[
                PartitionRef::new("a/1").unwrap(),
                PartitionRef::new("a/2").unwrap(),
            ])
            .await
            .unwrap();
        let cut = cut_saved(&encode_saved(&g, &two), |p| p.as_str() == "a/1").unwrap();
        let rest = decode_saved(&cut, &g).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            rest.tasks().next().unwrap().1.config.outputs[0].as_str(),
            "a/2"
        );

        // A graph without the plan's job.
        let other = Graph::builder()
            .job(
                FnJob::builder("//b")
                    .pattern(r"b/\d+")
                    .config(|_: &[PartitionRef]| Ok(vec![]))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            decode_saved(&bytes, &other).err(),
            Some(SavedPlanError::UnknownJob { job: "//a".into() })
        );
    }
}
