//! CPU and memory of a process, from `/proc/<pid>/stat`.

use nix::unistd::{SysconfVar, sysconf};

/// CPU time (ms) and resident memory (bytes) of `pid`, when readable.
pub(crate) fn sample(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&stat, ticks_per_second(), page_size())
}

fn ticks_per_second() -> u64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

fn page_size() -> u64 {
    sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(4096)
}

/// The start time of `pid` (field 22 of its `stat`, in clock ticks since
/// boot): with the pid, it names one process for good, as pids are reused.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Parses a `stat` line: fields after the command name (which may hold
/// spaces and parentheses) are split on spaces; utime and stime are fields
/// 14 and 15, rss field 24.
fn parse(stat: &str, ticks: u64, page: u64) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let cpu_ticks = field(14)? + field(15)?;
    let rss_pages = field(24)?;
    Some((cpu_ticks * 1000 / ticks, rss_pages * page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_odd_names() {
        let stat = "1234 (my (odd) job) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 10000000 300 18446744073709551615";
        assert_eq!(parse(stat, 100, 4096), Some((3000, 300 * 4096)));
        assert_eq!(parse("garbage", 100, 4096), None);
    }

    #[test]
    fn samples_this_process() {
        let (_, rss) = sample(std::process::id()).expect("own stat");
        assert!(rss > 0);
    }
}
