//! The generated `databuild.v1` schema (`proto/databuild.proto`): prost
//! messages with proto3 JSON (pbjson, proto field names).
//!
//! Domain types convert to and from these at the edges (the BEL, saved
//! plans); see the `.proto` file for each field's meaning.
#![allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]

include!(concat!(env!("OUT_DIR"), "/databuild.v1.rs"));
include!(concat!(env!("OUT_DIR"), "/databuild.v1.serde.rs"));
