//! `databuild analyze <ref>...`: the plan, without running it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use databuild_core::{AnalyzeRequest, Planner};

use crate::graph_file::GraphFile;
use crate::home::Home;
use crate::{CliError, PlanFormat};

pub(super) async fn run(
    home: &Home,
    graph: &Path,
    refs: &[String],
    format: PlanFormat,
    force: bool,
    save: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let wanted = super::parse_refs(refs)?;
    let file = GraphFile::read(graph)?;
    let state = super::load_state(home).await?;
    let graph = Arc::new(file.graph()?);
    let planner = Planner::new(Arc::clone(&graph)).with_availability(Arc::new(state));
    let plan = planner
        .analyze_request(&AnalyzeRequest::new(wanted).force(force))
        .await?;
    if let Some(path) = save {
        crate::saved_plan::save(path, &graph, &plan)?;
        eprintln!(
            "saved the plan ({} task(s)) to {}; run it with `databuild build --plan {}`",
            plan.len(),
            path.display(),
            path.display()
        );
    }
    match format {
        PlanFormat::Mermaid => print!("{}", plan.to_mermaid()),
        PlanFormat::Dot => print!("{}", plan.to_dot()),
        PlanFormat::Json => {
            let json =
                serde_json::to_string_pretty(&plan.to_proto()).map_err(|e| CliError::Io {
                    path: "stdout".into(),
                    source: std::io::Error::other(e),
                })?;
            println!("{json}");
        }
        PlanFormat::Text => {
            println!(
                "{} task(s), {} edge(s); {} partition(s) already available, {} being built",
                plan.len(),
                plan.edge_count(),
                plan.available().len(),
                plan.in_progress().len()
            );
            for (i, id) in plan.topological_order().into_iter().enumerate() {
                let task = plan.task(id);
                let outputs: Vec<&str> = task.config.outputs.iter().map(|p| p.as_str()).collect();
                println!("{:>4}. {}  {}", i + 1, task.job, outputs.join(" "));
                let inputs: Vec<&str> = task
                    .config
                    .inputs
                    .iter()
                    .map(|d| d.partition.as_str())
                    .collect();
                if !inputs.is_empty() {
                    println!("        reads {}", inputs.join(" "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
