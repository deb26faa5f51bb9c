//! `databuild-runner run <run_dir>`: the per-run supervisor of the local
//! executor's runner mode (see `databuild_executor_local::runner_main`).

fn main() {
    std::process::exit(databuild_executor_local::runner_main());
}
