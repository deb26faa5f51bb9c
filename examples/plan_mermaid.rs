//! Defines three jobs over daily partitions and prints the plan for a
//! requested partition as Mermaid (paste it into any Mermaid viewer).
//!
//! Run: `cargo run -p databuild-examples --example plan_mermaid [-- <ref>...]`
//! (default ref: `reports/weekly/week_end=2024-01-07`).

use databuild_core::{PartitionRef, Planner};
use databuild_examples::reviews::graph;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut requested = std::env::args()
        .skip(1)
        .map(PartitionRef::new)
        .collect::<Result<Vec<_>, _>>()?;
    if requested.is_empty() {
        requested.push(PartitionRef::new("reports/weekly/week_end=2024-01-07")?);
    }
    let planner = Planner::new(graph()?);
    let plan = planner.analyze(&requested).await?;
    eprintln!("{} tasks, {} edges", plan.len(), plan.edge_count());
    print!("{}", plan.to_mermaid());
    Ok(())
}
