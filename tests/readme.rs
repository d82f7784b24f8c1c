//! What README.md and the manifests promise a user, checked on the files: README's "As a
//! dependency" block is what CI's outside project (`tests/downstream/Cargo.toml`) builds, no
//! placeholder address is left anywhere, and every crate is either ready for crates.io (its
//! metadata complete) or marked `publish = false`. README's Rust blocks are compiled as doctests
//! of the root crate (`src/lib.rs`).

mod common;

use std::path::{Path, PathBuf};

/// The fenced blocks of `markdown` whose info string is `language`, without the fences.
fn fenced_blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    // The block being read: whether it is in `language`, and its lines so far.
    let mut open: Option<(bool, Vec<&str>)> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.take(), fence) {
            (None, Some(info)) => open = Some((info.trim() == language, Vec::new())),
            (Some((wanted, lines)), Some(_)) => {
                if wanted {
                    blocks.push(lines.join("\n"));
                }
            }
            (Some((wanted, mut lines)), None) => {
                lines.push(line);
                open = Some((wanted, lines));
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Whether every line of `block` appears in `text`, in the same order.
fn lines_in_order(block: &str, text: &str) -> Result<(), String> {
    let mut remaining = text.lines();
    for wanted in block.lines() {
        if !remaining.any(|line| line == wanted) {
            return Err(format!("not found in order: `{wanted}`"));
        }
    }
    Ok(())
}

/// Whether a manifest's text opens a `[patch]` table.
fn has_patch_table(manifest: &str) -> bool {
    manifest
        .lines()
        .any(|line| line.trim_start().starts_with("[patch"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_dependency_block_is_what_ci_builds_from_outside() {
    let readme = read(&common::repo("README.md"));
    let blocks = fenced_blocks(&readme, "toml");
    let block = blocks
        .iter()
        .find(|b| b.contains("[dependencies]") && b.contains("sskd ="))
        .expect("README has a toml block with sskd as a dependency");
    assert!(!has_patch_table(block), "no [patch] for a user to copy");
    let template = read(&common::repo("tests/downstream/Cargo.toml"));
    lines_in_order(block, &template).unwrap_or_else(|e| panic!("tests/downstream: {e}"));
    assert!(
        !has_patch_table(&template),
        "the outside project has no [patch]"
    );
    assert!(has_patch_table("[dependencies]\n[patch.crates-io]\n"));
    // Nor does the workspace: what it builds is what a dependency gets.
    for manifest in manifests() {
        assert!(!has_patch_table(&read(&manifest)), "{}", manifest.display());
    }
    assert_eq!(
        fenced_blocks("```sh\nx\n```\n```toml\na = 1\n```\n", "toml"),
        ["a = 1"]
    );
    // The check finds a line that is missing or out of order.
    assert!(lines_in_order("b\na", "a\nb").is_err());
    assert!(lines_in_order("a\nc", "a\nb\nc").is_ok());
}

/// The manifests of the workspace: the root's and every crate's under `crates/` and `forks/`.
fn manifests() -> Vec<PathBuf> {
    let mut found = vec![common::repo("Cargo.toml")];
    for folder in ["crates", "forks"] {
        for entry in std::fs::read_dir(common::repo(folder)).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            if manifest.exists() {
                found.push(manifest);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_crate_is_ready_for_crates_io_or_not_published() {
    let workspace: toml::Table = read(&common::repo("Cargo.toml")).parse().unwrap();
    let shared = workspace["workspace"]["package"].as_table().unwrap();
    let mut published = 0;
    for path in manifests() {
        let manifest: toml::Table = read(&path).parse().unwrap();
        let package = manifest["package"].as_table().unwrap();
        if package.get("publish").and_then(|p| p.as_bool()) == Some(false) {
            continue;
        }
        published += 1;
        for field in [
            "description",
            "license",
            "readme",
            "keywords",
            "categories",
            "documentation",
            "rust-version",
        ] {
            let value = package.get(field);
            let inherited = value
                .and_then(|v| v.get("workspace"))
                .and_then(|w| w.as_bool())
                == Some(true);
            assert!(
                value.is_some() && (!inherited || shared.contains_key(field)),
                "{}: `{field}` missing (or inherited from a workspace that lacks it)",
                path.display()
            );
        }
        let readme = package["readme"].as_str().unwrap();
        assert!(
            path.parent().unwrap().join(readme).exists(),
            "{}: readme {readme} missing",
            path.display()
        );
    }
    assert!(
        published >= 8,
        "the library crates are published: {published}"
    );
}

#[test]
fn no_placeholder_address_anywhere() {
    let mut files = manifests();
    files.push(common::repo("README.md"));
    files.push(common::repo("CHANGELOG.md"));
    for entry in std::fs::read_dir(common::repo("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    for path in files {
        let text = read(&path);
        for placeholder in ["example.invalid", "example.com", "TODO"] {
            assert!(
                !text.contains(placeholder),
                "{}: contains `{placeholder}`",
                path.display()
            );
        }
    }
}
