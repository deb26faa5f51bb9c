//! Compiles `proto/databuild.proto` with prost-build and pbjson-build, using
//! protox so that no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/databuild.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let descriptors = protox::compile([proto], ["proto"])?;
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);
    let descriptor_path = out_dir.join("databuild_descriptor.bin");
    std::fs::write(&descriptor_path, &descriptor_bytes)?;

    prost_build::Config::new()
        // Events are moved and stored by the million: the big payloads
        // (a task with its configuration) live behind a box, so an event is
        // small wherever it is copied.
        .boxed(".databuild.v1.JobRunQueued.task")
        .boxed(".databuild.v1.JobRunSucceeded.manifest")
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .build(&[".databuild.v1"])?;
    Ok(())
}
