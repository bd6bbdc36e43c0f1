//! `cargo xtask tidy`: the rules of ARCHITECTURE.md that a program can check, run by the test
//! command (`tests/tidy.rs`) so that a change breaking one does not land.
//!
//! 1. Forbidden dependencies: the sans-IO crates, the node's core and the simulator build
//!    without tokio, quinn, TLS, fjall or an OS random source; the client without the node's
//!    server stack. Read from `cargo tree`, so a dependency that comes in indirectly counts.
//! 2. Every Rust file starts with a `//!` doc saying what it is for.
//! 3. No source file is longer than [`MAX_SOURCE_LINES`], no test file than
//!    [`MAX_TEST_LINES`]: past that a file holds more than one responsibility.
//! 4. No two modules of an application crate (cli, client, core, node, tests) import each
//!    other (`crate::a` in `b` and `crate::b` in `a`, or the same through `super::`; test
//!    modules aside): a cycle means neither can be read alone. The algorithm crates are left
//!    out: a few types that name each other (a ring and its transfer plan) are one idea there.
//!    [`KNOWN_CYCLES`] lists the cycles still to be removed, and fails once one is gone.
//!
//! This module must not know how the crates work: it reads manifests' dependency trees and
//! source text.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The longest a file under `src/` may be.
pub(crate) const MAX_SOURCE_LINES: usize = 1_000;
/// The longest a test, bench or example file may be.
pub(crate) const MAX_TEST_LINES: usize = 1_500;

/// Crates whose modules are responsibilities of an application, checked for import cycles.
const APPLICATION_CRATES: &[&str] = &["cli", "client", "core", "node", "tests"];

/// Cycles that exist and are to be removed: `(crate directory, module, module, why)`. None
/// today: the core's were removed by splitting its continuations by part (issue 27).
const KNOWN_CYCLES: &[(&str, &str, &str, &str)] = &[];

/// What the server side and the engines are made of.
const SERVER_STACK: &[&str] = &["axum", "hyper", "prometheus-client", "fjall", "dynamo-node"];
/// What I/O is made of: a sans-IO crate has none of it.
const IO_STACK: &[&str] = &[
    "tokio",
    "quinn",
    "rustls",
    "socket2",
    "mio",
    "fjall",
    "axum",
    "hyper",
    "getrandom",
];

/// `(package, cargo tree arguments, crates it must not depend on, why)`.
fn dependency_rules() -> Vec<(
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
    &'static str,
)> {
    let sans_io = |also: &[&'static str]| -> Vec<&'static str> {
        IO_STACK.iter().chain(also).copied().collect()
    };
    let mut rules = Vec::new();
    for algorithm in [
        "dynamo-ring",
        "dynamo-vclock",
        "dynamo-merkle",
        "dynamo-gossip",
        "dynamo-quorum",
        "dynamo-resolve",
    ] {
        rules.push((
            algorithm,
            vec![],
            sans_io(&["dynamo-storage"]),
            "an algorithm crate is sans-IO: time and randomness come in as inputs",
        ));
    }
    rules.push((
        "dynamo-storage",
        vec!["--no-default-features"],
        sans_io(&[]),
        "without its `fjall` feature the store is the in-memory one, for sans-IO users",
    ));
    rules.push((
        "dynamo-protocol",
        vec![],
        sans_io(&[
            "dynamo-storage",
            "dynamo-core",
            "dynamo-client",
            "dynamo-gossip",
        ]),
        "the wire types are plain data every side shares",
    ));
    rules.push((
        "dynamo-core",
        vec![],
        sans_io(&["dynamo-client", "dynamo-node"]),
        "the node's decisions are sans-IO; the runtime and the simulator drive them",
    ));
    rules.push((
        "dynamo-client",
        vec![],
        SERVER_STACK
            .iter()
            .chain(&["dynamo-core", "dynamo-gossip", "dynamo-storage", "rcgen"])
            .copied()
            .collect(),
        "an application that adds the client gets no server, engine or certificate authority",
    ));
    rules.push((
        "dynamo-tests",
        vec!["--no-default-features"],
        sans_io(&["dynamo-client", "dynamo-node"]),
        "the simulator runs node cores over in-memory stores and nothing else",
    ));
    rules
}

/// Runs every check; returns the problems found, each on one line.
pub(crate) fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(check_dependencies(root));
    let files = rust_files(root);
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            problems.push(format!("{}: cannot be read", shown(root, file)));
            continue;
        };
        problems.extend(check_file(&shown(root, file), &text, is_source(root, file)));
    }
    problems.extend(check_cycles(root, &files));
    problems
}

fn check_dependencies(root: &Path) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut problems = Vec::new();
    for (package, extra, forbidden, why) in dependency_rules() {
        let output = Command::new(&cargo)
            .current_dir(root)
            .args([
                "tree", "--quiet", "-e", "normal", "--prefix", "none", "-p", package,
            ])
            .args(&extra)
            .output();
        let output = match output {
            Ok(output) if output.status.success() => output,
            Ok(output) => {
                problems.push(format!(
                    "cargo tree -p {package} failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
                continue;
            }
            Err(error) => {
                problems.push(format!("cannot run cargo tree: {error}"));
                continue;
            }
        };
        let crates: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        for name in forbidden {
            if crates.contains(name) {
                problems.push(format!(
                    "{package} depends on {name} (see `cargo tree -p {package} -i {name} {}`): {why}",
                    extra.join(" ")
                ));
            }
        }
    }
    problems
}

/// The doc and length rules for one file.
pub(crate) fn check_file(name: &str, text: &str, source: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if !text.starts_with("//!") {
        problems.push(format!(
            "{name}: starts without a `//!` doc saying what the file is for"
        ));
    }
    let lines = text.lines().count();
    let limit = if source {
        MAX_SOURCE_LINES
    } else {
        MAX_TEST_LINES
    };
    if lines > limit {
        problems.push(format!(
            "{name}: {lines} lines, over {limit}: split it by responsibility"
        ));
    }
    problems
}

/// Pairs of modules of one crate that import each other.
fn check_cycles(root: &Path, files: &[PathBuf]) -> Vec<String> {
    // (crate src dir, module) -> modules of the same crate it names.
    let mut uses: BTreeMap<(PathBuf, String), BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some((src, module)) = module_of(file) else {
            continue;
        };
        let crate_dir = src.parent().and_then(Path::file_name);
        if !crate_dir.is_some_and(|dir| APPLICATION_CRATES.iter().any(|name| dir == *name)) {
            continue;
        }
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        let named = modules_named(&text, &module);
        uses.entry((src, module)).or_default().extend(named);
    }
    let mut found = BTreeSet::new();
    for ((src, module), named) in &uses {
        for other in named {
            let back = uses
                .get(&(src.clone(), other.clone()))
                .is_some_and(|theirs| theirs.contains(module));
            if back && module < other {
                found.insert((shown(root, src), module.clone(), other.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    for (src, a, b) in &found {
        let known = KNOWN_CYCLES
            .iter()
            .any(|(dir, x, y, _)| src == &format!("{dir}/src") && a == x && b == y);
        if !known {
            problems.push(format!("{src}: modules `{a}` and `{b}` import each other"));
        }
    }
    for (dir, a, b, why) in KNOWN_CYCLES {
        if !found.contains(&(format!("{dir}/src"), (*a).to_owned(), (*b).to_owned())) {
            problems.push(format!(
                "{dir}/src: `{a}` and `{b}` no longer import each other ({why}): remove the pair from KNOWN_CYCLES"
            ));
        }
    }
    problems
}

/// The crate's `src` directory and the top-level module a file belongs to (`a` for
/// `src/a.rs` and `src/a/b.rs`); `None` for crate roots, binaries and files outside `src`.
fn module_of(file: &Path) -> Option<(PathBuf, String)> {
    let mut src = file.parent()?;
    let mut below: Vec<String> = vec![file.file_stem()?.to_str()?.to_owned()];
    while src.file_name()? != "src" {
        below.push(src.file_name()?.to_str()?.to_owned());
        src = src.parent()?;
    }
    let top = below.last()?.clone();
    if matches!(top.as_str(), "lib" | "main" | "bin") {
        return None;
    }
    Some((src.to_path_buf(), top))
}

/// The top-level modules `text` (of module `own`) names through `crate::` or, in a top-level
/// file, `super::`.
pub(crate) fn modules_named(text: &str, own: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for line in text.lines() {
        if line.trim() == "mod tests {" {
            break; // what a test module imports is not a dependency of the module
        }
        // Comments and docs may name any module; only code imports.
        let code = line.split("//").next().unwrap_or_default();
        for prefix in ["crate::", "super::"] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                rest = &rest[at + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let is_module = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                if is_module && name != own {
                    named.insert(name);
                }
            }
        }
    }
    named
}

fn is_source(root: &Path, file: &Path) -> bool {
    let relative = file.strip_prefix(root).unwrap_or(file);
    relative.components().any(|c| c.as_os_str() == "src") && !relative.starts_with("tests/tests")
}

/// Every `.rs` file of the workspace's members (and the fuzz targets), without `target`.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "corpus") {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule against a file that keeps it and one that breaks it.
    #[test]
    fn rules_see_what_they_are_for() {
        let long = "//! doc\n".repeat(MAX_SOURCE_LINES + 1);
        let cases: &[(&str, bool, usize)] = &[
            ("//! What this is for.\nfn f() {}\n", true, 0),
            ("fn f() {}\n", true, 1),
            ("// not a module doc\n", true, 1),
            (&long, true, 1),
            (&long, false, 0),
        ];
        for (text, source, expected) in cases {
            assert_eq!(
                check_file("f.rs", text, *source).len(),
                *expected,
                "{text:.40}"
            );
        }
    }

    /// The test command runs the checks on the workspace itself.
    #[test]
    fn the_workspace_is_tidy() {
        let problems = check(&crate::workspace_root());
        assert!(
            problems.is_empty(),
            "cargo xtask tidy:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn imports_are_read_from_code_not_comments() {
        let text = "//! see crate::gate\nuse crate::tls::Role;\nuse super::write_lane;\n\
                    let x = crate::metrics::f(); // crate::http\nuse crate::Node;\n\
                    #[cfg(test)]\nmod tests {\n    use crate::gate;\n}\n";
        let named: Vec<String> = modules_named(text, "node").into_iter().collect();
        assert_eq!(named, ["metrics", "tls", "write_lane"]);
    }
}
