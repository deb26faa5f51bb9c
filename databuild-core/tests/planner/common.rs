//! Shared fixtures: jobs whose inputs come from a table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use databuild_core::{DataDep, FnJob, Graph, JobConfig, PartitionRef};

pub(crate) fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s).unwrap()
}

/// Inputs of each partition: `(input, materialize?)`.
pub(crate) type Deps = Arc<HashMap<String, Vec<(String, bool)>>>;

/// Records every config call: job label and the refs asked.
#[derive(Debug, Default, Clone)]
pub(crate) struct Calls(pub(crate) Arc<Mutex<Vec<Call>>>);

/// One config call: the job's label and the refs asked.
pub(crate) type Call = (String, Vec<String>);

impl Calls {
    pub(crate) fn for_job(&self, label: &str) -> Vec<Vec<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, refs)| refs.clone())
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A job producing `<prefix>/...` whose config returns one config per output
/// with the inputs listed in `deps`.
pub(crate) fn table_job(label: &str, prefix: &str, deps: &Deps, calls: &Calls) -> FnJob {
    let deps = Arc::clone(deps);
    let calls = calls.clone();
    let label_owned = label.to_owned();
    FnJob::builder(label)
        .pattern(format!("{prefix}/.*"))
        .config(move |outs: &[PartitionRef]| {
            calls.0.lock().unwrap().push((
                label_owned.clone(),
                outs.iter().map(|o| o.to_string()).collect(),
            ));
            outs.iter()
                .map(|o| {
                    let mut c = JobConfig::new([o.clone()]);
                    for (input, materialize) in deps.get(o.as_str()).into_iter().flatten() {
                        let p = PartitionRef::new(input)?;
                        c.inputs.push(if *materialize {
                            DataDep::materialize(p)
                        } else {
                            DataDep::query(p)
                        });
                    }
                    Ok(c)
                })
                .collect()
        })
        .build()
        .unwrap()
}

/// A graph of table jobs, one per prefix, labelled `//<prefix>`.
pub(crate) fn table_graph(prefixes: &[&str], deps: &Deps, calls: &Calls) -> Graph {
    let mut b = Graph::builder();
    for p in prefixes {
        b = b.job(table_job(&format!("//{p}"), p, deps, calls));
    }
    b.build().unwrap()
}

/// Builds a deps table from `(output, [materialized inputs])`.
pub(crate) fn deps(entries: &[(&str, &[&str])]) -> Deps {
    Arc::new(
        entries
            .iter()
            .map(|(o, ins)| {
                (
                    o.to_string(),
                    ins.iter().map(|i| (i.to_string(), true)).collect(),
                )
            })
            .collect(),
    )
}
