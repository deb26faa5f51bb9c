//! Claims: which live request builds each partition, and who waits for it
//! (DESIGN.md "Delegation").
//!
//! The wait-or-build decision is one atomic step. A request decides, when a
//! task of its plan would be queued (or put into a buffer), under the
//! orchestrator's commit turn and this registry's lock: an output another
//! live request claimed is waited for (the request joins that claim as a
//! waiter and attaches to its run); an output built since the request began
//! to plan is taken as built; anything else is claimed, and the claim is
//! written with the run's `JobRunQueued` in the same batch. Planning's view
//! of what is being built is only a hint: it saves a `config` call, never
//! decides.
//!
//! A claim outlives the runs of its task: a retry or a rerun queues a new
//! run under the same claim, and every waiter is attached to it in the batch
//! that queues it. A claim ends with its task (built, or not), and its
//! waiters hear how through [`Claim::end`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::partition::PartitionRef;

/// How a task that other requests may wait on ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskEnd {
    /// Not yet.
    Pending,
    /// Its outputs are available.
    Built,
    /// It will not build them, and why.
    Failed(String),
}

/// Partitions live requests are building, each with its claim (the outputs
/// of one task share one claim).
pub(crate) type Building = std::collections::HashMap<PartitionRef, Arc<Claim>>;

/// One task's claim on its outputs.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The request building them (for a run adopted after a restart, the
    /// request that started it).
    pub(crate) owner: String,
    /// How the task ends.
    end: watch::Sender<TaskEnd>,
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    /// The task's queued or running run (none while in a buffer or
    /// between a failed run and its retry).
    run: Option<String>,
    /// Requests waiting for the outputs, with the outputs each waits for.
    waiters: BTreeMap<String, Vec<PartitionRef>>,
}

impl Claim {
    /// A new claim of `owner`, for its run `run` (if queued already).
    pub(crate) fn new(owner: impl Into<String>, run: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            owner: owner.into(),
            end: watch::channel(TaskEnd::Pending).0,
            live: Mutex::new(Live {
                run,
                waiters: BTreeMap::new(),
            }),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task's current run.
    pub(crate) fn run(&self) -> Option<String> {
        self.live().run.clone()
    }

    /// Sets the task's current run (a new run queued, or none).
    pub(crate) fn set_run(&self, run: Option<String>) {
        self.live().run = run;
    }

    /// Adds `request` as a waiter for `partitions`.
    pub(crate) fn join(&self, request: &str, partitions: &[PartitionRef]) {
        let mut live = self.live();
        let waits = live.waiters.entry(request.to_owned()).or_default();
        for p in partitions {
            if !waits.contains(p) {
                waits.push(p.clone());
            }
        }
    }

    /// Removes `request` from the waiters.
    pub(crate) fn leave(&self, request: &str) {
        self.live().waiters.remove(request);
    }

    /// The waiters, each with the partitions it waits for.
    pub(crate) fn waiters(&self) -> Vec<(String, Vec<PartitionRef>)> {
        self.live()
            .waiters
            .iter()
            .map(|(r, p)| (r.clone(), p.clone()))
            .collect()
    }

    /// Whether a request for which `live` holds waits for the outputs.
    pub(crate) fn has_waiter(&self, live: impl Fn(&str) -> bool) -> bool {
        self.live().waiters.keys().any(|w| live(w))
    }

    /// A receiver of the task's end.
    pub(crate) fn subscribe(&self) -> watch::Receiver<TaskEnd> {
        self.end.subscribe()
    }

    /// Tells the waiters how the task ended.
    pub(crate) fn finish(&self, end: TaskEnd) {
        self.live().run = None;
        self.end.send_replace(end);
    }
}

/// Removes `claim` from `building` for each of `outputs` it still holds.
pub(crate) fn release(building: &mut Building, claim: &Arc<Claim>, outputs: &[PartitionRef]) {
    for o in outputs {
        if building.get(o).is_some_and(|c| Arc::ptr_eq(c, claim)) {
            building.remove(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PartitionRef {
        PartitionRef::new(s).unwrap()
    }

    #[test]
    fn waiters_join_once_per_partition_and_leave() {
        let claim = Claim::new("a", Some("r1".into()));
        claim.join("b", &[p("x/1")]);
        claim.join("b", &[p("x/1"), p("x/2")]);
        claim.join("c", &[p("x/2")]);
        assert_eq!(
            claim.waiters(),
            [
                ("b".to_owned(), vec![p("x/1"), p("x/2")]),
                ("c".to_owned(), vec![p("x/2")])
            ]
        );
        assert!(claim.has_waiter(|w| w == "c"));
        claim.leave("c");
        assert!(!claim.has_waiter(|w| w == "c"));
    }

    #[test]
    fn a_claim_is_released_only_by_itself() {
        let mine = Claim::new("a", None);
        let theirs = Claim::new("b", None);
        let mut building = Building::new();
        building.insert(p("x/1"), Arc::clone(&mine));
        building.insert(p("x/2"), Arc::clone(&theirs));
        release(&mut building, &mine, &[p("x/1"), p("x/2")]);
        assert!(!building.contains_key(&p("x/1")));
        assert!(building.contains_key(&p("x/2")));
        let mut rx = theirs.subscribe();
        theirs.finish(TaskEnd::Built);
        assert_eq!(*rx.borrow_and_update(), TaskEnd::Built);
        assert_eq!(theirs.run(), None);
    }
}
