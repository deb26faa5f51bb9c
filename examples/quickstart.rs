//! Quickstart: three in-process Rust jobs over daily partitions, built by an
//! orchestrator: `numbers/date=D` (1 to 10) feeds `squares/date=D`, which feeds
//! `total/date=D`. Each partition is a JSON file under `./.databuild/quickstart/`.
//!
//! Run: `cargo run -p databuild-examples --example quickstart`

use std::{fs, sync::Arc};

use databuild_core::{FnJob, Graph, JobConfig, MemoryBel, Orchestrator, PartitionRef};

const DATA: &str = ".databuild/quickstart";

/// Job `//quickstart:<name>`: `<name>/date=D` needs `<input>/date=D` and is `step` of it.
fn job(name: &'static str, input: Option<&'static str>, step: fn(Vec<u64>) -> Vec<u64>) -> FnJob {
    FnJob::builder(format!("//quickstart:{name}"))
        .pattern(format!(r"{name}/date=\d{{4}}-\d{{2}}-\d{{2}}"))
        .config(move |outputs: &[PartitionRef]| {
            let mut configs = Vec::new();
            for out in outputs {
                let mut config = JobConfig::new([out.clone()]);
                if let Some(input) = input {
                    let day = out.as_str().replace(name, input);
                    config = config.materialize(PartitionRef::new(day)?);
                }
                configs.push(config);
            }
            Ok(configs)
        })
        .exec(move |ctx| async move {
            let mut numbers = Vec::new();
            for dep in &ctx.config.inputs {
                numbers = serde_json::from_slice(&fs::read(format!("{DATA}/{}", dep.partition))?)?;
            }
            fs::create_dir_all(format!("{DATA}/{name}"))?;
            let out = format!("{DATA}/{}", ctx.config.outputs[0]);
            Ok(fs::write(out, serde_json::to_string(&step(numbers))?)?)
        })
        .build()
        .expect("a valid job definition")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let graph = Graph::builder()
        .job(job("numbers", None, |_| (1..=10).collect()))
        .job(job("squares", Some("numbers"), |v| {
            v.iter().map(|n| n * n).collect()
        }))
        .job(job("total", Some("squares"), |v| vec![v.iter().sum()]))
        .build()?;
    let bel = Arc::new(MemoryBel::new()); // the build event log, kept in memory
    let orchestrator = Orchestrator::builder().graph(graph).bel(bel).build()?;
    let wanted = PartitionRef::new("total/date=2024-01-01")?;
    let outcome = orchestrator.build(&[wanted]).await?;
    for p in &outcome.built {
        println!("built {p}: {}", fs::read_to_string(format!("{DATA}/{p}"))?);
    }
    Ok(())
}
