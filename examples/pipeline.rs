//! The main example: a daily-partitioned pipeline built end to end on the
//! embedded defaults, the local executor and the SQLite BEL.
//!
//! Four jobs in the DataBuild job protocol (this very program, run as
//! `pipeline job <name> config|exec ...`):
//!
//! - `raw/date=D`: the day's events, generated deterministically;
//! - `clean/date=D`: the day's valid events (bad rows dropped);
//! - `daily/date=D`: event counts per kind for the day;
//! - `weekly/week_end=D`: the seven days' counts summed, in the currency of
//!   `rates/year=Y`, an input the weekly job only discovers when it runs
//!   (it prints the `__DATABUILD_ERROR__` missing-deps line, databuild builds
//!   the rates, then runs the weekly job again).
//!
//! Run: `cargo run -p databuild-examples --example pipeline [-- <ref>...]`
//! (default `weekly/week_end=2024-01-07`). Everything goes under
//! `./.databuild` (or `$DATABUILD_HOME`): the data, the BEL
//! (`bel.sqlite`) and each run's log. Run it twice: the second time,
//! nothing is rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::{BuildEvent, Event};
use databuild_core::partition::TypedPartition;
use databuild_core::{BelSink, BuildOptions, EventFilter, Orchestrator, PartitionRef};
use databuild_examples::pipeline::{Clean, Daily, Rates, Raw, Weekly};
use databuild_executor_local::{LocalConfig, LocalExecutor};
use futures::StreamExt;
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("job") {
        return job(&args[1..]);
    }
    let home =
        PathBuf::from(std::env::var("DATABUILD_HOME").unwrap_or_else(|_| ".databuild".into()));
    let mut requested = args
        .iter()
        .map(PartitionRef::new)
        .collect::<Result<Vec<_>, _>>()?;
    if requested.is_empty() {
        requested.push(PartitionRef::new("weekly/week_end=2024-01-07")?);
    }
    let exe = std::env::current_exe()?;
    let graph = databuild_examples::pipeline::graph(&exe, &home.join("data"), None)?;
    let bel = Arc::new(SqliteBel::open(home.join("bel.sqlite"))?);
    let orchestrator = Orchestrator::builder()
        .graph(graph)
        .bel(Arc::clone(&bel) as Arc<dyn BelSink>)
        .executor(Arc::new(LocalExecutor::new(LocalConfig::new(&home))))
        .state_dir(&home)
        .build()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let outcome = rt.block_on(async {
        // Progress: the request's runs as they start and end, read from the
        // BEL like any other client would.
        let head = bel.head().await?;
        let handle = orchestrator.start(&requested, BuildOptions::default());
        println!("build request {}", handle.build_request_id());
        let mut events = bel.subscribe(head, EventFilter::build_request(handle.build_request_id()));
        let progress = tokio::spawn(async move {
            let mut names = HashMap::new();
            while let Some(Ok(e)) = events.next().await {
                if let Some(line) = progress_line(&e, &mut names) {
                    println!("  {line}");
                }
            }
        });
        let outcome = handle.outcome().await;
        progress.abort();
        Ok::<_, Error>(outcome?)
    })?;
    println!(
        "built {} partitions, {} already available, in {:.1} s",
        outcome.built.len(),
        outcome.skipped.len(),
        started.elapsed().as_secs_f64()
    );
    for n in &outcome.not_built {
        println!("  FAILED  {}: {}", n.partition, n.reason);
    }
    for r in &requested {
        let file = home.join("data").join(r.as_str()).join("part.json");
        if let Ok(text) = std::fs::read_to_string(&file) {
            println!("{r}: {text}");
        }
    }
    println!(
        "the build's events are in {}, each run's log under {}",
        home.join("bel.sqlite").display(),
        home.join("logs").display()
    );
    // Where to look next: the `databuild` command reads the same home.
    let id = &outcome.build_request_id;
    let cli = "cargo run -q -p databuild-cli --";
    let home_flag = format!("--home {}", home.display());
    println!("next (the databuild CLI; `{cli}` from this repository):");
    println!("  {cli} {home_flag} explain {}", requested[0]);
    println!("  {cli} {home_flag} report {id} -o report.html");
    println!("  {cli} {home_flag} trace {id} -o trace.json");
    println!("  {cli} {home_flag} events --build {id}");
    if outcome.succeeded() {
        Ok(())
    } else {
        Err("the build failed".into())
    }
}

/// One line per run that starts or ends, naming what it builds (`names`
/// keeps each run's outputs from its `JobRunQueued` event).
fn progress_line(e: &BuildEvent, names: &mut HashMap<String, String>) -> Option<String> {
    let name =
        |names: &HashMap<String, String>| names.get(&e.job_run_id).cloned().unwrap_or_default();
    match e.event.as_ref()? {
        Event::JobRunQueued(q) => {
            let outputs = q.task.as_ref()?.config.as_ref()?.outputs.iter();
            let outputs: Vec<&str> = outputs.map(|p| p.str.as_str()).collect();
            names.insert(e.job_run_id.clone(), outputs.join(" "));
            None
        }
        Event::JobRunRunning(_) => Some(format!("running {}", name(names))),
        Event::JobRunSucceeded(_) => Some(format!("done    {}", name(names))),
        Event::JobRunMissingDeps(m) => {
            let missing: Vec<&str> = m
                .missing_deps
                .iter()
                .flat_map(|d| &d.missing)
                .map(|p| p.str.as_str())
                .collect();
            Some(format!(
                "waits   {} for {} (found at run time)",
                name(names),
                missing.join(" ")
            ))
        }
        Event::JobRunFailed(f) => Some(format!("failed  {}: {}", name(names), f.reason)),
        _ => None,
    }
}

/// The job side of the protocol: `job <name> config <ref>...` or
/// `job <name> exec`.
fn job(args: &[String]) -> Result<(), Error> {
    let (name, verb) = (args[0].as_str(), args.get(1).map(String::as_str));
    match verb {
        Some("config") => {
            let configs: Vec<Value> = args[2..]
                .iter()
                .map(|r| config(name, r))
                .collect::<Result<_, _>>()?;
            println!("{}", json!({ "configs": configs }));
            Ok(())
        }
        Some("exec") => exec(name),
        _ => Err(format!("usage: job {name} config|exec").into()),
    }
}

/// One output's config: its inputs, built from typed partitions.
fn config(name: &str, out: &str) -> Result<Value, Error> {
    let out = PartitionRef::new(out)?;
    let inputs: Vec<PartitionRef> = match name {
        "clean" => vec![
            Raw {
                date: Clean::from_ref(&out)?.date,
            }
            .to_ref()?,
        ],
        "daily" => vec![
            Clean {
                date: Daily::from_ref(&out)?.date,
            }
            .to_ref()?,
        ],
        "weekly" => {
            let end = Weekly::from_ref(&out)?.week_end;
            (0..7)
                .rev()
                .map(|back| {
                    Daily {
                        date: end.add_days(-back),
                    }
                    .to_ref()
                })
                .collect::<Result<_, _>>()?
        }
        _ => Vec::new(),
    };
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|i| json!({"dep_type_code": 1, "dep_type_name": "materialize", "partition_ref": {"str": i.as_str()}}))
        .collect();
    Ok(json!({"outputs": [{"str": out.as_str()}], "inputs": inputs, "args": [], "env": {}}))
}

fn exec(name: &str) -> Result<(), Error> {
    let data = PathBuf::from(std::env::var("PIPELINE_DATA")?);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(std::env::var(
        "DATABUILD_CONFIG_FILE",
    )?)?)?;
    let out = config["outputs"][0]["str"]
        .as_str()
        .ok_or("no output")?
        .to_owned();
    let inputs: Vec<String> = config["inputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["partition_ref"]["str"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let read = |r: &str| -> Result<Value, Error> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            data.join(r).join("part.json"),
        )?)?)
    };
    let out_ref = PartitionRef::new(&out)?;
    let result: Value = match name {
        "raw" => json!(generate(&Raw::from_ref(&out_ref)?.date.to_string())),
        "clean" => json!(
            read(&inputs[0])?
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["user"].as_u64().is_some() && e["kind"].as_str() != Some(""))
                .cloned()
                .collect::<Vec<_>>()
        ),
        "daily" => {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for e in read(&inputs[0])?.as_array().into_iter().flatten() {
                *counts
                    .entry(e["kind"].as_str().unwrap_or("?").into())
                    .or_default() += 1;
            }
            json!(counts)
        }
        "rates" => json!({"currency": "EUR", "per_event": 0.25}),
        "weekly" => {
            // Discovered at run time: the year's rates.
            let year = Weekly::from_ref(&out_ref)?.week_end.year();
            let rates = Rates { year }.to_ref()?.as_str().to_owned();
            if !inputs.contains(&rates) {
                println!(
                    "__DATABUILD_ERROR__::{}",
                    json!({"missing_deps": [{"impacted": [out], "missing": [rates]}]})
                );
                return Ok(());
            }
            let per_event = read(&rates)?["per_event"].as_f64().unwrap_or(0.0);
            let mut total = 0u64;
            for d in inputs.iter().filter(|i| i.starts_with("daily/")) {
                total += read(d)?
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>());
            }
            json!({"events": total, "cost_eur": total as f64 * per_event})
        }
        other => return Err(format!("unknown job {other}").into()),
    };
    write_atomically(&data.join(&out), &result)?;
    eprintln!("{name}: wrote {out}");
    Ok(())
}

/// A day's raw events: deterministic in the date, a few of them bad.
fn generate(date: &str) -> Vec<Value> {
    let mut seed = date
        .bytes()
        .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let kinds = ["view", "click", "purchase"];
    (0..50 + seed % 50)
        .map(|i| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if seed % 23 == 0 {
                json!({"id": i, "user": null, "kind": ""})
            } else {
                json!({"id": i, "user": seed % 1000, "kind": kinds[(seed >> 33) as usize % 3]})
            }
        })
        .collect()
}

/// A partition is written aside, then renamed into place: a rerun after a
/// lost run never leaves half a partition.
fn write_atomically(dir: &Path, value: &Value) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".part.json.{}", std::process::id()));
    std::fs::write(&tmp, value.to_string())?;
    std::fs::rename(&tmp, dir.join("part.json"))?;
    Ok(())
}
