//! Conformance suites (stub; being written).
