//! A test that keeps the module layering honest (issue 9): no module of this
//! crate may reach, through its `crate::` imports, back to itself. `state` (the
//! composition root) and `startup` (which assembles it) are left out: they only
//! aggregate. Test code is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its non-test code imports.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap_or(&path).to_string_lossy().into_owned();
            let top = rel.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let deps = graph.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let name: String =
                        name.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != top {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_itself_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let aggregate = ["state", "startup", "lib", "main", "layering"];
    let graph: BTreeMap<String, BTreeSet<String>> = imports(&src)
        .into_iter()
        .filter(|(m, _)| !aggregate.contains(&m.as_str()))
        .map(|(m, deps)| (m, deps.into_iter().filter(|d| !aggregate.contains(&d.as_str())).collect()))
        .collect();
    assert!(graph.len() > 10, "the sources were not found: {graph:?}");
    for start in graph.keys() {
        // Depth-first from `start`, remembering the way, looking for `start` again.
        let mut todo = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, way)) = todo.pop() {
            for dep in graph.get(&m).into_iter().flatten() {
                if dep == start {
                    panic!("import circle: {} -> {start}", way.join(" -> "));
                }
                if seen.insert(dep.clone()) {
                    let mut next = way.clone();
                    next.push(dep.clone());
                    todo.push((dep.clone(), next));
                }
            }
        }
    }
}
