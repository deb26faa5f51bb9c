//! Slots: the global parallelism limit and named pools, shared by every
//! build request of one orchestrator.
//!
//! Every run takes one unit of the global limit; a run whose job names a
//! pool also takes its `slots` from that pool. Releasing bumps a watch
//! counter, which wakes requests that were waiting for room (a channel, not
//! a poll).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// A pool's index: 0 is "no named pool".
pub(crate) type PoolId = usize;

/// What one run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) pool: PoolId,
    pub(crate) slots: u32,
}

#[derive(Debug)]
struct Usage {
    running: usize,
    /// Slots in use per pool (index 0 unused).
    used: Vec<u32>,
}

#[derive(Debug)]
pub(crate) struct Slots {
    parallelism: usize,
    names: Vec<String>,
    capacity: Vec<u32>,
    usage: Mutex<Usage>,
    released: watch::Sender<u64>,
}

impl Slots {
    pub(crate) fn new(parallelism: usize, pools: &BTreeMap<String, u32>) -> Self {
        let mut names = vec![String::new()];
        let mut capacity = vec![u32::MAX];
        for (name, slots) in pools {
            names.push(name.clone());
            capacity.push(*slots);
        }
        let n = names.len();
        Self {
            parallelism,
            names,
            capacity,
            usage: Mutex::new(Usage {
                running: 0,
                used: vec![0; n],
            }),
            released: watch::channel(0).0,
        }
    }

    /// The pool a job's hints name, or why none fits.
    pub(crate) fn resolve(&self, pool: Option<&str>, slots: u32) -> Result<Grant, String> {
        let Some(name) = pool else {
            return Ok(Grant { pool: 0, slots });
        };
        let Some(id) = self.names.iter().skip(1).position(|n| n == name) else {
            let known: Vec<&str> = self.names.iter().skip(1).map(String::as_str).collect();
            return Err(if known.is_empty() {
                format!("the job asks for pool {name:?}, and no pool is configured")
            } else {
                format!(
                    "the job asks for pool {name:?}; the configured pools are {}",
                    known.join(", ")
                )
            });
        };
        let id = id + 1;
        if slots > self.capacity[id] {
            return Err(format!(
                "the job needs {slots} slots of pool {name:?}, which has {}",
                self.capacity[id]
            ));
        }
        Ok(Grant { pool: id, slots })
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pools, counting "no named pool" as one.
    pub(crate) fn pools(&self) -> usize {
        self.names.len()
    }

    /// Whether the global limit leaves room for one more run.
    pub(crate) fn any_room(&self) -> bool {
        self.usage().running < self.parallelism
    }

    /// Takes `grant`'s slots if they are free.
    pub(crate) fn try_acquire(&self, grant: Grant) -> bool {
        let mut usage = self.usage();
        if usage.running >= self.parallelism {
            return false;
        }
        if grant.pool != 0 {
            let used = usage.used[grant.pool];
            if u64::from(used) + u64::from(grant.slots) > u64::from(self.capacity[grant.pool]) {
                return false;
            }
            usage.used[grant.pool] = used + grant.slots;
        }
        usage.running += 1;
        true
    }

    /// Takes `grant`'s slots whatever is free: a run re-attached after a
    /// restart is running already.
    pub(crate) fn force_acquire(&self, grant: Grant) {
        let mut usage = self.usage();
        if grant.pool != 0 {
            usage.used[grant.pool] += grant.slots;
        }
        usage.running += 1;
    }

    /// Gives `grant`'s slots back and wakes waiting requests.
    pub(crate) fn release(&self, grant: Grant) {
        {
            let mut usage = self.usage();
            usage.running = usage.running.saturating_sub(1);
            if grant.pool != 0 {
                usage.used[grant.pool] = usage.used[grant.pool].saturating_sub(grant.slots);
            }
        }
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever slots are released.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.released.subscribe()
    }

    /// Runs holding slots, and slots in use per named pool (for tests and
    /// the simulation's invariants).
    pub(crate) fn in_use(&self) -> (usize, BTreeMap<String, u32>) {
        let usage = self.usage();
        let pools = self
            .names
            .iter()
            .zip(&usage.used)
            .skip(1)
            .map(|(n, u)| (n.clone(), *u))
            .collect();
        (usage.running, pools)
    }
}
