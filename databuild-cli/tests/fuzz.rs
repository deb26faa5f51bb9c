//! Fuzzing of the graph definition file reader (issue #7): random text and
//! valid files mutated byte by byte. It must return a graph file or a typed
//! error naming a line of the file, never panic.
//!
//! CI runs `FUZZ_CASES` (default 2,000) inputs; the long campaign is
//! `FUZZ_CASES=1000000 cargo test --release -p databuild-cli --test fuzz`.

use std::path::Path;

use databuild_cli::graph_file::{GraphFile, GraphFileError};
use proptest::prelude::*;
use proptest::test_runner::Config;

const VALID: &str = r#"
[build]
parallelism = 3

[pools]
db = 2

[docker]
engines = [{ socket = "/var/run/docker.sock", slots = 2, labels = { zone = "a" } }]
memory = "512m"

[[job]]
label = "//p:raw"
entrypoint = ["jobs/raw.sh", "--fast"]
outputs = ['raw/date=\d{4}-\d{2}-\d{2}']
pool = "db"
retry = { attempts = 3, backoff = "2s" }
timeout = "5m"
env = { A = "1" }
requires = { zone = "a" }

[[job]]
label = "//p:boxed"
entrypoint = ["sh", "-c", "true"]
outputs = ['boxed/.*']
executor = "docker"
image = "busybox:latest"
"#;

fn config() -> Config {
    Config {
        cases: std::env::var("FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000),
        ..Config::default()
    }
}

fn mutated() -> impl Strategy<Value = String> {
    let edits =
        proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 0..8);
    prop_oneof![
        1 => any::<String>(),
        4 => edits.prop_map(|edits| {
            let mut chars: Vec<char> = VALID.chars().collect();
            for (i, op, c) in edits {
                match op {
                    0 => {
                        let at = i.index(chars.len() + 1);
                        chars.insert(at, c);
                    }
                    1 if !chars.is_empty() => {
                        let at = i.index(chars.len());
                        chars.remove(at);
                    }
                    _ if !chars.is_empty() => {
                        let at = i.index(chars.len());
                        chars[at] = c;
                    }
                    _ => {}
                }
            }
            chars.into_iter().collect()
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn graph_files(text in mutated()) {
        match GraphFile::parse(Path::new("/tmp/fuzz/databuild.toml"), &text) {
            Ok(file) => {
                let _ = file.graph();
            }
            Err(GraphFileError::Invalid { line, field, .. }) => {
                prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}");
                prop_assert!(!field.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}

#[test]
fn the_valid_file_is_valid() {
    GraphFile::parse(Path::new("/tmp/fuzz/databuild.toml"), VALID)
        .unwrap()
        .graph()
        .unwrap();
}
