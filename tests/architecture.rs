//! What docs/architecture.md says of the code, checked on the sources: no import loops between
//! the modules of a crate, one table per registry, and the places the page names exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file: line comments removed and the unit tests (from `#[cfg(test)]` on) cut.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(start) if !line[..start].contains('"') => &line[..start],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source folders of the workspace's crates.
fn source_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src"))
        .collect();
    roots.push(repo().join("src"));
    roots.sort();
    roots
}

/// Every Rust file of the workspace's crates, examples, benches and integration tests.
fn workspace_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = source_roots().iter().flat_map(|r| rust_files(r)).collect();
    for dir in ["examples", "benches", "tests"] {
        files.extend(rust_files(&repo().join(dir)));
    }
    for root in source_roots() {
        let tests = root.with_file_name("tests");
        if tests.is_dir() {
            files.extend(rust_files(&tests));
        }
    }
    files
}

/// The words (identifiers) of `text`.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// For each top-level module of the crate at `root`, the other top-level modules it refers to
/// (`crate::m`, `use crate::{m, …}`, and items re-exported at the crate root from `m`).
fn module_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let module_of = |path: &Path| {
        let relative = path.strip_prefix(root).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        first.to_string_lossy().trim_end_matches(".rs").to_string()
    };
    let files = rust_files(root);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != "lib")
        .collect();
    let lib = code(&root.join("lib.rs"));
    let mut reexported = BTreeMap::new();
    for line in lib
        .lines()
        .filter(|l| l.trim_start().starts_with("pub use "))
    {
        let mut names = words(line).skip(2);
        if let Some(module) = names.next().filter(|m| modules.contains(*m)) {
            for name in names {
                reexported.insert(name.to_string(), module.to_string());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| module_of(f) != "lib") {
        let module = module_of(file);
        let text = code(file);
        let mut referred = BTreeSet::new();
        for (start, _) in text.match_indices("crate::") {
            let rest = &text[start + "crate::".len()..];
            let names: Vec<&str> = if let Some(list) = rest.strip_prefix('{') {
                words(&list[..list.find('}').unwrap_or(list.len())]).collect()
            } else {
                words(rest).take(1).collect()
            };
            for name in names {
                let target = reexported.get(name).map(String::as_str).unwrap_or(name);
                if modules.contains(target) && target != module {
                    referred.insert(target.to_string());
                }
            }
        }
        graph.entry(module).or_default().extend(referred);
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for root in source_roots() {
        let graph = module_graph(&root);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{}: modules import each other: {}",
                root.display(),
                cycle.join(" -> ")
            );
        }
    }
    // The check finds a loop where there is one.
    let looped = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&looped).unwrap(), ["a", "b", "a"]);
    // The layers of sskd-train, as the page lists them.
    let train = module_graph(&repo().join("crates/sskd-train/src"));
    assert!(
        train["metrics"].is_empty(),
        "metrics is the bottom: {train:?}"
    );
    assert!(!train["epoch"].contains("stages") && !train["fit"].contains("epoch"));
}

/// The rows of a `name! { … }` table in `file`: the first word of every line that opens a row.
fn table_rows(file: &str, table: &str) -> Vec<String> {
    let text = code(&repo().join(file));
    let start = text
        .find(&format!("{table} {{"))
        .unwrap_or_else(|| panic!("{file}: no `{table}` table"));
    let body = &text[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter_map(|l| words(l).next().map(str::to_string))
        .collect()
}

#[test]
fn models_and_methods_are_dispatched_in_their_tables_only() {
    let families = table_rows("crates/sskd-models/src/model.rs", "families!");
    let methods = table_rows("crates/sskd-losses/src/registry.rs", "methods!");
    assert_eq!(families.len(), 6, "{families:?}");
    assert!(
        methods.contains(&"Sskd".to_string()) && methods.len() >= 16,
        "{methods:?}"
    );
    let dispatched = [
        ("Model", &families, "crates/sskd-models/src/model.rs"),
        ("Method", &methods, "crates/sskd-losses/src/registry.rs"),
    ];
    for file in workspace_files() {
        let text = code(&file);
        for (enumeration, variants, table) in dispatched {
            if file.ends_with(table) {
                continue;
            }
            for variant in variants.iter() {
                let pattern = format!("{enumeration}::{variant}(");
                let arm = text.lines().find(|line| {
                    line.contains("=>")
                        && line.match_indices(&pattern).any(|(at, _)| {
                            !line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                        })
                });
                assert!(
                    arm.is_none(),
                    "{}: dispatches on `{pattern}` outside its table ({table}): {arm:?}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn names_are_written_once_in_their_registry() {
    let models = code(&repo().join("crates/sskd-models/src/registry.rs"));
    for name in sskd::models::model_names() {
        assert_eq!(models.matches(&format!("\"{name}\"")).count(), 1, "{name}");
    }
    let registry = repo().join("crates/sskd-losses/src/registry.rs");
    let methods = code(&registry);
    for name in sskd::losses::method_names() {
        assert_eq!(methods.matches(&format!("\"{name}\"")).count(), 1, "{name}");
        // No method is special-cased by name anywhere else.
        for file in workspace_files().iter().filter(|f| **f != registry) {
            let text = code(file);
            let patterns = [
                format!("method == \"{name}\""),
                format!("method.as_str() == \"{name}\""),
                format!("name() == \"{name}\""),
                format!("\"{name}\" => Method"),
            ];
            for pattern in patterns {
                assert!(
                    !text.contains(&pattern),
                    "{}: `{pattern}` special-cases method `{name}`",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_architecture_page_names_real_places() {
    let page = std::fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    let quoted = page.split('`').skip(1).step_by(2);
    let paths: Vec<&str> = quoted
        .filter(|q| q.contains('/') && !q.contains(' ') && q.contains('.'))
        .collect();
    assert!(paths.len() >= 10, "{paths:?}");
    for path in paths {
        assert!(
            repo().join(path).exists(),
            "docs/architecture.md names `{path}`"
        );
    }
}

/// The source files of the library crates (the crates' `src` and the root package's).
fn library_files() -> Vec<PathBuf> {
    source_roots().iter().flat_map(|r| rust_files(r)).collect()
}

/// The `enum …Error { … }` declarations of `text`, each as its text.
fn error_enums(text: &str) -> Vec<&str> {
    let mut enums = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("enum ") {
        let declaration = &rest[start..];
        let name = words(&declaration["enum ".len()..])
            .next()
            .unwrap_or_default();
        let end = declaration.find("\n}").map_or(declaration.len(), |e| e + 2);
        if name.ends_with("Error") {
            enums.push(&declaration[..end]);
        }
        rest = &declaration[end.min(declaration.len())..];
        if end == 0 {
            break;
        }
    }
    enums
}

#[test]
fn library_errors_are_types_with_context_not_strings() {
    for file in library_files() {
        let text = code(&file);
        for line in text.lines() {
            let returns_string_error = line.match_indices("Result<").any(|(at, _)| {
                line[at..]
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .ends_with(", String")
            });
            assert!(
                !returns_string_error,
                "{}: a `String` error: {}",
                file.display(),
                line.trim()
            );
        }
        for declaration in error_enums(&text) {
            assert!(
                !declaration.contains("(String)"),
                "{}: an error variant that is only a message:\n{declaration}",
                file.display()
            );
        }
    }
}

#[test]
fn architecture_and_method_names_are_matched_in_their_tables_only() {
    let tables = [
        (
            "crates/sskd-models/src/registry.rs",
            sskd::models::model_names(),
        ),
        (
            "crates/sskd-losses/src/registry.rs",
            sskd::losses::method_names(),
        ),
    ];
    // The examples' own vocabularies (the augment example's `sskd` transform) may reuse a name.
    for (table, names) in tables {
        for file in library_files().iter().filter(|f| !f.ends_with(table)) {
            let text = code(file);
            for name in names {
                let quoted = format!("\"{name}\"");
                let patterns = [
                    format!("{quoted} =>"),
                    format!("{quoted} |"),
                    format!("| {quoted}"),
                    format!("== {quoted}"),
                    format!("!= {quoted}"),
                ];
                for pattern in &patterns {
                    assert!(
                        !text.contains(pattern.as_str()),
                        "{}: `{pattern}` matches `{name}` outside its table ({table})",
                        file.display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_total_s_key_is_written_once() {
    let contract = repo().join("crates/sskd-losses/src/contract.rs");
    for file in library_files() {
        let count = code(&file).matches("\"total\"").count();
        let expected = usize::from(file == contract);
        assert_eq!(count, expected, "{}", file.display());
    }
}

#[test]
fn stages_are_values_not_names() {
    for file in library_files() {
        let text = code(&file);
        for name in ["teacher", "head", "student"] {
            for pattern in [
                format!("stage == \"{name}\""),
                format!("stage != \"{name}\""),
            ] {
                assert!(
                    !text.contains(&pattern),
                    "{}: `{pattern}`: compare with a `Stage`",
                    file.display()
                );
            }
        }
    }
}
