//! Defines three jobs and prints the plan for a requested partition as Mermaid.
fn main() {}
