//! DAGs of trivial process tasks for the dispatch comparison: the same
//! shape written for ninja, for make, and as a databuild graph.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use databuild_core::job::ProcessLaunch;
use databuild_core::{
    DataBuildJob, JobConfig, JobConfigError, JobLabel, Launch, PartitionPattern, PartitionRef,
};

/// The shape of a DAG of `n` tasks numbered `0..n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Each task needs the one before.
    Chain,
    /// `n - 1` independent tasks feeding the last one.
    FanOut,
    /// Layers of [`LATTICE_WIDTH`] tasks; each needs two of the layer before.
    Lattice,
}

/// Width of a [`Shape::Lattice`] layer.
pub const LATTICE_WIDTH: usize = 100;

impl Shape {
    /// Every shape, in report order.
    pub const ALL: [Shape; 3] = [Shape::Chain, Shape::FanOut, Shape::Lattice];

    /// The shape's name.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::FanOut => "fan-out",
            Shape::Lattice => "lattice",
        }
    }

    /// The tasks task `i` of `n` needs.
    pub fn inputs(self, i: usize, n: usize) -> Vec<usize> {
        match self {
            Shape::Chain => (i > 0).then(|| i - 1).into_iter().collect(),
            Shape::FanOut if i + 1 == n => (0..n - 1).collect(),
            Shape::FanOut => Vec::new(),
            Shape::Lattice => {
                let w = LATTICE_WIDTH;
                if i < w {
                    return Vec::new();
                }
                let (layer, k) = (i / w, i % w);
                let below = (layer - 1) * w;
                let mut v = vec![below + k, below + (k + 1) % w];
                v.dedup();
                v
            }
        }
    }

    /// The task nothing else needs (the last one), which a build requests.
    pub fn sinks(self, n: usize) -> Vec<usize> {
        match self {
            Shape::Chain | Shape::FanOut => vec![n - 1],
            Shape::Lattice => (n.saturating_sub(LATTICE_WIDTH)..n).collect(),
        }
    }

    /// A `build.ninja` running `true` for every task.
    pub fn ninja(self, n: usize) -> String {
        let mut s = String::from("rule t\n  command = true\n");
        for i in 0..n {
            let _ = write!(s, "build t{i}: t");
            for d in self.inputs(i, n) {
                let _ = write!(s, " t{d}");
            }
            s.push('\n');
        }
        s
    }

    /// A Makefile running `true` for every task (phony targets).
    pub fn makefile(self, n: usize) -> String {
        let mut s = String::from("all:");
        for i in self.sinks(n) {
            let _ = write!(s, " t{i}");
        }
        s.push_str("\n.PHONY: all");
        for i in 0..n {
            let _ = write!(s, " t{i}");
        }
        s.push('\n');
        for i in 0..n {
            let _ = write!(s, "t{i}:");
            for d in self.inputs(i, n) {
                let _ = write!(s, " t{d}");
            }
            s.push_str("\n\ttrue\n");
        }
        s
    }
}

/// The DAG as one databuild job: partition `t/<i>` reads the partitions of
/// [`Shape::inputs`], and its run is the process `true`.
#[derive(Debug)]
pub struct DagJob {
    label: JobLabel,
    patterns: Vec<PartitionPattern>,
    shape: Shape,
    n: usize,
    argv: Arc<[String]>,
}

impl DagJob {
    /// The job for `n` tasks of `shape`, each running `argv`.
    pub fn new(shape: Shape, n: usize, argv: Vec<String>) -> Self {
        Self {
            label: JobLabel::new("//dag").unwrap_or_else(|_| unreachable!()),
            patterns: vec![PartitionPattern::new(r"t/\d+").unwrap_or_else(|_| unreachable!())],
            shape,
            n,
            argv: argv.into(),
        }
    }

    /// The ref of task `i`.
    pub fn partition(i: usize) -> PartitionRef {
        PartitionRef::from_fmt(format_args!("t/{i}")).unwrap_or_else(|_| unreachable!())
    }

    /// The refs a build of the whole DAG requests.
    pub fn requested(&self) -> Vec<PartitionRef> {
        self.shape
            .sinks(self.n)
            .into_iter()
            .map(Self::partition)
            .collect()
    }
}

#[async_trait]
impl DataBuildJob for DagJob {
    fn label(&self) -> &JobLabel {
        &self.label
    }

    fn patterns(&self) -> &[PartitionPattern] {
        &self.patterns
    }

    async fn config(&self, outputs: &[PartitionRef]) -> Result<Vec<JobConfig>, JobConfigError> {
        Ok(outputs
            .iter()
            .map(|o| {
                let i: usize = o.as_str()[2..].parse().unwrap_or_default();
                let mut c = JobConfig::new([o.clone()]);
                for d in self.shape.inputs(i, self.n) {
                    c = c.materialize(Self::partition(d));
                }
                c
            })
            .collect())
    }

    fn launch(&self) -> Launch {
        Launch::Process(ProcessLaunch::new(self.argv.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_stated_edges() {
        assert_eq!(Shape::Chain.inputs(0, 5), Vec::<usize>::new());
        assert_eq!(Shape::Chain.inputs(3, 5), [2]);
        assert_eq!(Shape::FanOut.inputs(4, 5), [0, 1, 2, 3]);
        assert!(Shape::FanOut.inputs(2, 5).is_empty());
        assert_eq!(Shape::Lattice.inputs(150, 1000), [50, 51]);
        assert_eq!(Shape::Lattice.inputs(199, 1000), [99, 0]);
        let ninja = Shape::Chain.ninja(3);
        assert!(ninja.ends_with("build t2: t t1\n"), "{ninja}");
        let make = Shape::FanOut.makefile(3);
        assert!(make.contains("t2: t0 t1\n\ttrue\n"), "{make}");
        assert_eq!(Shape::Lattice.sinks(1000).len(), LATTICE_WIDTH);
    }
}
