//! Synthetic graphs shared by the benchmarks.
//!
//! [`daily_graph`] is the planner benchmark's shape: ten jobs over daily
//! partitions (`j<k>/date=YYYY-MM-DD`), job `j0` reading nothing and every
//! other output needing one to three upstream partitions (the same day of the
//! job below, and for some days the day before or the same day two jobs
//! below). [`chain_graph`] is a self-dependent chain: each day needs the day
//! before, one wave per day.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use databuild_core::{FnJob, Graph, JobConfig, PartitionRef};

/// Number of jobs in [`daily_graph`].
pub const JOBS: usize = 10;

/// Counts the `config` calls a graph's jobs receive, and the time spent in
/// them (the jobs' own code, as opposed to the planner's).
#[derive(Debug, Default)]
pub struct ConfigCalls {
    calls: AtomicU64,
    nanos: AtomicU64,
}

impl ConfigCalls {
    /// Calls so far.
    pub fn get(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Time spent inside `config` so far.
    pub fn time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        out
    }
}

/// Civil date of a day number (days since 1970-01-01), as `YYYY-MM-DD`.
pub use databuild_core::clock::civil_date as date;

pub mod dag;

/// Day number of a `YYYY-MM-DD` date (inverse of [`date`]).
pub fn day(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (y, m, d) = (num(&date[0..4])?, num(&date[5..7])?, num(&date[8..10])?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The day number of a ref `<prefix>YYYY-MM-DD`.
fn day_of(partition: &PartitionRef, prefix: &str) -> Result<i64, String> {
    partition
        .as_str()
        .strip_prefix(prefix)
        .and_then(day)
        .ok_or_else(|| format!("bad ref {partition}"))
}

/// First day of the synthetic calendars (2000-01-01).
pub const FIRST_DAY: i64 = 10_957;

/// A calendar of date strings, so a job formats each ref in one step
/// (`PartitionRef::from_fmt`), as a job with a date library's cached
/// formatting would.
#[derive(Debug)]
pub struct Calendar {
    first_day: i64,
    dates: Vec<String>,
}

impl Calendar {
    /// `days` days from [`FIRST_DAY`].
    pub fn new(days: usize) -> Self {
        Self {
            first_day: FIRST_DAY,
            dates: (0..days as i64).map(|d| date(FIRST_DAY + d)).collect(),
        }
    }

    /// The date string of a day number inside the calendar.
    pub fn date(&self, day: i64) -> &str {
        &self.dates[(day - self.first_day) as usize]
    }
}

fn partition(calendar: &Calendar, job: usize, day: i64) -> PartitionRef {
    PartitionRef::from_fmt(format_args!("j{job}/date={}", calendar.date(day))).expect("valid ref")
}

/// Adds the upstream partitions of `j<job>` on `day` to `config`: one to
/// three of them.
fn add_upstream(config: &mut JobConfig, calendar: &Calendar, job: usize, day: i64) {
    if job == 0 {
        return;
    }
    let materialize = databuild_core::DataDep::materialize;
    config.inputs.reserve_exact(3);
    config
        .inputs
        .push(materialize(partition(calendar, job - 1, day)));
    let h = (job as i64)
        .wrapping_mul(31)
        .wrapping_add(day.wrapping_mul(17));
    if h % 3 != 0 && day > calendar.first_day {
        config
            .inputs
            .push(materialize(partition(calendar, job - 1, day - 1)));
    }
    if h % 2 == 0 && job > 1 {
        config
            .inputs
            .push(materialize(partition(calendar, job - 2, day)));
    }
}

/// The ten-job daily graph over `days` days, and the request that plans all
/// `JOBS * days` partitions (the top job's partition of every day).
pub fn daily_graph(days: usize, calls: &Arc<ConfigCalls>) -> (Graph, Vec<PartitionRef>) {
    let calendar = Arc::new(Calendar::new(days));
    let mut builder = Graph::builder();
    for job in 0..JOBS {
        let calls = Arc::clone(calls);
        let calendar = Arc::clone(&calendar);
        let prefix = format!("j{job}/date=");
        builder = builder.job(
            FnJob::builder(format!("//bench:j{job}"))
                .pattern(format!(r"j{job}/date=(?P<date>\d{{4}}-\d{{2}}-\d{{2}})"))
                .config(move |outputs: &[PartitionRef]| {
                    calls.record(|| {
                        outputs
                            .iter()
                            .map(|o| {
                                let d = day_of(o, &prefix)?;
                                let mut config = JobConfig::new([o.clone()]);
                                add_upstream(&mut config, &calendar, job, d);
                                Ok(config)
                            })
                            .collect()
                    })
                })
                .build()
                .expect("valid job"),
        );
    }
    let graph = builder.build().expect("valid graph");
    let requested = (0..days as i64)
        .map(|d| partition(&calendar, JOBS - 1, FIRST_DAY + d))
        .collect();
    (graph, requested)
}

/// A one-job graph where each day needs the day before, and the request for
/// its last day: `days` waves of one `config` call each.
pub fn chain_graph(days: usize, calls: &Arc<ConfigCalls>) -> (Graph, Vec<PartitionRef>) {
    let calls = Arc::clone(calls);
    let job = FnJob::builder("//bench:chain")
        .pattern(r"chain/date=(?P<date>\d{4}-\d{2}-\d{2})")
        .config(move |outputs: &[PartitionRef]| {
            calls.record(|| {
                outputs
                    .iter()
                    .map(|o| {
                        let d = day_of(o, "chain/date=")?;
                        let mut config = JobConfig::new([o.clone()]);
                        if d > FIRST_DAY {
                            config = config.materialize(PartitionRef::from_string(format!(
                                "chain/date={}",
                                date(d - 1)
                            ))?);
                        }
                        Ok(config)
                    })
                    .collect()
            })
        })
        .build()
        .expect("valid job");
    let graph = Graph::builder().job(job).build().expect("valid graph");
    let last = FIRST_DAY + days as i64 - 1;
    let requested =
        vec![PartitionRef::from_string(format!("chain/date={}", date(last))).expect("ref")];
    (graph, requested)
}

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(FIRST_DAY), "2000-01-01");
        assert_eq!(date(FIRST_DAY + 59), "2000-02-29");
        for d in (FIRST_DAY - 1000..FIRST_DAY + 400_000).step_by(997) {
            assert_eq!(day(&date(d)), Some(d));
        }
        assert_eq!(day("2000-1-01"), None);
    }
}
