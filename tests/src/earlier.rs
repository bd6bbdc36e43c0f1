//! The `dynamo` binary of an earlier commit, built from this clone's history into the same
//! target directory as the running tests (so the dependencies are compiled once for both), for
//! tests of how builds of two versions work together.
//!
//! The source of the commit is extracted with `git archive` under the target directory
//! (`upgrade-from/COMMIT`, renamed into place once whole) and built with the lock file it was
//! committed with, offline. Two edits keep its artifacts apart from this build's in the shared target directory: its
//! binary is renamed `dynamo-COMMIT`, and its workspace version becomes `0.0.0-from-COMMIT`. Cargo
//! names the artifacts of a workspace's own crates by name, version and path relative to the
//! workspace, which are the same in both trees: without a version of its own, the earlier
//! commit's crates would overwrite this build's.
//!
//! This module must not know what the binary is used for.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target directory and profile directory of the running test binary
/// (`target/debug/deps/NAME` gives `target` and `debug`).
fn target_dirs() -> Result<(PathBuf, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the test binary is not in a target directory")?;
    let target = profile_dir
        .parent()
        .ok_or("the test binary is not in a target directory")?;
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or("the profile directory has no name")?;
    Ok((target.to_path_buf(), profile.to_owned()))
}

/// Runs `command`, with what it printed in the error when it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

/// What [`dynamo_of`] found.
#[derive(Debug)]
pub enum Earlier {
    /// The binary, built.
    Built(PathBuf),
    /// It cannot be built here, and why: no git, or a clone without the commit (a shallow
    /// one). A test skips.
    Unavailable(String),
}

/// Builds the `dynamo` binary of `commit` (of the repository at `repo`). `Err` when the build
/// fails: a test fails with it.
pub fn dynamo_of(repo: &Path, commit: &str) -> Result<Earlier, String> {
    let has_commit = match Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .output()
    {
        Ok(output) => output,
        Err(error) => return Ok(Earlier::Unavailable(format!("git cannot run: {error}"))),
    };
    if !has_commit.status.success() {
        return Ok(Earlier::Unavailable(format!(
            "commit {commit} is not in this clone (a shallow clone?): {}",
            String::from_utf8_lossy(&has_commit.stderr).trim()
        )));
    }
    let (target, profile) = target_dirs()?;
    let parent = target.join("upgrade-from");
    let source = parent.join(commit);
    let name = format!("dynamo-{commit}");
    if !source.join(COMPLETE).exists() {
        extract(repo, commit, &parent, &name)?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&source)
        .args(["build", "--offline", "-p", "dynamo-cli", "--bin", &name])
        .env("CARGO_TARGET_DIR", &target);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if PACKAGE_VARIABLES
            .iter()
            .any(|prefix| key.starts_with(prefix))
        {
            build.env_remove(key.as_ref());
        }
    }
    run(&mut build, &format!("building {commit}"))?;
    Ok(Earlier::Built(target.join(&profile).join(name)))
}

/// The variables cargo gives a running test about its own package (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`...), by prefix. The build of the earlier commit runs without them: build
/// scripts that watch one (ring's does) would see it change between that build and the
/// workspace's and rebuild both, in turn, every time. The user's own cargo settings
/// (`CARGO_HOME`, `CARGO_NET_*`...) stay.
const PACKAGE_VARIABLES: [&str; 6] = [
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];

/// The file that marks an extracted source tree as whole (extracted and edited).
const COMPLETE: &str = ".complete";

/// Extracts `commit` into `parent/COMMIT`: into a directory of its own first, edited, marked
/// whole, then renamed into place, so an interrupted run leaves nothing that looks finished
/// and two runs at once do not write into one tree.
fn extract(repo: &Path, commit: &str, parent: &Path, name: &str) -> Result<(), String> {
    let partial = parent.join(format!(".{commit}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| e.to_string())?;
    let tar = partial.join("source.tar");
    run(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["archive", "--format=tar", "-o"])
            .arg(&tar)
            .arg(commit),
        "git archive",
    )?;
    let tree = partial.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    run(
        Command::new("tar")
            .arg("-x")
            .arg("-f")
            .arg(&tar)
            .arg("-C")
            .arg(&tree),
        "tar",
    )?;
    // Its own binary name, so the build never replaces this build's `dynamo`.
    let manifest = tree.join("cli").join("Cargo.toml");
    replace_once(
        &manifest,
        "[[bin]]\nname = \"dynamo\"",
        &format!("[[bin]]\nname = \"{name}\""),
    )?;
    // Its own version, so its crates' artifacts never replace this build's.
    let root = tree.join("Cargo.toml");
    let text = std::fs::read_to_string(&root).map_err(|e| e.to_string())?;
    let section = "[workspace.package]\nversion = \"";
    let start = text
        .find(section)
        .map(|at| at + section.len())
        .ok_or_else(|| format!("{} has no workspace version", root.display()))?;
    let end = text[start..]
        .find('"')
        .map(|len| start + len)
        .ok_or_else(|| format!("{} has no workspace version", root.display()))?;
    let versioned = format!("{}0.0.0-from-{commit}{}", &text[..start], &text[end..]);
    std::fs::write(&root, versioned).map_err(|e| e.to_string())?;
    std::fs::write(tree.join(COMPLETE), b"").map_err(|e| e.to_string())?;
    let source = parent.join(commit);
    if !source.join(COMPLETE).exists() {
        // A tree an interrupted run left behind (or none).
        let _ = std::fs::remove_dir_all(&source);
    }
    let moved = std::fs::rename(&tree, &source);
    let _ = std::fs::remove_dir_all(&partial);
    // Another run may have put its tree there first: that one is whole too.
    if moved.is_err() && !source.join(COMPLETE).exists() {
        return moved.map_err(|e| format!("moving the source into {}: {e}", source.display()));
    }
    Ok(())
}

/// Replaces the first `from` in the file at `path` with `to`; an error if there is none.
fn replace_once(path: &Path, from: &str, to: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let replaced = text.replacen(from, to, 1);
    if replaced == text {
        return Err(format!("{} has no {from:?} to replace", path.display()));
    }
    std::fs::write(path, replaced).map_err(|e| e.to_string())
}
