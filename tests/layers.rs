//! The crate is layered, and this test fails when an import goes the wrong way.
//!
//! Top-level modules form one order (`LAYERS`, lowest first): a module may use only
//! modules listed before it. Inside a module, no two files may import each other,
//! directly or around a longer circle. A file's use of an enclosing module's own items
//! (`super::Error` in `controllers/role/mod.rs`) is not counted: the enclosing module
//! declares the file, so that edge is the tree itself. Test modules are not counted.
//!
//! Imports are read from the source text (`crate::…` and `super::…` paths, use trees
//! with braces included), so paths inside macro calls count too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules, lowest first. A new module goes where what it imports
/// allows; moving one up to silence this test is a design decision, not a fix.
const LAYERS: &[&str] = &[
    "reason",
    "telemetry",
    "naming",
    "shutdown",
    "inputs",
    "api",
    "status",
    "policy",
    "config",
    "aws",
    "error",
    "trust",
    "crds",
    "reference",
    "controllers",
    "leader",
    "validate",
    "operator",
];

/// Module path (`controllers::role::spec`) → its source without comments and tests.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().map(String::as_str) == Some("mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if name == "lib" || name == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source readable");
            out.insert(name, without_tests(&strip_comments(&text)));
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    let block = regex::Regex::new(r"(?s)/\*.*?\*/").unwrap();
    let line = regex::Regex::new(r"//[^\n]*").unwrap();
    line.replace_all(&block.replace_all(text, ""), "")
        .into_owned()
}

/// Without test-only imports and test modules (the last items of a file, by the
/// crate's convention).
fn without_tests(text: &str) -> String {
    let test_use = regex::Regex::new(r"#\[cfg\(test\)\]\s*use [^;]*;").unwrap();
    let text = test_use.replace_all(text, "");
    let test_mod = regex::Regex::new(r"#\[cfg\(test\)\]\s*(pub )?mod \w+ \{").unwrap();
    match test_mod.find(&text) {
        Some(m) => text[..m.start()].to_string(),
        None => text.into_owned(),
    }
}

/// The paths a use tree after `crate::` / `super::` names, e.g. `{a::{b, c}, d}` →
/// `a::b`, `a::c`, `d` (only the leading identifiers matter).
fn use_tree(text: &str) -> Vec<String> {
    fn group(chars: &[char], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        *i += 1; // the `{`
        loop {
            while chars
                .get(*i)
                .is_some_and(|c| c.is_whitespace() || *c == ',')
            {
                *i += 1;
            }
            if chars.get(*i).is_none_or(|c| *c == '}') {
                *i += 1;
                return;
            }
            let before = *i;
            tree(chars, i, prefix, out);
            if *i == before {
                *i += 1; // `*` or anything else that is no path
            }
            // `Name as Alias`: the alias is no path.
            let rest: String = chars[*i..].iter().take(4).collect();
            if rest.trim_start().starts_with("as ") {
                *i += rest.find("as ").unwrap() + 3;
                while chars
                    .get(*i)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    *i += 1;
                }
            }
        }
    }
    fn tree(chars: &[char], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut path = prefix.to_string();
        loop {
            if chars.get(*i) == Some(&'{') {
                return group(chars, i, &path, out);
            }
            let start = *i;
            while chars
                .get(*i)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
            {
                *i += 1;
            }
            if *i == start {
                return;
            }
            let ident: String = chars[start..*i].iter().collect();
            if !path.is_empty() {
                path.push_str("::");
            }
            path.push_str(&ident);
            if chars[*i..].starts_with(&[':', ':']) {
                *i += 2;
                continue;
            }
            out.push(path);
            return;
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = vec![];
    tree(&chars, &mut 0, "", &mut out);
    out
}

/// Every module a module's source imports, resolved to the longest existing module
/// path: (target, how it was written).
fn imports(name: &str, text: &str, all: &BTreeMap<String, String>) -> BTreeSet<(String, String)> {
    let parent = name.rsplit_once("::").map(|(p, _)| p).unwrap_or("");
    let resolve = |path: &str| {
        let mut parts: Vec<&str> = path.split("::").collect();
        while !parts.is_empty() {
            let candidate = parts.join("::");
            if all.contains_key(&candidate) {
                return Some(candidate);
            }
            parts.pop();
        }
        None
    };
    let mut out = BTreeSet::new();
    for (keyword, base) in [("crate::", ""), ("super::", parent)] {
        for (at, _) in text.match_indices(keyword) {
            let before = text[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `super::super::`, `$crate::`, or part of a longer path
            }
            for path in use_tree(&text[at + keyword.len()..]) {
                let full = if base.is_empty() {
                    path.clone()
                } else {
                    format!("{base}::{path}")
                };
                if let Some(target) = resolve(&full) {
                    out.insert((target, format!("{keyword}{path}")));
                }
            }
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

#[test]
fn the_use_tree_parser_reads_nested_braces() {
    assert_eq!(
        use_tree("{aws::{Aws, snapshot::Cache as C}, error::Error};"),
        ["aws::Aws", "aws::snapshot::Cache", "error::Error"]
    );
    assert_eq!(use_tree("trust::current().x"), ["trust::current"]);
}

#[test]
fn no_module_imports_a_higher_layer() {
    let all = modules();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == top(m));
    let mut upward = vec![];
    for (name, text) in &all {
        let from = rank(name).unwrap_or_else(|| {
            panic!("src module {name:?} is in no layer: add it to LAYERS in tests/layers.rs")
        });
        for (target, written) in imports(name, text, &all) {
            let to = rank(&target).expect("a target module has a layer");
            if to > from {
                upward.push(format!("{name} uses {written} ({target} is above it)"));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_files_import_each_other() {
    let all = modules();
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in &all {
        for (target, _) in imports(name, text, &all) {
            let enclosing = name.starts_with(&format!("{target}::"));
            if target != *name && !enclosing {
                edges.entry(name).or_default().insert(target);
            }
        }
    }
    // A circle exists when a module reaches itself.
    let mut circles = vec![];
    for start in all.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, route)) = todo.pop() {
            for next in edges.get(at.as_str()).into_iter().flatten() {
                if next == start {
                    circles.push(route.join(" -> ") + " -> " + start);
                } else if seen.insert(next.clone()) {
                    let mut r = route.clone();
                    r.push(next.clone());
                    todo.push((next.clone(), r));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}
