//! Incremental topological order (Pearce and Kelly, "A dynamic topological
//! sort algorithm for directed acyclic graphs", 2006).
//!
//! Every task has a rank; a producer's rank is below its consumers'. Adding
//! an edge that already respects the ranks is O(1). Otherwise only the tasks
//! whose ranks lie between the two ends are searched and re-ranked, and a
//! cycle shows up as the search reaching the edge's source. The planner adds
//! new tasks with the lowest rank so far (they produce inputs of what is
//! already planned), which makes the common edge, new producer to earlier
//! consumer, free: planning stays O(partitions + edges) in practice.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

#[derive(Debug, Clone, Default)]
pub(crate) struct TopoOrder {
    rank: Vec<i64>,
    next_low: i64,
    /// Visit stamps for the searches, one per node.
    mark: Vec<u32>,
    stamp: u32,
}

impl TopoOrder {
    /// Gives a newly added node (index `rank.len()`) the lowest rank so far.
    pub(crate) fn push_node(&mut self) {
        self.rank.push(self.next_low);
        self.mark.push(0);
        self.next_low -= 1;
    }

    /// Reverses the ranks of the nodes pushed so far, for nodes that were
    /// pushed producers first.
    pub(crate) fn reverse_ranks(&mut self) {
        self.rank.reverse();
    }

    pub(crate) fn rank(&self, n: NodeIndex) -> i64 {
        self.rank[n.index()]
    }

    /// Checks that the edge `from -> to` keeps the graph acyclic and
    /// re-ranks as needed. On a cycle, returns the nodes of the path
    /// `to -> ... -> from`; the caller must not add the edge then.
    pub(crate) fn insert_edge<N, E>(
        &mut self,
        graph: &DiGraph<N, E>,
        from: NodeIndex,
        to: NodeIndex,
    ) -> Result<(), Vec<NodeIndex>> {
        if from == to {
            return Err(vec![to]);
        }
        let (lower, upper) = (self.rank(to), self.rank(from));
        if upper < lower {
            return Ok(());
        }
        self.next_stamp();
        // Forward from `to`, within ranks below `upper`; reaching `from` is a cycle.
        let mut forward = Vec::new();
        let mut parent: Vec<(NodeIndex, NodeIndex)> = Vec::new();
        let mut stack = vec![to];
        self.mark[to.index()] = self.stamp;
        while let Some(n) = stack.pop() {
            forward.push(n);
            for e in graph.edges_directed(n, Direction::Outgoing) {
                let w = e.target();
                if w == from {
                    parent.push((w, n));
                    return Err(Self::path(&parent, to, from));
                }
                if self.mark[w.index()] != self.stamp && self.rank(w) < upper {
                    self.mark[w.index()] = self.stamp;
                    parent.push((w, n));
                    stack.push(w);
                }
            }
        }
        // Backward from `from`, within ranks above `lower`.
        let mut backward = Vec::new();
        let mut stack = vec![from];
        self.mark[from.index()] = self.stamp;
        while let Some(n) = stack.pop() {
            backward.push(n);
            for e in graph.edges_directed(n, Direction::Incoming) {
                let w = e.source();
                if self.mark[w.index()] != self.stamp && self.rank(w) > lower {
                    self.mark[w.index()] = self.stamp;
                    stack.push(w);
                }
            }
        }
        // Re-rank: the backward set (ancestors of `from`) takes the lowest of
        // the freed ranks, the forward set (descendants of `to`) the rest,
        // each keeping its internal order.
        backward.sort_by_key(|n| self.rank(*n));
        forward.sort_by_key(|n| self.rank(*n));
        let mut ranks: Vec<i64> = backward
            .iter()
            .chain(&forward)
            .map(|n| self.rank(*n))
            .collect();
        ranks.sort_unstable();
        for (n, r) in backward.iter().chain(&forward).zip(ranks) {
            self.rank[n.index()] = r;
        }
        Ok(())
    }

    fn next_stamp(&mut self) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.mark.iter_mut().for_each(|m| *m = 0);
            self.stamp = 1;
        }
    }

    /// Rebuilds the path `start -> ... -> end` from the search's parent links.
    fn path(parent: &[(NodeIndex, NodeIndex)], start: NodeIndex, end: NodeIndex) -> Vec<NodeIndex> {
        let mut path = vec![end];
        let mut cur = end;
        while cur != start {
            let (_, p) = parent
                .iter()
                .rev()
                .find(|(child, _)| *child == cur)
                .copied()
                .unwrap_or((cur, start));
            path.push(p);
            cur = p;
        }
        path.reverse();
        path
    }

    /// All nodes, producers before consumers.
    pub(crate) fn sorted(&self) -> Vec<NodeIndex> {
        let mut nodes: Vec<NodeIndex> = (0..self.rank.len()).map(NodeIndex::new).collect();
        nodes.sort_unstable_by_key(|n| self.rank[n.index()]);
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(n: usize) -> (DiGraph<(), ()>, TopoOrder) {
        let mut g = DiGraph::new();
        let mut o = TopoOrder::default();
        for _ in 0..n {
            g.add_node(());
            o.push_node();
        }
        (g, o)
    }

    fn add(
        g: &mut DiGraph<(), ()>,
        o: &mut TopoOrder,
        a: usize,
        b: usize,
    ) -> Result<(), Vec<usize>> {
        let (a, b) = (NodeIndex::new(a), NodeIndex::new(b));
        o.insert_edge(g, a, b)
            .map_err(|p| p.into_iter().map(NodeIndex::index).collect::<Vec<_>>())?;
        g.add_edge(a, b, ());
        Ok(())
    }

    fn assert_valid(g: &DiGraph<(), ()>, o: &TopoOrder) {
        for e in g.edge_indices() {
            let (a, b) = g.edge_endpoints(e).unwrap();
            assert!(o.rank(a) < o.rank(b), "edge {a:?}->{b:?} violates order");
        }
    }

    #[test]
    fn keeps_order_and_finds_cycles() {
        let (mut g, mut o) = build(4);
        // Nodes are ranked 0 > 1 > 2 > 3 (later is lower): these need re-ranking.
        add(&mut g, &mut o, 0, 1).unwrap();
        add(&mut g, &mut o, 1, 2).unwrap();
        add(&mut g, &mut o, 2, 3).unwrap();
        assert_valid(&g, &o);
        assert_eq!(add(&mut g, &mut o, 3, 0), Err(vec![0, 1, 2, 3]));
        assert_eq!(add(&mut g, &mut o, 2, 2), Err(vec![2]));
        add(&mut g, &mut o, 0, 3).unwrap();
        assert_valid(&g, &o);
        let sorted: Vec<usize> = o.sorted().into_iter().map(NodeIndex::index).collect();
        assert_eq!(sorted, [0, 1, 2, 3]);
    }
}
