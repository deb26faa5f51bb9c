//! Plans as Mermaid and Graphviz DOT text.

use std::fmt::Write;

use super::{JobGraph, Task};

/// Outputs shown per task before the rest are counted.
const SHOWN_OUTPUTS: usize = 3;

fn task_caption(task: &Task) -> (String, Vec<String>) {
    let mut lines: Vec<String> = task
        .config
        .outputs
        .iter()
        .take(SHOWN_OUTPUTS)
        .map(|o| o.as_str().to_owned())
        .collect();
    let more = task.config.outputs.len().saturating_sub(SHOWN_OUTPUTS);
    if more > 0 {
        lines.push(format!("... and {more} more"));
    }
    (task.job.as_str().to_owned(), lines)
}

/// Escapes text for a quoted Mermaid label.
fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '|' => out.push_str("#124;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a quoted DOT string.
fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl JobGraph {
    /// The plan as a Mermaid flowchart: one box per task (its job and
    /// outputs), one arrow per partition handed from a producer to a
    /// consumer. Tasks producing requested partitions are styled `requested`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let requested: std::collections::HashSet<_> = self.requested.iter().collect();
        let order = self.topological_order();
        for id in &order {
            let task = self.task(*id);
            let (job, outputs) = task_caption(task);
            let mut label = mermaid_escape(&job);
            for o in &outputs {
                label.push_str("<br/>");
                label.push_str(&mermaid_escape(o));
            }
            let _ = writeln!(out, "    t{}[\"{}\"]", id.index(), label);
        }
        for id in &order {
            for (to, partition) in self.downstream(*id) {
                let _ = writeln!(
                    out,
                    "    t{} -->|\"{}\"| t{}",
                    id.index(),
                    mermaid_escape(partition.as_str()),
                    to.index()
                );
            }
        }
        let wanted: Vec<String> = order
            .iter()
            .filter(|id| {
                self.task(**id)
                    .config
                    .outputs
                    .iter()
                    .any(|o| requested.contains(o))
            })
            .map(|id| format!("t{}", id.index()))
            .collect();
        if !wanted.is_empty() {
            out.push_str("    classDef requested stroke-width:3px\n");
            let _ = writeln!(out, "    class {} requested", wanted.join(","));
        }
        out
    }

    /// The plan as a Graphviz DOT digraph, same shape as
    /// [`to_mermaid`](Self::to_mermaid).
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph plan {\n    rankdir=LR;\n    node [shape=box];\n");
        let requested: std::collections::HashSet<_> = self.requested.iter().collect();
        let order = self.topological_order();
        for id in &order {
            let task = self.task(*id);
            let (job, outputs) = task_caption(task);
            let mut label = dot_escape(&job);
            for o in &outputs {
                label.push_str("\\n");
                label.push_str(&dot_escape(o));
            }
            let style = if task.config.outputs.iter().any(|o| requested.contains(o)) {
                ", penwidth=3"
            } else {
                ""
            };
            let _ = writeln!(out, "    t{} [label=\"{}\"{}];", id.index(), label, style);
        }
        for id in &order {
            for (to, partition) in self.downstream(*id) {
                let _ = writeln!(
                    out,
                    "    t{} -> t{} [label=\"{}\"];",
                    id.index(),
                    to.index(),
                    dot_escape(partition.as_str())
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(mermaid_escape(r#"a"b<c>|#"#), "a#quot;b#lt;c#gt;#124;#35;");
        assert_eq!(dot_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
