//! Properties over random DAGs of jobs: the plan holds exactly the tasks
//! needed, in a valid topological order, with one config call per job per
//! wave; every injected cycle is detected and named correctly.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use databuild_core::{PlanError, Planner};
use proptest::prelude::*;

use crate::common::*;

/// A random DAG over partitions `j<job>/<k>`: each partition depends only on
/// partitions earlier in a global order, so the graph is acyclic.
#[derive(Debug, Clone)]
struct Dag {
    jobs: usize,
    /// Partitions in the global order.
    parts: Vec<String>,
    /// `deps[i]` holds indexes (all < i) of materialized inputs, `query[i]` of query inputs.
    deps: Vec<Vec<usize>>,
    query: Vec<Vec<usize>>,
    requested: Vec<usize>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..5, 1usize..40).prop_flat_map(|(jobs, n)| {
        let parts = proptest::collection::vec(0..jobs, n);
        let deps = proptest::collection::vec(
            proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            n,
        );
        let query = proptest::collection::vec(
            proptest::collection::vec(any::<prop::sample::Index>(), 0..2),
            n,
        );
        let requested = proptest::collection::vec(any::<prop::sample::Index>(), 1..5);
        (Just(jobs), parts, deps, query, requested).prop_map(
            |(jobs, owners, deps, query, requested)| {
                let n = owners.len();
                let parts: Vec<String> = owners
                    .iter()
                    .enumerate()
                    .map(|(i, j)| format!("j{j}/{i}"))
                    .collect();
                let pick = |i: usize, v: &Vec<prop::sample::Index>| -> Vec<usize> {
                    let mut out: Vec<usize> = if i == 0 {
                        vec![]
                    } else {
                        v.iter().map(|x| x.index(i)).collect()
                    };
                    out.sort_unstable();
                    out.dedup();
                    out
                };
                let deps: Vec<Vec<usize>> = (0..n).map(|i| pick(i, &deps[i])).collect();
                let query: Vec<Vec<usize>> = (0..n).map(|i| pick(i, &query[i])).collect();
                let requested = requested.iter().map(|x| x.index(n)).collect();
                Dag {
                    jobs,
                    parts,
                    deps,
                    query,
                    requested,
                }
            },
        )
    })
}

impl Dag {
    fn table(&self, extra: Option<(usize, usize)>) -> Deps {
        let mut t: HashMap<String, Vec<(String, bool)>> = HashMap::new();
        for (i, p) in self.parts.iter().enumerate() {
            let mut ins: Vec<(String, bool)> = self.deps[i]
                .iter()
                .map(|d| (self.parts[*d].clone(), true))
                .collect();
            ins.extend(
                self.query[i]
                    .iter()
                    .map(|d| (self.parts[*d].clone(), false)),
            );
            if let Some((from, to)) = extra
                && to == i
            {
                ins.push((self.parts[from].clone(), true));
            }
            t.insert(p.clone(), ins);
        }
        Arc::new(t)
    }

    fn planner(&self, extra: Option<(usize, usize)>, calls: &Calls) -> Planner {
        let prefixes: Vec<String> = (0..self.jobs).map(|j| format!("j{j}")).collect();
        let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        Planner::new(table_graph(&refs, &self.table(extra), calls))
    }

    /// Everything the requested partitions need through materialized inputs.
    fn closure(&self) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = self.requested.clone();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(&self.deps[i]);
            }
        }
        seen
    }

    fn requested_refs(&self) -> Vec<databuild_core::PartitionRef> {
        self.requested.iter().map(|i| r(&self.parts[*i])).collect()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plan_holds_exactly_what_is_needed_in_order(dag in dag()) {
        let calls = Calls::default();
        let planner = dag.planner(None, &calls);
        let plan = block_on(planner.analyze(&dag.requested_refs())).unwrap();

        let expected: BTreeSet<String> = dag.closure().iter().map(|i| dag.parts[*i].clone()).collect();
        let planned: BTreeSet<String> = plan.tasks().map(|(_, t)| t.config.outputs[0].to_string()).collect();
        prop_assert_eq!(&planned, &expected);
        prop_assert_eq!(plan.len(), expected.len(), "one task per partition");

        // Valid topological order: every materialized input's producer comes first.
        let order = plan.topological_order();
        let mut pos = HashMap::new();
        for (k, id) in order.iter().enumerate() {
            pos.insert(plan.task(*id).config.outputs[0].to_string(), k);
        }
        let mut edges = 0;
        for i in dag.closure() {
            for d in &dag.deps[i] {
                prop_assert!(pos[&dag.parts[*d]] < pos[&dag.parts[i]]);
                edges += 1;
            }
        }
        prop_assert_eq!(plan.edge_count(), edges, "one edge per materialized input, none for query inputs");

        // Each job is configured at most once per wave, and each ref exactly once.
        let all: Vec<String> = calls.0.lock().unwrap().iter().flat_map(|(_, refs)| refs.clone()).collect();
        let unique: BTreeSet<String> = all.iter().cloned().collect();
        prop_assert_eq!(all.len(), unique.len(), "no ref is configured twice");
        prop_assert_eq!(unique, expected);
    }

    #[test]
    fn every_injected_cycle_is_detected(dag in dag(), pick in any::<prop::sample::Index>(), down in any::<prop::sample::Index>()) {
        // Close a cycle that the request reaches: a requested partition `top`
        // and `bottom`, one of the partitions it needs (or itself); make
        // `bottom` need `top`.
        let top = dag.requested[pick.index(dag.requested.len())];
        let mut below = BTreeSet::new();
        let mut stack = vec![top];
        while let Some(i) = stack.pop() {
            if below.insert(i) {
                stack.extend(&dag.deps[i]);
            }
        }
        let below: Vec<usize> = below.into_iter().collect();
        let bottom = below[down.index(below.len())];
        let table = dag.table(Some((top, bottom)));
        let planner = dag.planner(Some((top, bottom)), &Calls::default());
        let err = block_on(planner.analyze(&dag.requested_refs())).unwrap_err();
        let PlanError::Cycle { cycle, jobs } = &err else {
            return Err(TestCaseError::fail(format!("expected a cycle, got {err:?}")));
        };
        prop_assert!(cycle.len() >= 2);
        prop_assert_eq!(cycle.first(), cycle.last());
        prop_assert_eq!(jobs.len(), cycle.len() - 1);
        // Each partition of the cycle is a materialized input of the next.
        for w in cycle.windows(2) {
            let needs = &table[w[1].as_str()];
            prop_assert!(needs.iter().any(|(p, m)| *m && p == w[0].as_str()), "{} does not need {}", w[1], w[0]);
        }
        for (p, j) in cycle.iter().zip(jobs) {
            prop_assert!(p.as_str().starts_with(&j.as_str()[2..]), "{} is not produced by {}", p, j);
        }
    }
}
