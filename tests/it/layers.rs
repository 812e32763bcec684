//! The module graph points down the layers in docs/architecture.md: a module may use modules
//! of its own layer or below, never above, and the graph has no cycle. A new top-level module
//! must be placed in a layer here before it can be used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    // Leaves: import nothing from the crate.
    &[
        "cache", "clock", "hash", "headers", "host", "text", "urlpath",
    ],
    // Pure data and instruments.
    &["config", "observe"],
    // One concern each.
    &[
        "auth",
        "contract",
        "cors",
        "edge",
        "firewall",
        "limit",
        "routing",
        "tls",
        "transform",
        "upstream",
    ],
    // Compile a config into a snapshot; the store.
    &["snapshot"],
    // What runs on a snapshot: the proxy phases, background services, reload, admin API.
    &["admin", "proxy", "reload", "services"],
    // Assembles the Pingora server.
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `crate::NAME` references in the non-test code of every file under `src/`, by top-level
/// module (`main.rs` and `lib.rs` are the roots and are left out).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
            let file = path.file_name().unwrap().to_str().unwrap();
            if !file.ends_with(".rs") || module == "main" || module == "lib" || file == "tests.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let used = out.entry(module.clone()).or_default();
            for line in code.lines() {
                let line = line.split("//").next().unwrap_or("");
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        // `crate::{a, b::c}`: the first segment of each item.
                        Some(group) => group
                            .split('}')
                            .next()
                            .unwrap_or("")
                            .split(',')
                            .map(|item| item.trim().split("::").next().unwrap_or(""))
                            .collect(),
                        None => vec![rest
                            .split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .unwrap_or("")],
                    };
                    for name in names {
                        if !name.is_empty() && name != module {
                            used.insert(name.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_module_is_placed_in_a_layer() {
    let unplaced: Vec<String> = imports()
        .into_iter()
        .flat_map(|(m, used)| std::iter::once(m).chain(used))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(unplaced.is_empty(), "modules in no layer: {unplaced:?}");
}

#[test]
fn imports_point_down_the_layers() {
    let mut upward = Vec::new();
    for (module, used) in imports() {
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for name in used {
            if layer_of(&name).is_some_and(|l| l > own) {
                upward.push(format!("{module} (layer {own}) imports {name}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = imports();
    // Depth-first search for a back edge; the path to it is the cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_layer_check_sees_imports() {
    // The checks above pass vacuously if the scan finds nothing.
    let graph = imports();
    assert!(graph["snapshot"].contains("config"), "{graph:?}");
    assert!(graph["proxy"].contains("snapshot"), "{graph:?}");
    assert!(
        graph["config"].iter().all(|m| layer_of(m) == Some(0)),
        "{graph:?}"
    );
}
