//! One self-contained HTML page about a build request: a summary, its plan
//! as a graph, a Gantt timeline of its job runs (one bar per run, one row
//! per slot), and its failures with the tails of their logs. No scripts
//! and no network assets: the file opens anywhere, offline, and can be
//! attached to a ticket.

use std::collections::HashMap;
use std::fmt::Write as _;

use databuild_core::TaskId;

use crate::timeline::{RunBar, RunEnd, Timeline};
use crate::trace::first_output;

/// Most plan nodes drawn; a larger plan is summarised.
const MAX_NODES: usize = 400;

/// The report of `timeline`. `log_tails` holds the last lines of the logs
/// of the runs that failed, by job run id.
pub fn html_report(timeline: &Timeline, log_tails: &HashMap<String, Vec<String>>) -> String {
    let mut h = String::with_capacity(16 << 10);
    let t = timeline;
    let duration = t.end_ns.unwrap_or(t.last_ns) - t.start_ns;
    let count = |word: &str| t.runs.iter().filter(|r| r.end.word() == word).count();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>databuild report: {id}</title>
<style>{STYLE}</style></head>
<body>
<header><h1>Build <code>{id}</code></h1>
<p class="outcome outcome-{outcome}" id="outcome">{outcome}</p>
<dl class="facts">
<dt>asked for</dt><dd>{requested}</dd>
<dt>took</dt><dd>{took}</dd>
<dt>job runs</dt><dd id="run-count">{runs}</dd>
<dt>succeeded</dt><dd>{ok}</dd><dt>failed</dt><dd>{failed}</dd>
<dt>reused</dt><dd title="already available, or built by another request">{reused}</dd>
</dl>{reason}</header>
"#,
        id = esc(&t.build_request_id),
        outcome = esc(&t.outcome),
        requested = t
            .requested
            .iter()
            .map(|r| format!("<code>{}</code>", esc(r)))
            .collect::<Vec<_>>()
            .join(" "),
        took = seconds(duration),
        runs = t.runs.len(),
        ok = count("succeeded"),
        failed = count("failed") + count("lost") + count("canceled"),
        reused = t.reused.len(),
        reason = t
            .reason
            .as_ref()
            .map(|r| format!(r#"<p class="reason">{}</p>"#, esc(r)))
            .unwrap_or_default(),
    );
    plan_section(&mut h, t);
    gantt_section(&mut h, t);
    failures_section(&mut h, t, log_tails);
    runs_table(&mut h, t);
    h.push_str("<footer>Written by <code>databuild report</code>.</footer>\n</body></html>\n");
    h
}

fn plan_section(h: &mut String, t: &Timeline) {
    h.push_str("<section id=\"plan\"><h2>Plan</h2>\n");
    // The latest run of each output says how its task is doing.
    let mut by_output: HashMap<&str, &RunBar> = HashMap::new();
    for r in &t.runs {
        for o in &r.outputs {
            by_output.insert(o.as_str(), r);
        }
    }
    let Some(plan) = &t.plan else {
        h.push_str("<p>The plan is not in the store.</p></section>\n");
        return;
    };
    if plan.is_empty() {
        h.push_str("<p>Nothing to build: everything asked for was available.</p></section>\n");
        return;
    }
    if plan.len() > MAX_NODES {
        let _ = writeln!(
            h,
            "<p>{} tasks, {} edges: too many to draw here (see the timeline).</p></section>",
            plan.len(),
            plan.edge_count()
        );
        return;
    }
    // Columns as late as possible (a task sits just left of its first
    // reader, so edges rarely cross a column), rows by output name.
    let order = plan.topological_order();
    let mut height: HashMap<TaskId, usize> = HashMap::new();
    for &id in order.iter().rev() {
        let h = plan
            .downstream(id)
            .map(|(d, _)| height.get(&d).map_or(0, |h| h + 1))
            .max()
            .unwrap_or(0);
        height.insert(id, h);
    }
    let top = height.values().max().copied().unwrap_or(0);
    let columns = top + 1;
    let mut by_column: Vec<Vec<(String, TaskId)>> = vec![Vec::new(); columns];
    for &id in &order {
        let first = plan
            .task(id)
            .config
            .outputs
            .first()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        by_column[top - height[&id]].push((first, id));
    }
    let mut rows = vec![0usize; columns];
    let mut at: HashMap<TaskId, (usize, usize)> = HashMap::new();
    for (c, tasks) in by_column.iter_mut().enumerate() {
        tasks.sort();
        for (r, (_, id)) in tasks.iter().enumerate() {
            at.insert(*id, (c, r));
        }
        rows[c] = tasks.len();
    }
    let (w, hgt, gap_x, gap_y) = (230usize, 46usize, 70usize, 16usize);
    let width = columns * (w + gap_x);
    let height = rows.iter().max().copied().unwrap_or(1) * (hgt + gap_y) + gap_y;
    let xy = |(c, r): (usize, usize)| (c * (w + gap_x) + 10, r * (hgt + gap_y) + gap_y);
    let _ = writeln!(
        h,
        r#"<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="the plan">"#
    );
    for (id, _) in plan.tasks() {
        for (up, _) in plan.upstream(id) {
            let (x1, y1) = xy(at[&up]);
            let (x2, y2) = xy(at[&id]);
            let (x1, y1, x2, y2) = (x1 + w, y1 + hgt / 2, x2, y2 + hgt / 2);
            let mid = (x1 + x2) / 2;
            let _ = writeln!(
                h,
                r#"<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"/>"#
            );
        }
    }
    for (id, task) in plan.tasks() {
        let (x, y) = xy(at[&id]);
        let outputs: Vec<String> = task
            .config
            .outputs
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        let state = outputs
            .iter()
            .find_map(|o| by_output.get(o.as_str()))
            .map_or("planned", |r| r.end.word());
        let _ = writeln!(
            h,
            r#"<g class="task task-{state}"><title>{label}&#10;{all}&#10;{state}</title><rect x="{x}" y="{y}" width="{w}" height="{hgt}" rx="6"/><text x="{tx}" y="{ty1}" class="job">{label}</text><text x="{tx}" y="{ty2}" class="out">{out}</text></g>"#,
            label = esc(task.job.as_str()),
            all = esc(&outputs.join(", ")),
            out = esc(&clip(&first_output(&outputs), 34)),
            tx = x + 10,
            ty1 = y + 19,
            ty2 = y + 36,
        );
    }
    h.push_str("</svg></div></section>\n");
}

fn gantt_section(h: &mut String, t: &Timeline) {
    h.push_str("<section id=\"timeline\"><h2>Timeline</h2>\n");
    let lanes = t.lanes();
    if lanes == 0 {
        h.push_str("<p>No job run started.</p></section>\n");
        return;
    }
    let end = t
        .runs
        .iter()
        .map(|r| t.bar_end(r))
        .chain(t.end_ns)
        .max()
        .unwrap_or(t.last_ns);
    let span = (end - t.start_ns).max(1) as f64;
    let pct = |ns: i64| ((ns - t.start_ns) as f64 / span * 100.0).clamp(0.0, 100.0);
    h.push_str("<div class=\"axis\">");
    for i in 0..=4 {
        let _ = write!(
            h,
            r#"<span style="left:{left}%">{label}</span>"#,
            left = i * 25,
            label = seconds((span * f64::from(i) / 4.0) as i64)
        );
    }
    h.push_str("</div>\n<div class=\"gantt\">\n");
    for lane in 0..lanes {
        let _ = write!(
            h,
            r#"<div class="lane"><span class="lane-name">slot {}</span><div class="lane-bars">"#,
            lane + 1
        );
        for r in t.runs.iter().filter(|r| r.lane == lane) {
            let Some(start) = r.start_ns else { continue };
            let stop = t.bar_end(r);
            let left = pct(start);
            let width = (pct(stop) - left).max(0.4);
            let _ = write!(
                h,
                r#"<div class="run-bar outcome-{word}" data-job-run-id="{id}" style="left:{left:.3}%;width:{width:.3}%" title="{label} {outs}&#10;{word} after {took}, attempt {attempt}&#10;{id}"><span>{short}</span></div>"#,
                word = r.end.word(),
                id = esc(&r.job_run_id),
                label = esc(&r.job_label),
                outs = esc(&r.outputs.join(", ")),
                took = seconds(stop - start),
                attempt = r.attempt,
                short = esc(&clip(&first_output(&r.outputs), 40)),
            );
        }
        h.push_str("</div></div>\n");
    }
    h.push_str("</div>\n<p class=\"legend\"><span class=\"key outcome-succeeded\"></span>succeeded <span class=\"key outcome-failed\"></span>failed <span class=\"key outcome-missing-deps\"></span>missing deps (ran again) <span class=\"key outcome-canceled\"></span>cancelled or lost <span class=\"key outcome-running\"></span>running</p></section>\n");
}

fn failures_section(h: &mut String, t: &Timeline, log_tails: &HashMap<String, Vec<String>>) {
    let failed: Vec<&RunBar> = t
        .runs
        .iter()
        .filter(|r| matches!(r.end, RunEnd::Failed(_) | RunEnd::Lost | RunEnd::Canceled))
        .collect();
    if failed.is_empty() {
        return;
    }
    h.push_str("<section id=\"failures\"><h2>Failures</h2>\n");
    for r in failed {
        let reason = match &r.end {
            RunEnd::Failed(reason) => reason.clone(),
            other => other.word().to_owned(),
        };
        let _ = write!(
            h,
            r#"<details class="failure" open><summary><code>{label}</code> {outs}, attempt {attempt}: {reason}</summary><p>job run <code>{id}</code>, log: <code>databuild logs {id}</code></p>"#,
            label = esc(&r.job_label),
            outs = esc(&first_output(&r.outputs)),
            attempt = r.attempt,
            reason = esc(&reason),
            id = esc(&r.job_run_id),
        );
        match log_tails.get(&r.job_run_id) {
            Some(lines) if !lines.is_empty() => {
                let _ = write!(h, "<pre>{}</pre>", esc(&lines.join("\n")));
            }
            _ => h.push_str("<p>(no log lines)</p>"),
        }
        h.push_str("</details>\n");
    }
    h.push_str("</section>\n");
}

fn runs_table(h: &mut String, t: &Timeline) {
    if t.runs.is_empty() {
        return;
    }
    h.push_str("<section id=\"runs\"><h2>Job runs</h2><table><thead><tr><th>job</th><th>outputs</th><th>attempt</th><th>started</th><th>took</th><th>outcome</th><th>job run</th></tr></thead><tbody>\n");
    for r in &t.runs {
        let start = r
            .start_ns
            .map_or("-".into(), |s| format!("+{}", seconds(s - t.start_ns)));
        let took = r.start_ns.map_or("-".into(), |s| seconds(t.bar_end(r) - s));
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"outcome-{w}\">{w}</td><td><code>{}</code></td></tr>",
            esc(&r.job_label),
            esc(&r.outputs.join(", ")),
            r.attempt,
            start,
            took,
            esc(&r.job_run_id),
            w = r.end.word(),
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn seconds(ns: i64) -> String {
    let s = ns.max(0) as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 600.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --ok: #2e9d5b; --fail: #d64545; --deps: #d59b1f; --stop: #8a8a8a; --run: #3d7bd9; --fg: #1d232b; --muted: #5d6773; --line: #d9dee4; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0 auto; max-width: 1200px; padding: 24px; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
code { font: 12px ui-monospace, "SFMono-Regular", Menlo, monospace; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; } .facts dt { color: var(--muted); } .facts dd { margin: 0; }
.outcome { display: inline-block; padding: 2px 10px; border-radius: 10px; color: #fff; font-weight: 600; margin: 0; }
p.outcome-succeeded { background: var(--ok); } p.outcome-failed { background: var(--fail); } p.outcome-canceled { background: var(--stop); } p.outcome-running { background: var(--run); }
.reason { color: var(--fail); }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
svg .edge { fill: none; stroke: #9aa5b1; stroke-width: 1.4; }
svg .task rect { fill: #f4f6f8; stroke: #9aa5b1; } svg .task text.job { font: 600 12px system-ui, sans-serif; fill: var(--fg); } svg .task text.out { font: 11px ui-monospace, monospace; fill: var(--muted); }
svg .task-succeeded rect { fill: #e3f4ea; stroke: var(--ok); } svg .task-failed rect, svg .task-lost rect { fill: #fbe6e6; stroke: var(--fail); } svg .task-running rect { fill: #e4edfb; stroke: var(--run); } svg .task-canceled rect { fill: #eee; stroke: var(--stop); } svg .task-missing-deps rect { fill: #fbf1dc; stroke: var(--deps); }
.axis { position: relative; height: 18px; margin-left: 70px; color: var(--muted); font-size: 11px; } .axis span { position: absolute; transform: translateX(-50%); white-space: nowrap; } .axis span:first-child { transform: none; } .axis span:last-child { transform: translateX(-100%); }
.gantt { border: 1px solid var(--line); border-radius: 6px; padding: 4px 0; }
.lane { display: flex; align-items: center; height: 26px; } .lane-name { width: 70px; padding-left: 8px; color: var(--muted); font-size: 11px; flex: none; }
.lane-bars { position: relative; flex: 1; height: 20px; margin-right: 8px; background: repeating-linear-gradient(90deg, transparent 0 calc(25% - 1px), var(--line) calc(25% - 1px) 25%); }
.run-bar { position: absolute; top: 0; height: 20px; border-radius: 3px; overflow: hidden; white-space: nowrap; color: #fff; font-size: 11px; line-height: 20px; padding: 0 4px; }
.outcome-succeeded.run-bar, .key.outcome-succeeded { background: var(--ok); } .outcome-failed.run-bar, .key.outcome-failed { background: var(--fail); } .outcome-missing-deps.run-bar, .key.outcome-missing-deps { background: var(--deps); } .outcome-canceled.run-bar, .outcome-lost.run-bar, .key.outcome-canceled { background: var(--stop); } .outcome-running.run-bar, .key.outcome-running { background: var(--run); }
.legend { color: var(--muted); font-size: 12px; } .key { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px; vertical-align: -1px; }
details.failure { border: 1px solid #f0c4c4; border-radius: 6px; padding: 6px 10px; margin: 8px 0; } details.failure summary { cursor: pointer; }
pre { background: #1d232b; color: #e6e9ed; padding: 10px; border-radius: 6px; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); } td.outcome-failed, td.outcome-lost { color: var(--fail); } td.outcome-succeeded { color: var(--ok); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
