//! Planner tests: plan shape, errors, cycles, exact BEL sequences, and
//! properties over random DAGs.

mod common;
mod cycles;
mod errors;
mod events;
mod props;
mod shape;
