//! No import cycles between the modules of a crate: a module that imports another (through
//! `crate::…` or `super::…`, in `use` lines or inline paths) must not be imported back, directly or
//! through others. Modules are the crate's top-level ones (`src/foo.rs`, `src/foo/…`); the crate
//! root, which declares them and holds the crate's `Error`, is not one.
//!
//! Checked for the crates that are free of cycles; the main crate's remaining cycles are printed
//! (issue 20 removes them; its entry then moves into `ACYCLIC`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates (their `src` directories, from the workspace root) that must stay free of cycles.
const ACYCLIC: &[&str] = &["station/wire/src", "station/src", "pipelines/src"];

/// Folders of the main crate whose modules must stay free of cycles among themselves (they reach
/// each other through `super::` or their full `crate::` path).
const ACYCLIC_FOLDERS: &[(&str, &str)] = &[("src/web", "crate::web::")];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to; `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// First path segments after every `crate::` in `text` (both `crate::a::b` and `crate::{a, b::c}`).
fn crate_paths(text: &str) -> Vec<String> {
    paths_after(text, "crate::")
}

/// First path segments after every `prefix` in `text`, which must not continue a longer name.
fn paths_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices(prefix) {
        // Not part of a longer name (`nachtwacht_crate::`).
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(group[start..j].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(group[start..j].trim()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// Module → modules it imports.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    import_graph_with(src, &["crate::"])
}

/// The same for a folder whose modules name each other after any of `prefixes`.
fn import_graph_with(src: &Path, prefixes: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        // Test modules may reach anywhere; the layering is about the code that ships.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let before_tests = text.split("#[cfg(test)]").next().unwrap_or("");
        // Comments (and doc links in them) are not imports.
        let shipped: String = before_tests
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let entry = graph.entry(from.clone()).or_default();
        for to in prefixes.iter().flat_map(|p| paths_after(&shipped, p)) {
            if modules.contains(&to) && to != from {
                entry.insert(to);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_checker_finds_a_cycle_and_reads_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::{config::X, spool::{A, B}, Error};\nlet _ = crate::seal::f();"),
        vec!["config", "spool", "Error", "seal"]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
}

#[test]
fn crates_without_import_cycles_stay_without() {
    for src in ACYCLIC {
        let found = cycles(&import_graph(&workspace().join(src)));
        assert!(
            found.is_empty(),
            "{src}: modules importing each other: {found:?}"
        );
    }
    for (folder, path) in ACYCLIC_FOLDERS {
        let graph = import_graph_with(&workspace().join(folder), &["super::", path]);
        let found = cycles(&graph);
        assert!(
            found.is_empty(),
            "{folder}: modules importing each other: {found:?}"
        );
    }
    let main = cycles(&import_graph(&workspace().join("src")));
    println!("main crate: {} cycle(s): {main:?}", main.len());
}
