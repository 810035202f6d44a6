//! The library's layering, read from its sources: the modules at the bottom (errors,
//! precision, the file format and its fixed-point formats, dense layers, the CPU model,
//! calibration, importers, the charts' drawing and compression, then recurrent layers) use
//! only modules below them, and nothing the GPU backend builds on reaches up into it.
//!
//! A module's uses are the `crate::<module>` paths in its code (comments left out), including
//! grouped imports (`use crate::{a, b::c}`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first: each module may use only the modules before it.
const LAYERS: &[&str] = &[
    "error",
    "precision",
    "kernel_id",
    "format",
    "fixed16",
    "dense",
    "synth",
    "simd",
    "reference",
    "calibration",
    "import",
    "classify",
    // The SVG charts' common drawing (feature `charts`): compress, bench and sim use it.
    "chart",
    "compress",
    "recurrent",
];

/// Every top-level module of the library (`src/<name>.rs` or `src/<name>/`) with the source
/// text of its files, comments removed.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        // The binary's sources (main.rs, cli/) and the crate root are not library modules.
        if ["lib", "main", "cli"].contains(&name.as_str()) {
            continue;
        }
        let mut text = String::new();
        collect(&path, &mut text);
        out.entry(name).or_insert_with(String::new).push_str(&text);
    }
    out
}

/// Appends the code of `path` (a file, or every `.rs` file below a folder) to `text`.
fn collect(path: &Path, text: &mut String) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            collect(&p, text);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            // Code before a line comment (doc comments included); string literals holding
            // `//` lose their tail, which cannot add a use.
            text.push_str(line.split("//").next().unwrap());
            text.push('\n');
        }
    }
}

/// The modules `code` uses through `crate::` paths.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A grouped import: the first segment of each top-level item.
            let (mut depth, mut item_start) = (0usize, true);
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[k..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        found.insert(ident(&group[k..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn the_bottom_modules_use_only_modules_below_them() {
    let mods = modules();
    let mut broken = Vec::new();
    for (k, m) in LAYERS.iter().enumerate() {
        let code = mods
            .get(*m)
            .unwrap_or_else(|| panic!("module `{m}` of LAYERS not found in src/"));
        for used in uses(code) {
            if used == *m || !mods.contains_key(&used) {
                continue; // itself, or not a module (a crate-root re-export such as `crate::Model`)
            }
            if !LAYERS[..k].contains(&used.as_str()) {
                broken.push(format!("{m} uses {used}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:?}");
}

#[test]
fn nothing_the_gpu_backend_builds_on_uses_it() {
    let mods = modules();
    let deps: BTreeMap<&String, BTreeSet<String>> = mods
        .iter()
        .map(|(m, code)| {
            let used = uses(code)
                .into_iter()
                .filter(|u| u != m && mods.contains_key(u))
                .collect();
            (m, used)
        })
        .collect();
    // Everything `gpu` uses, directly or not.
    let mut below = BTreeSet::new();
    let mut todo: Vec<String> = deps[&"gpu".to_string()].iter().cloned().collect();
    while let Some(m) = todo.pop() {
        if m != "gpu" && below.insert(m.clone()) {
            todo.extend(deps[&m].iter().cloned());
        }
    }
    assert!(below.contains("recurrent") && below.contains("reference"));
    let reaching: Vec<&String> = below.iter().filter(|m| deps[*m].contains("gpu")).collect();
    assert!(
        reaching.is_empty(),
        "modules below gpu use it: {reaching:?}"
    );
}

#[test]
fn grouped_imports_and_comments_are_read_as_the_compiler_reads_them() {
    let code = "use crate::{format::Model, error::{Error, Result}};\n\
                let x = crate::fixed16::frac_for(1.0);\n";
    let found: Vec<String> = uses(code).into_iter().collect();
    assert_eq!(found, ["error", "fixed16", "format"]);
    let mut text = String::new();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.rs");
    std::fs::write(
        &p,
        "/// See [`crate::gpu`].\nuse crate::error::Error; // crate::serve\n",
    )
    .unwrap();
    collect(&p, &mut text);
    assert_eq!(uses(&text).into_iter().collect::<Vec<_>>(), ["error"]);
}
