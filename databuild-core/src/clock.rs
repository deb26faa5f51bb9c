//! Time and ids, injectable so tests and simulations are reproducible.
//!
//! The orchestrator and the planner take a [`Clock`] for event timestamps and
//! an [`IdGenerator`] for build request and job run ids. Timers use tokio's
//! clock, which tests pause and advance (`tokio::time::pause`), so a
//! [`ManualClock`] and paused tokio time together give fully virtual time.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Unix time for event timestamps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Unix time now, in nanoseconds.
    fn now_ns(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        crate::bel::now_ns()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicI64,
}

impl ManualClock {
    /// A clock reading `now_ns`.
    pub fn new(now_ns: i64) -> Self {
        Self {
            now_ns: AtomicI64::new(now_ns),
        }
    }

    /// Moves the clock forward by `ns`.
    pub fn advance_ns(&self, ns: i64) {
        self.now_ns.fetch_add(ns, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set_ns(&self, now_ns: i64) {
        self.now_ns.store(now_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}

/// Waits until `at` (tokio time), or forever when there is no deadline: a
/// `select!` arm for an optional timer.
pub(crate) async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The civil (proleptic Gregorian) date of a day number (days since
/// 1970-01-01), as `YYYY-MM-DD`.
pub fn civil_date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of a day number (days since 1970-01-01): H.
/// Hinnant's days-to-civil algorithm.
pub(crate) fn civil_from_days(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The UTC date of a Unix time in nanoseconds, as `YYYY-MM-DD`.
pub fn utc_date(time_ns: i64) -> String {
    civil_date(time_ns.div_euclid(86_400_000_000_000))
}

/// Makes ids for build requests and job runs.
pub trait IdGenerator: Send + Sync + fmt::Debug {
    /// A new, unique id.
    fn next_id(&self) -> String;
}

/// UUID v7 ids: unique, and ordered by creation time.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn next_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

/// `<prefix>-1`, `<prefix>-2`, …: reproducible ids for tests.
#[derive(Debug)]
pub struct SequentialIds {
    prefix: String,
    next: AtomicU64,
}

impl SequentialIds {
    /// Ids `<prefix>-1`, `<prefix>-2`, ….
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: AtomicU64::new(1),
        }
    }
}

impl IdGenerator for SequentialIds {
    fn next_id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::SeqCst)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(10);
        assert_eq!(c.now_ns(), 10);
        c.advance_ns(5);
        assert_eq!(c.now_ns(), 15);
        c.set_ns(1);
        assert_eq!(c.now_ns(), 1);
        assert!(SystemClock.now_ns() > 1_600_000_000_000_000_000);
    }

    #[test]
    fn ids() {
        let ids = SequentialIds::new("run");
        assert_eq!(
            (ids.next_id(), ids.next_id()),
            ("run-1".to_owned(), "run-2".to_owned())
        );
        let (a, b) = (UuidV7Ids.next_id(), UuidV7Ids.next_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }
}
