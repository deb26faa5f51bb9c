//! Saved plans (`databuild analyze --save plan.pb`, `databuild build --plan
//! plan.pb`): a plan made once and run later, exactly, with no `config`
//! call. The format and its checks are core's
//! ([`databuild_core::plan::encode_saved`]); here they meet files, and
//! every error names the plan file.

use std::path::Path;

use databuild_core::plan::{decode_saved, encode_saved};
use databuild_core::{Graph, JobGraph};

use crate::CliError;

/// Writes `plan`, made from `graph`, to `path`.
pub fn save(path: &Path, graph: &Graph, plan: &JobGraph) -> Result<(), CliError> {
    std::fs::write(path, encode_saved(graph, plan)).map_err(CliError::io(path))
}

/// Reads the plan at `path` and checks it was made for `graph`'s jobs.
pub fn load(path: &Path, graph: &Graph) -> Result<JobGraph, CliError> {
    let bytes = std::fs::read(path).map_err(CliError::io(path))?;
    decode_saved(&bytes, graph).map_err(|e| CliError::SavedPlan {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
