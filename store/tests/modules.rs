//! The store's modules import one another one way only: no module reaches, directly or through
//! others, back to itself (`log` drives `project`, never the reverse). Test code is left out:
//! a test may use whatever it checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's imports: module name → the names it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source of a file without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names `prefix` (`crate::` or `super::`) is followed by in `code`, including each
/// first name of a `prefix{a, b::c}` group.
fn after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(group.split(',').map(ident));
            }
            None => {
                out.insert(ident(rest));
            }
        }
    }
    out
}

/// The first cycle in `graph`, if any, as the path that closes it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(graph, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

/// The `.rs` files of `dir` (not its subfolders) but `skip`, by module name.
fn files(dir: &Path, skip: &[&str]) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && !skip.contains(&stem) {
            out.push((stem.to_owned(), path.clone()));
        }
    }
    out
}

#[test]
fn the_store_modules_import_one_another_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Between the crate's modules (a folder module counts as one): `crate::module`.
    let mut modules: Vec<(String, Vec<std::path::PathBuf>)> = files(&src, &["lib"])
        .into_iter()
        .map(|(name, path)| (name, vec![path]))
        .collect();
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let inner = files(&path, &["tests"]);
            modules.push((name.clone(), inner.iter().map(|(_, p)| p.clone()).collect()));
            folders.push((name, inner));
        }
    }
    let names: BTreeSet<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let mut graph = Graph::new();
    for (name, paths) in &modules {
        let uses = graph.entry(name.clone()).or_default();
        for path in paths {
            uses.extend(
                after(&code(path), "crate::")
                    .into_iter()
                    .filter(|m| names.contains(m) && m != name),
            );
        }
    }
    assert!(
        names.contains("log") && names.contains("project"),
        "{names:?}"
    );
    assert_eq!(cycle(&graph), None, "the modules' imports: {graph:#?}");

    // Inside each folder module: `super::module`.
    for (folder, inner) in folders {
        let names: BTreeSet<String> = inner.iter().map(|(n, _)| n.clone()).collect();
        let mut graph = Graph::new();
        for (name, path) in &inner {
            graph.entry(name.clone()).or_default().extend(
                after(&code(path), "super::")
                    .into_iter()
                    .filter(|m| names.contains(m) && m != name),
            );
        }
        assert_eq!(cycle(&graph), None, "{folder}/: {graph:#?}");
    }
}
