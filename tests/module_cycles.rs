//! No import cycles between the modules of any crate, at any depth: within every folder, a module
//! that imports another (through `crate::…`, `super::…` or `self::…` paths, in `use` lines or
//! inline) must not be imported back by it, directly or through its siblings. The check runs over
//! the modules of one folder at a time (the crate's top level, then `base/`, `web/`, `web/pages/`,
//! …): a reference from inside module `a` to anything inside its sibling `b` is an edge `a → b`.
//! The folder's own file (`mod.rs`, `lib.rs`) declares its children and is no node.
//!
//! Code after `#[cfg(test)]`, `tests.rs` files and files marked `#![cfg(test)]` are left out: tests may reach anywhere; the
//! layering is about the code that ships.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate of the workspace: its source folder, and the files (relative to it) that belong to
/// it. The main package holds two crates in `src/`: the library, and the binary (`main.rs` and
/// `cli/`).
/// Whether a file (relative to the source folder) belongs to the crate.
type Belongs = Box<dyn Fn(&Path) -> bool>;

fn crates() -> Vec<(&'static str, &'static str, Belongs)> {
    let bin = |rel: &Path| rel == Path::new("main.rs") || rel.starts_with("cli");
    vec![
        (
            "nachtwacht (lib)",
            "src",
            Box::new(move |rel: &Path| !bin(rel)),
        ),
        ("nachtwacht (bin)", "src", Box::new(bin)),
        (
            "nachtwacht-station",
            "station/src",
            Box::new(|_: &Path| true),
        ),
        (
            "nachtwacht-wire",
            "station/wire/src",
            Box::new(|_: &Path| true),
        ),
        (
            "nachtwacht-pipelines",
            "pipelines/src",
            Box::new(|_: &Path| true),
        ),
    ]
}

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

/// The module path of a file relative to its crate's source folder: `a/b.rs` and `a/b/mod.rs` are
/// `[a, b]`; `lib.rs` and `main.rs` are the root, `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let file = parts.pop().unwrap();
    match file.as_str() {
        "mod.rs" => {}
        "lib.rs" | "main.rs" if parts.is_empty() => {}
        f => parts.push(f.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// Every path that starts with `crate::`, `super::` or `self::` in `text`, with groups expanded
/// (`crate::{a::b, c::{d, e}}` gives `a::b`, `c::d`, `c::e`), resolved against `module` (the
/// module the text is in) to absolute module paths.
fn referenced_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        if !starts_word || !bytes[i].is_alphabetic() {
            i += 1;
            continue;
        }
        let word: String = bytes[i..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        let after = i + word.chars().count();
        let base: Option<Vec<String>> = match word.as_str() {
            "crate" => Some(vec![]),
            "self" => Some(module.to_vec()),
            "super" => Some(module[..module.len().saturating_sub(1)].to_vec()),
            _ => None,
        };
        match base {
            Some(mut base) if text_at(&bytes, after, "::") => {
                // `super::super::x`
                let mut j = after + 2;
                while text_at(&bytes, j, "super::") {
                    base.pop();
                    j += 7;
                }
                let (paths, end) = parse_tree(&bytes, j);
                for p in paths {
                    let mut full = base.clone();
                    full.extend(p);
                    out.push(full);
                }
                i = end;
            }
            _ => i = after,
        }
    }
    out
}

fn text_at(chars: &[char], at: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k) == Some(&c))
}

/// Parses `a::b::{c, d::e}` (or `*`) at `at`; returns the leaf paths and where parsing stopped.
fn parse_tree(chars: &[char], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        if chars.get(at) == Some(&'{') {
            at += 1;
            let mut out = Vec::new();
            loop {
                while chars
                    .get(at)
                    .is_some_and(|c| c.is_whitespace() || *c == ',')
                {
                    at += 1;
                }
                match chars.get(at) {
                    None => return (out, at),
                    Some('}') => return (out, at + 1),
                    _ => {}
                }
                let (subs, end) = parse_tree(chars, at);
                for s in subs {
                    let mut full = prefix.clone();
                    full.extend(s);
                    out.push(full);
                }
                // Skip an `as name` and anything else up to the next `,` or `}`.
                at = end;
                while chars.get(at).is_some_and(|c| *c != ',' && *c != '}') {
                    at += 1;
                }
            }
        }
        let ident: String = chars[at..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        if ident.is_empty() {
            return (vec![prefix], at);
        }
        at += ident.chars().count();
        prefix.push(ident);
        if text_at(chars, at, "::") {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// For one crate: folder (module path) → its child modules → the siblings each imports.
type Graphs = BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>>;

fn folder_graphs(src: &Path, belongs: &dyn Fn(&Path) -> bool) -> Graphs {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let files: Vec<(PathBuf, Vec<String>)> = files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).unwrap().to_path_buf();
            belongs(&rel).then(|| {
                let m = module_path(&rel);
                (f, m)
            })
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(_, m)| m.clone()).collect();
    let mut graphs = Graphs::new();
    for m in &modules {
        if let Some((child, parent)) = m.split_last() {
            graphs
                .entry(parent.to_vec())
                .or_default()
                .entry(child.clone())
                .or_default();
        }
    }
    for (file, module) in &files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("#![cfg(test)]") {
            continue; // a file of tests only
        }
        let before_tests = text.split("#[cfg(test)]").next().unwrap_or("");
        // Comments (and doc links in them) are not imports.
        let shipped: String = before_tests
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for target in referenced_paths(&shipped, module) {
            // The deepest folder both share: there `module`'s child imports `target`'s child.
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common >= module.len() || common >= target.len() {
                continue; // an ancestor or a descendant of itself: no sibling involved
            }
            let folder = module[..common].to_vec();
            let (from, to) = (&module[common], &target[common]);
            if let Some(children) = graphs.get_mut(&folder) {
                if children.contains_key(to) {
                    children.get_mut(from).unwrap().insert(to.clone());
                }
            }
        }
    }
    graphs
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

fn paths(text: &str, module: &[&str]) -> Vec<String> {
    let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    referenced_paths(text, &module)
        .into_iter()
        .map(|p| p.join("::"))
        .collect()
}

#[test]
fn the_checker_reads_paths_and_finds_a_cycle() {
    assert_eq!(
        paths(
            "use crate::{base::config::X, spool::{A, B as C}, Error};\nlet _ = crate::seal::f();",
            &["web", "pages"]
        ),
        vec![
            "base::config::X",
            "spool::A",
            "spool::B",
            "Error",
            "seal::f"
        ]
    );
    assert_eq!(
        paths(
            "use super::page::esc; use super::super::x; self::y::z()",
            &["web", "pages"]
        ),
        vec!["web::page::esc", "x", "web::pages::y::z"]
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
fn the_checker_sees_a_cycle_between_nested_siblings() {
    let tmp = std::env::temp_dir().join(format!("nw-cycles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("web/pages")).unwrap();
    std::fs::write(tmp.join("lib.rs"), "pub mod web;").unwrap();
    std::fs::write(tmp.join("web/mod.rs"), "mod pages; mod page;").unwrap();
    std::fs::write(tmp.join("web/page.rs"), "use crate::web::pages::admin::X;").unwrap();
    std::fs::write(tmp.join("web/pages/mod.rs"), "pub mod admin;").unwrap();
    std::fs::write(tmp.join("web/pages/admin.rs"), "use super::super::page::f;").unwrap();
    let graphs = folder_graphs(&tmp, &|_| true);
    let web = &graphs[&vec!["web".to_string()]];
    assert_eq!(cycles(web), vec![vec!["page", "pages"]]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn no_crate_has_an_import_cycle_in_any_folder() {
    let mut found = Vec::new();
    for (name, src, belongs) in crates() {
        for (folder, children) in folder_graphs(&workspace().join(src), belongs.as_ref()) {
            for cycle in cycles(&children) {
                found.push(format!("{name} {}/: {cycle:?}", folder.join("/")));
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules importing each other:\n{}",
        found.join("\n")
    );
}

/// The library's top level in layers, lowest first (ARCHITECTURE.md): a module imports only from
/// its own layer or a lower one.
const LIB_LAYERS: &[&[&str]] = &[
    &["base"],
    &["trust"],
    &["registry"],
    &[
        "ingest",
        "spool",
        "decode",
        "dataset",
        "alerts",
        "notify",
        "evaluate",
        "research",
        "lifecycle",
    ],
    &["accountability", "ops"],
    &["web", "server"],
];

#[test]
fn a_lower_layer_never_imports_a_higher_one() {
    let (_, src, belongs) = crates().into_iter().next().unwrap();
    let graphs = folder_graphs(&workspace().join(src), belongs.as_ref());
    let top = &graphs[&Vec::<String>::new()];
    let layer = |m: &str| {
        LIB_LAYERS
            .iter()
            .position(|l| l.contains(&m))
            .unwrap_or_else(|| panic!("top-level module {m} is in no layer of LIB_LAYERS"))
    };
    let mut upward = Vec::new();
    for (from, tos) in top {
        for to in tos {
            if layer(to) > layer(from) {
                upward.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports from a higher layer: {upward:?}");
}
