//! Saved plans (`databuild analyze --save plan.pb`, `databuild build --plan
//! plan.pb`): a plan made once and run later, exactly, with no `config`
//! call. The file is a header line, the SHA-256 of the job definitions the
//! plan was made from, and the plan (the `JobGraph` proto, binary):
//!
//! ```text
//! databuild-plan v1
//! <definitions digest, hex>
//! <JobGraph bytes>
//! ```
//!
//! Loading checks the header (a foreign file is refused), decodes the plan
//! (a file cut short is refused), compares every task's job definition
//! with the graph file's (a plan made for another definition of a job is
//! refused, naming the job) and then the digest of all the file's jobs (a
//! job added or removed since is refused too: the plan is exactly what the
//! file meant then), each error naming the plan file.

use std::path::Path;

use databuild_core::{Graph, JobGraph};
use sha2::{Digest, Sha256};

use crate::CliError;

const HEADER: &[u8] = b"databuild-plan v1\n";

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
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `plan`, made from `graph`, to `path`.
pub fn save(path: &Path, graph: &Graph, plan: &JobGraph) -> Result<(), CliError> {
    let mut bytes = HEADER.to_vec();
    bytes.extend_from_slice(definitions_digest(graph).as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&plan.encode());
    std::fs::write(path, bytes).map_err(CliError::io(path))
}

/// Reads the plan at `path` and checks it was made for `graph`'s jobs.
pub fn load(path: &Path, graph: &Graph) -> Result<JobGraph, CliError> {
    let refuse = |reason: String| CliError::SavedPlan {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(CliError::io(path))?;
    let rest = bytes.strip_prefix(HEADER).ok_or_else(|| {
        refuse("not a saved plan (write one with `databuild analyze --save`)".into())
    })?;
    let newline = rest
        .iter()
        .position(|b| *b == b'\n')
        .filter(|n| *n == 64)
        .ok_or_else(|| {
            refuse("the plan file is cut short or damaged (no definitions digest)".into())
        })?;
    let digest = String::from_utf8_lossy(&rest[..newline]).into_owned();
    let plan = JobGraph::decode(&rest[newline + 1..])
        .map_err(|e| refuse(format!("the plan file is cut short or damaged: {e}")))?;
    // Task by task first, to name the job whose definition changed.
    for (_, task) in plan.tasks() {
        match graph.definition_digest(task.job.as_str()) {
            None => {
                return Err(refuse(format!(
                    "the plan runs job {}, which the graph file no longer has",
                    task.job
                )));
            }
            Some(now) if now != *task.definition_digest => {
                return Err(refuse(format!(
                    "the plan was made for another definition of job {} (its entrypoint, image or environment changed): analyze again",
                    task.job
                )));
            }
            Some(_) => {}
        }
    }
    if digest != definitions_digest(graph) {
        return Err(refuse(
            "the graph file's jobs changed since the plan was saved (a job was added, removed or redefined): analyze again".into(),
        ));
    }
    Ok(plan)
}
