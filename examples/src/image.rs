//! Images made here, with no registry: static builds of this workspace's
//! programs, imported into an engine as an image holding only them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

/// Errors of the image helpers.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Builds `what` (cargo arguments naming a package and target, e.g.
/// `["--example", "pipeline"]`) with the C runtime linked in, so that the
/// binary runs in an image with nothing else, and returns its path
/// (`output` is its path under the profile directory, e.g.
/// `examples/pipeline`). Builds go to `target/static`.
pub fn static_build(what: &[&str], output: &str) -> Result<PathBuf, Error> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("static");
    let triple = "x86_64-unknown-linux-gnu";
    println!("building {output} as a static binary (the first time takes a while)");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&workspace)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "-q"])
            .args(what)
            .args(["--target", triple])
            .arg("--target-dir")
            .arg(&target_dir)
            .status()?;
    if !status.success() {
        return Err(format!("building {output} as a static binary failed ({status})").into());
    }
    Ok(target_dir.join(triple).join("debug").join(output))
}

/// `docker import` on the engine at `socket`: an image `repo` holding only
/// `files` (each a host file and its absolute path in the image), with
/// their directories.
pub async fn import(socket: &Path, repo: &str, files: &[(&Path, &Path)]) -> Result<(), Error> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for (_, inside) in files {
        let inside = inside.strip_prefix("/")?;
        dirs.extend(
            inside
                .ancestors()
                .skip(1)
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf),
        );
    }
    // Parents first (a set of paths sorts them so).
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        archive.append_data(&mut header, dir, std::io::empty())?;
    }
    for (host, inside) in files {
        let bytes = std::fs::read(host)?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(bytes.len() as u64);
        archive.append_data(&mut header, inside.strip_prefix("/")?, bytes.as_slice())?;
    }
    let tarball = archive.into_inner()?;
    let docker =
        Docker::connect_with_unix(&socket.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await?;
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .build();
    let mut progress = docker.create_image(
        Some(options),
        Some(bollard::body_full(tarball.into())),
        None,
    );
    while let Some(step) = progress.next().await {
        step?;
    }
    Ok(())
}
