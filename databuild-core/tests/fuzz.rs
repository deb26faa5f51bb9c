//! Fuzzing of every parser of untrusted input in the core (issue #7), with
//! proptest-driven generators on the stable toolchain: partition refs and
//! patterns, job config JSON (the `config` response and the config `exec`
//! reads), marker lines (missing deps, manifests, heartbeats), and JSONL
//! log lines. Inputs are random bytes, and valid inputs mutated byte by
//! byte (inserted, deleted, replaced), so they reach deep into each parser.
//! Every parser must return a value or a typed error, never panic, and what
//! it accepts must be well formed.
//!
//! CI runs `FUZZ_CASES` (default 2,000) inputs per target; the long
//! campaign is
//!
//! ```text
//! FUZZ_CASES=1000000 cargo test --release -p databuild-core --test fuzz
//! ```
//!
//! A failing input is saved by proptest under `tests/proptest-regressions/`
//! and replayed by every later run.

use databuild_core::bel::{BuildEvent, Event, decode_line, encode_event_line};
use databuild_core::job::protocol::{
    Marker, decode_config, decode_config_response, encode_config, scan_line,
};
use databuild_core::{JobConfig, PartitionPattern, PartitionRef, proto};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config() -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Replace(prop::sample::Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
    ]
}

/// `valid` with up to eight random edits, or random bytes.
fn mutated(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        3 => (
            prop::sample::select(valid),
            proptest::collection::vec(edit(), 0..8)
        )
            .prop_map(|(mut bytes, edits)| {
                for e in edits {
                    match e {
                        Edit::Insert(i, b) => {
                            let at = i.index(bytes.len() + 1);
                            bytes.insert(at, b);
                        }
                        Edit::Delete(i) if !bytes.is_empty() => {
                            let at = i.index(bytes.len());
                            bytes.remove(at);
                        }
                        Edit::Replace(i, b) if !bytes.is_empty() => {
                            let at = i.index(bytes.len());
                            bytes[at] = b;
                        }
                        _ => {}
                    }
                }
                bytes
            }),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn valid_configs() -> Vec<Vec<u8>> {
    vec![
        br#"{"configs":[{"outputs":[{"str":"daily/date=2024-01-01"}],"inputs":[{"dep_type_code":1,"dep_type_name":"materialize","partition_ref":{"str":"raw/date=2024-01-01"}}],"args":["a"],"env":{"K":"V"}}]}"#.to_vec(),
        br#"{"configs":[{"outputs":[{"str":"a"},{"str":"b"}],"inputs":[{"dep_type_code":0,"partition_ref":{"str":"q"}}],"args":[],"env":{},"hints":{"slots":2}}]}"#.to_vec(),
        br#"{"configs":[]}"#.to_vec(),
    ]
}

fn valid_markers() -> Vec<Vec<u8>> {
    vec![
        br#"__DATABUILD_ERROR__::{"missing_deps":[{"impacted":["a/1"],"missing":["b/1",{"str":"c/1"}]}]}"#.to_vec(),
        br#"__DATABUILD_MANIFEST__::{"partitions":[{"partition":"a/1","rows":10,"bytes":20,"version":"v1","metadata":{"k":"v"}}]}"#.to_vec(),
        b"__DATABUILD_HEARTBEAT__".to_vec(),
        b"an ordinary line".to_vec(),
    ]
}

fn valid_lines() -> Vec<Vec<u8>> {
    let mut event = BuildEvent::at(
        1_700_000_000_000_000_000,
        Event::JobRunQueued(proto::JobRunQueued {
            task: Some(Box::new(proto::Task {
                job: Some(proto::JobLabel {
                    label: "//j".into(),
                }),
                config: Some(proto::JobConfig {
                    outputs: vec![proto::PartitionRef { str: "a/1".into() }],
                    ..Default::default()
                }),
                job_definition_digest: "00".into(),
            })),
            attempt: 1,
            previous_job_run_id: String::new(),
        }),
    )
    .for_request("b1")
    .for_job_run("r1");
    event.seq = 1;
    let mut other = BuildEvent::at(
        5,
        Event::BuildFailed(proto::BuildFailed {
            reason: "x \u{1F600} \"quoted\"".into(),
        }),
    );
    other.seq = 1;
    vec![
        encode_event_line(&event).unwrap(),
        encode_event_line(&other).unwrap(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn partition_refs(bytes in mutated(vec![
        b"reviews/date=2024-01-03".to_vec(),
        b"s3://bucket/clicks/region=4/date=2024-01-03".to_vec(),
        b"a/../b".to_vec(),
    ])) {
        let input = text(&bytes);
        if let Ok(r) = PartitionRef::new(&input) {
            prop_assert_eq!(r.as_str(), input.as_str());
            prop_assert!(!input.is_empty() && input.len() <= 4096);
            prop_assert!(!input.chars().any(char::is_control));
            prop_assert!(!input.split('/').any(|s| s == "." || s == ".."));
        }
    }

    #[test]
    fn partition_patterns(bytes in mutated(vec![
        br"daily/date=(?P<date>\d{4}-\d{2}-\d{2})".to_vec(),
        br"raw/.*".to_vec(),
        br"(a|b)+[x-z]{2,3}".to_vec(),
    ]), probe in "[a-z0-9/=.-]{0,24}") {
        if let Ok(p) = PartitionPattern::new(&text(&bytes))
            && let Ok(r) = PartitionRef::new(&probe)
        {
            // Matching and capturing never panic, and agree.
            prop_assert_eq!(p.is_match(&r), p.captures(&r).is_some());
        }
    }

    #[test]
    fn config_responses(bytes in mutated(valid_configs())) {
        if let Ok(configs) = decode_config_response(&bytes) {
            for c in &configs {
                // What is accepted encodes and decodes back the same.
                let again = decode_config(encode_config(c).as_bytes());
                prop_assert_eq!(again.as_ref().ok(), Some(c));
            }
        }
    }

    #[test]
    fn exec_configs(bytes in mutated(valid_configs().into_iter().map(|v| {
        let s = String::from_utf8(v).unwrap();
        s.trim_start_matches("{\"configs\":[").trim_end_matches("]}").as_bytes().to_vec()
    }).collect())) {
        let _: Result<JobConfig, _> = decode_config(&bytes);
    }

    #[test]
    fn marker_lines(bytes in mutated(valid_markers())) {
        match scan_line(&bytes) {
            Marker::MissingDeps(entries) => {
                for e in entries {
                    prop_assert!(!e.missing.is_empty() || !e.impacted.is_empty());
                }
            }
            Marker::Malformed { reason, .. } => prop_assert!(!reason.is_empty()),
            _ => {}
        }
    }

    #[test]
    fn jsonl_lines(bytes in mutated(valid_lines())) {
        if let Ok(event) = decode_line(&bytes, 1) {
            prop_assert_eq!(event.seq, 1);
            // An accepted line is what the writer would have written.
            let again = encode_event_line(&event).unwrap();
            prop_assert_eq!(decode_line(&again, 1).ok(), Some(event));
        }
    }
}

#[test]
fn valid_inputs_are_accepted() {
    for c in valid_configs() {
        decode_config_response(&c).unwrap();
    }
    for l in valid_lines() {
        decode_line(&l, 1).unwrap();
    }
    assert!(matches!(
        scan_line(&valid_markers()[0]),
        Marker::MissingDeps(_)
    ));
}
