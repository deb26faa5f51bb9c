//! The DataBuild job protocol, as external jobs speak it.
//!
//! - **config**: `<entrypoint> config <ref>...` prints one JSON object:
//!   `{"configs":[{"outputs":[{"str":"…"}],"inputs":[{"dep_type_code":1,"dep_type_name":"materialize","partition_ref":{"str":"…"}}],"args":["…"],"env":{"K":"V"}}]}`.
//!   `dep_type_code` is required (0 = query, 1 = materialize);
//!   `dep_type_name`, when present, must agree. A ref may also be written as
//!   a plain string. Unknown fields are ignored. [`decode_config_response`].
//! - **exec**: `<entrypoint> exec <args>...` receives one config object (the
//!   same shape) on stdin and in `DATABUILD_CONFIG_FILE`.
//!   [`encode_config`].
//! - **marker lines** on a run's stdout, recognised by [`scan_line`] and kept
//!   out of its output log:
//!   - `__DATABUILD_ERROR__::{"missing_deps":[{"impacted":[…],"missing":[…]}]}`:
//!     the run needs partitions that are not there;
//!   - `__DATABUILD_HEARTBEAT__`: a sign of life;
//!   - `__DATABUILD_MANIFEST__::{"partitions":[{"partition":"…","row_count":1,"bytes":2,"version":"v","extra":{"k":"v"}}]}`:
//!     optional metadata about what the run wrote (every field but
//!     `partition` optional).
//!
//! Decoding uses dedicated serde structs, not the generated proto types, so
//! that job output is checked field by field and quoted in errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{DataDep, DepType, JobConfig};
use crate::partition::{PartitionRef, PartitionRefError, quote_bytes};

/// Prefix of the missing-deps marker line.
pub const ERROR_MARKER: &str = "__DATABUILD_ERROR__::";
/// The heartbeat marker line.
pub const HEARTBEAT_MARKER: &str = "__DATABUILD_HEARTBEAT__";
/// Prefix of the manifest marker line.
pub const MANIFEST_MARKER: &str = "__DATABUILD_MANIFEST__::";

/// Characters of bad input quoted in errors.
const QUOTE: usize = 200;

/// Why job output is not valid protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Not the expected JSON.
    #[error("{reason}")]
    Json {
        /// What the JSON decoder said.
        reason: String,
    },
    /// A `dep_type_code` or `dep_type_name` is wrong.
    #[error("{reason}")]
    DepType {
        /// What is wrong.
        reason: String,
    },
    /// A partition ref is invalid.
    #[error(transparent)]
    InvalidRef(#[from] PartitionRefError),
}

/// A partition ref as jobs write it: `{"str": "…"}` or a plain string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireRef {
    Object { str: String },
    Plain(String),
}

impl WireRef {
    fn into_ref(self) -> Result<PartitionRef, PartitionRefError> {
        match self {
            WireRef::Object { str } | WireRef::Plain(str) => PartitionRef::from_string(str),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireDep {
    dep_type_code: i64,
    #[serde(default)]
    dep_type_name: Option<String>,
    partition_ref: WireRef,
}

#[derive(Debug, Deserialize)]
struct WireConfig {
    #[serde(default)]
    outputs: Vec<WireRef>,
    #[serde(default)]
    inputs: Vec<WireDep>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    configs: Vec<WireConfig>,
}

fn json_error(e: &serde_json::Error) -> ProtocolError {
    ProtocolError::Json {
        reason: e.to_string(),
    }
}

/// Decodes a config call's stdout into configurations.
pub fn decode_config_response(bytes: &[u8]) -> Result<Vec<JobConfig>, ProtocolError> {
    let response: WireResponse = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    response
        .configs
        .into_iter()
        .map(|c| {
            let outputs = c
                .outputs
                .into_iter()
                .map(WireRef::into_ref)
                .collect::<Result<_, _>>()?;
            let inputs = c
                .inputs
                .into_iter()
                .map(|d| {
                    let dep_type = DepType::from_code(d.dep_type_code).ok_or_else(|| {
                        ProtocolError::DepType {
                            reason: format!(
                                "dep_type_code {} is neither 0 (query) nor 1 (materialize)",
                                d.dep_type_code
                            ),
                        }
                    })?;
                    if let Some(name) = &d.dep_type_name
                        && !name.eq_ignore_ascii_case(dep_type.name())
                    {
                        return Err(ProtocolError::DepType {
                            reason: format!(
                                "dep_type_name {name:?} disagrees with dep_type_code {} ({})",
                                d.dep_type_code,
                                dep_type.name()
                            ),
                        });
                    }
                    Ok(DataDep {
                        dep_type,
                        partition: d.partition_ref.into_ref()?,
                    })
                })
                .collect::<Result<_, ProtocolError>>()?;
            Ok(JobConfig {
                outputs,
                inputs,
                args: c.args,
                env: c.env,
                ..JobConfig::default()
            })
        })
        .collect()
}

#[derive(Serialize)]
struct OutRef<'a> {
    str: &'a str,
}

#[derive(Serialize)]
struct OutDep<'a> {
    dep_type_code: i32,
    dep_type_name: &'static str,
    partition_ref: OutRef<'a>,
}

#[derive(Serialize)]
struct OutConfig<'a> {
    outputs: Vec<OutRef<'a>>,
    inputs: Vec<OutDep<'a>>,
    args: &'a [String],
    env: &'a BTreeMap<String, String>,
}

/// Encodes a configuration as the JSON object `exec` receives.
pub fn encode_config(config: &JobConfig) -> String {
    let out = OutConfig {
        outputs: config
            .outputs
            .iter()
            .map(|o| OutRef { str: o.as_str() })
            .collect(),
        inputs: config
            .inputs
            .iter()
            .map(|d| OutDep {
                dep_type_code: d.dep_type.code(),
                dep_type_name: d.dep_type.name(),
                partition_ref: OutRef {
                    str: d.partition.as_str(),
                },
            })
            .collect(),
        args: &config.args,
        env: &config.env,
    };
    serde_json::to_string(&out).unwrap_or_else(|e| unreachable!("a config always encodes: {e}"))
}

/// Decodes the JSON object `exec` receives (the inverse of
/// [`encode_config`]).
pub fn decode_config(bytes: &[u8]) -> Result<JobConfig, ProtocolError> {
    let mut response = Vec::with_capacity(bytes.len() + 14);
    response.extend_from_slice(b"{\"configs\":[");
    response.extend_from_slice(bytes);
    response.extend_from_slice(b"]}");
    let mut configs = decode_config_response(&response)?;
    match configs.len() {
        1 => Ok(configs.remove(0)),
        n => Err(ProtocolError::Json {
            reason: format!("expected one config object, found {n}"),
        }),
    }
}

/// One missing-deps entry: these outputs need those missing inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingDeps {
    /// The outputs that cannot be built.
    pub impacted: Vec<PartitionRef>,
    /// The inputs they need.
    pub missing: Vec<PartitionRef>,
}

impl MissingDeps {
    /// The proto form, as `JobRunMissingDeps` carries it.
    pub fn to_proto(&self) -> crate::proto::MissingDeps {
        crate::proto::MissingDeps {
            impacted: self.impacted.iter().map(PartitionRef::to_proto).collect(),
            missing: self.missing.iter().map(PartitionRef::to_proto).collect(),
        }
    }
}

/// Metadata about one partition a run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestEntry {
    /// The partition.
    pub partition: Option<PartitionRef>,
    /// Rows written, when the job knows.
    pub row_count: Option<u64>,
    /// Bytes written, when the job knows.
    pub bytes: Option<u64>,
    /// A version string of the data or its code.
    pub version: Option<String>,
    /// Free-form key/values.
    pub extra: BTreeMap<String, String>,
}

/// Which marker a malformed line carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// `__DATABUILD_ERROR__::`
    MissingDeps,
    /// `__DATABUILD_MANIFEST__::`
    Manifest,
}

/// What one line of a run's stdout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// An ordinary output line.
    None,
    /// A missing-deps report.
    MissingDeps(Vec<MissingDeps>),
    /// A heartbeat.
    Heartbeat,
    /// A manifest.
    Manifest(Vec<ManifestEntry>),
    /// A marker line whose payload is invalid: the run fails, quoting it.
    Malformed {
        /// Which marker.
        kind: MarkerKind,
        /// What is wrong.
        reason: String,
        /// The line, quoted and truncated.
        line: String,
    },
}

#[derive(Deserialize)]
struct WireMissing {
    missing_deps: Vec<WireMissingEntry>,
}

#[derive(Deserialize)]
struct WireMissingEntry {
    #[serde(default)]
    impacted: Vec<WireRef>,
    missing: Vec<WireRef>,
}

#[derive(Deserialize)]
struct WireManifest {
    partitions: Vec<WireManifestEntry>,
}

#[derive(Deserialize)]
struct WireManifestEntry {
    partition: WireRef,
    #[serde(default)]
    row_count: Option<u64>,
    #[serde(default)]
    bytes: Option<u64>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

fn refs(list: Vec<WireRef>) -> Result<Vec<PartitionRef>, ProtocolError> {
    list.into_iter()
        .map(|r| r.into_ref().map_err(ProtocolError::from))
        .collect()
}

/// Classifies one line of a run's stdout (with or without its line ending).
/// Ordinary lines cost one byte comparison.
pub fn scan_line(line: &[u8]) -> Marker {
    if line.first() != Some(&b'_') {
        return Marker::None;
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.trim_ascii_end() == HEARTBEAT_MARKER.as_bytes() {
        return Marker::Heartbeat;
    }
    let malformed = |kind, reason: String| Marker::Malformed {
        kind,
        reason,
        line: quote_bytes(line, QUOTE),
    };
    if let Some(payload) = line.strip_prefix(ERROR_MARKER.as_bytes()) {
        let parsed = serde_json::from_slice::<WireMissing>(payload)
            .map_err(|e| json_error(&e))
            .and_then(|m| {
                m.missing_deps
                    .into_iter()
                    .map(|e| {
                        Ok(MissingDeps {
                            impacted: refs(e.impacted)?,
                            missing: refs(e.missing)?,
                        })
                    })
                    .collect::<Result<Vec<_>, ProtocolError>>()
            });
        return match parsed {
            Ok(entries) if entries.iter().any(|e| !e.missing.is_empty()) => {
                Marker::MissingDeps(entries)
            }
            Ok(_) => malformed(
                MarkerKind::MissingDeps,
                "names no missing partition".to_owned(),
            ),
            Err(e) => malformed(MarkerKind::MissingDeps, e.to_string()),
        };
    }
    if let Some(payload) = line.strip_prefix(MANIFEST_MARKER.as_bytes()) {
        let parsed = serde_json::from_slice::<WireManifest>(payload)
            .map_err(|e| json_error(&e))
            .and_then(|m| {
                m.partitions
                    .into_iter()
                    .map(|p| {
                        Ok(ManifestEntry {
                            partition: Some(p.partition.into_ref()?),
                            row_count: p.row_count,
                            bytes: p.bytes,
                            version: p.version,
                            extra: p.extra,
                        })
                    })
                    .collect::<Result<Vec<_>, ProtocolError>>()
            });
        return match parsed {
            Ok(entries) => Marker::Manifest(entries),
            Err(e) => malformed(MarkerKind::Manifest, e.to_string()),
        };
    }
    Marker::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> PartitionRef {
        PartitionRef::new(s).unwrap()
    }

    #[test]
    fn decodes_the_documented_config_response() {
        let json = br#"{"configs":[{"outputs":[{"str":"b/1"}],"inputs":[{"dep_type_code":1,"dep_type_name":"materialize","partition_ref":{"str":"a/1"}},{"dep_type_code":0,"partition_ref":"q/1"}],"args":["--day","1"],"env":{"K":"V"},"future_field":[1,2]}],"extra":true}"#;
        let configs = decode_config_response(json).unwrap();
        assert_eq!(configs.len(), 1);
        let c = &configs[0];
        assert_eq!(c.outputs, [r("b/1")]);
        assert_eq!(
            c.inputs,
            [DataDep::materialize(r("a/1")), DataDep::query(r("q/1"))]
        );
        assert_eq!(c.args, ["--day", "1"]);
        assert_eq!(c.env.get("K").map(String::as_str), Some("V"));
    }

    #[test]
    fn rejects_bad_dep_types() {
        let missing = br#"{"configs":[{"outputs":["b"],"inputs":[{"partition_ref":"a"}]}]}"#;
        let err = decode_config_response(missing).unwrap_err();
        assert!(err.to_string().contains("dep_type_code"), "{err}");

        let bad_code = br#"{"configs":[{"outputs":["b"],"inputs":[{"dep_type_code":7,"partition_ref":"a"}]}]}"#;
        let err = decode_config_response(bad_code).unwrap_err();
        assert!(matches!(err, ProtocolError::DepType { .. }), "{err:?}");
        assert!(err.to_string().contains("dep_type_code 7"), "{err}");

        let disagree = br#"{"configs":[{"outputs":["b"],"inputs":[{"dep_type_code":1,"dep_type_name":"query","partition_ref":"a"}]}]}"#;
        let err = decode_config_response(disagree).unwrap_err();
        assert!(err.to_string().contains("disagrees"), "{err}");

        let upper = br#"{"configs":[{"outputs":["b"],"inputs":[{"dep_type_code":1,"dep_type_name":"MATERIALIZE","partition_ref":"a"}]}]}"#;
        assert!(decode_config_response(upper).is_ok());
    }

    #[test]
    fn rejects_malformed_json_and_bad_refs() {
        assert!(matches!(
            decode_config_response(b"{\"configs\":"),
            Err(ProtocolError::Json { .. })
        ));
        assert!(matches!(
            decode_config_response(b"{}"),
            Err(ProtocolError::Json { .. })
        ));
        assert!(matches!(
            decode_config_response(b"\xff\xfe"),
            Err(ProtocolError::Json { .. })
        ));
        let err = decode_config_response(br#"{"configs":[{"outputs":["a/../b"]}]}"#).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::InvalidRef(PartitionRefError::DotSegment { .. })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn exec_config_round_trips() {
        let config = JobConfig::new([r("out/1"), r("out/2")])
            .materialize(r("in/1"))
            .query(r("in/2"))
            .arg("--x")
            .env("K", "V \"quoted\"");
        let json = encode_config(&config);
        assert!(json.starts_with(r#"{"outputs":[{"str":"out/1"},{"str":"out/2"}],"inputs":[{"dep_type_code":1,"dep_type_name":"materialize","partition_ref":{"str":"in/1"}}"#), "{json}");
        assert_eq!(decode_config(json.as_bytes()).unwrap(), config);
    }

    #[test]
    fn scans_marker_lines() {
        assert_eq!(scan_line(b"hello\n"), Marker::None);
        assert_eq!(scan_line(b"_private"), Marker::None);
        assert_eq!(scan_line(b"__DATABUILD_HEARTBEAT__\n"), Marker::Heartbeat);
        assert_eq!(scan_line(b"__DATABUILD_HEARTBEAT__\r\n"), Marker::Heartbeat);
        let line = br#"__DATABUILD_ERROR__::{"missing_deps":[{"impacted":[{"str":"b/1"}],"missing":["a/1",{"str":"a/2"}]}]}"#;
        assert_eq!(
            scan_line(line),
            Marker::MissingDeps(vec![MissingDeps {
                impacted: vec![r("b/1")],
                missing: vec![r("a/1"), r("a/2")],
            }])
        );
        let manifest = br#"__DATABUILD_MANIFEST__::{"partitions":[{"partition":"b/1","row_count":10,"version":"v2","extra":{"k":"v"}}]}"#;
        let Marker::Manifest(entries) = scan_line(manifest) else {
            panic!("manifest")
        };
        assert_eq!(entries[0].partition, Some(r("b/1")));
        assert_eq!((entries[0].row_count, entries[0].bytes), (Some(10), None));
    }

    #[test]
    fn malformed_marker_lines_quote_the_line() {
        for (line, kind) in [
            (
                &b"__DATABUILD_ERROR__::{not json"[..],
                MarkerKind::MissingDeps,
            ),
            (
                b"__DATABUILD_ERROR__::{\"missing_deps\":[{\"missing\":[\"a/../b\"]}]}",
                MarkerKind::MissingDeps,
            ),
            (
                b"__DATABUILD_ERROR__::{\"missing_deps\":[]}",
                MarkerKind::MissingDeps,
            ),
            (b"__DATABUILD_ERROR__::\xff\xfe", MarkerKind::MissingDeps),
            (b"__DATABUILD_MANIFEST__::[]", MarkerKind::Manifest),
        ] {
            match scan_line(line) {
                Marker::Malformed {
                    kind: k,
                    line: quoted,
                    ..
                } => {
                    assert_eq!(k, kind);
                    assert!(quoted.contains("__DATABUILD_"), "{quoted}");
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
            }
        }
    }
}
