//! Graph generators shared by the benchmarks.
