//! `databuild`: see the `databuild_cli` crate docs, or `databuild --help`.

fn main() -> std::process::ExitCode {
    databuild_cli::main()
}
