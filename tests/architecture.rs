//! ARCHITECTURE.md names files, types, functions and variants in backticks; each must exist,
//! so that a rename or a move that leaves the walk-through behind fails here, not in a
//! newcomer's search. Plain text reading, no build of the crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `dir`, by its path.
fn sources(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.insert(path, text);
        }
    }
}

/// The spans of `text` between backticks.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_type_like(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().any(|c| c.is_ascii_lowercase())
}

/// Whether `text` defines `name`: an item (`fn`, `struct`, `enum`, `trait`, `type`, `const`,
/// `static`, `mod`), or a variant or field (a line that starts with it).
fn defines(text: &str, name: &str) -> bool {
    const ITEMS: [&str; 8] = [
        "fn", "struct", "enum", "trait", "type", "const", "static", "mod",
    ];
    text.lines().any(|line| {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let item = words
            .windows(2)
            .any(|w| ITEMS.contains(&w[0]) && w[1] == name);
        let trimmed = line.trim_start();
        let trimmed = trimmed
            .strip_prefix("pub(crate) ")
            .or_else(|| trimmed.strip_prefix("pub "))
            .unwrap_or(trimmed);
        let member = trimmed
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '{', '(', ',', ':']))
            && line.starts_with(' ');
        item || member
    })
}

/// Whether `text` defines or implements the type `name`.
fn homes(text: &str, name: &str) -> bool {
    defines(text, name)
        || text.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with("impl")
                && line
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == name)
        })
}

/// The problem with one backticked span, if it names something that does not exist.
fn check(span: &str, files: &BTreeMap<PathBuf, String>) -> Option<String> {
    let root = Path::new(ROOT);
    let pathish = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'));
    if pathish && (span.ends_with(".rs") || (span.contains('/') && span.ends_with('/'))) {
        let found = root.join("src").join(span).exists() || root.join(span).exists();
        return (!found).then(|| format!("file {span}"));
    }
    // `a::b::{C, D}`, `A::b(args)`, `Type`: the path before any argument list.
    let path = span.split('(').next().unwrap_or(span);
    let (head, braces) = match path.split_once("::{") {
        Some((head, rest)) => (head, rest.strip_suffix('}')?),
        None => (path, ""),
    };
    let mut segments: Vec<&str> = head.split("::").collect();
    if !segments.iter().all(|s| is_ident(s)) {
        return None;
    }
    let is_module = |s: &str| {
        let src = root.join("src");
        src.join(format!("{s}.rs")).exists() || src.join(s).is_dir()
    };
    if segments[0] == "crate" {
        segments.remove(0);
    } else if !(is_type_like(segments[0])
        || ((segments.len() > 1 || !braces.is_empty()) && is_module(segments[0])))
    {
        // A word, or a path into another crate (`tokio::sync::watch`).
        return None;
    }
    // Each name with the type it is a member of, if any.
    let mut named: Vec<(&str, Option<&str>)> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let owner = i
            .checked_sub(1)
            .map(|p| segments[p])
            .filter(|o| is_type_like(o));
        named.push((s, owner));
    }
    let last = segments.last().copied().filter(|l| is_type_like(l));
    named.extend(
        braces
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| (s, last)),
    );
    let anywhere = |name: &str| files.values().any(|t| defines(t, name)) || is_module(name);
    for (name, owner) in named {
        let found = match owner {
            // A member of a type: defined where the type is defined or implemented.
            Some(owner) => files.values().any(|t| homes(t, owner) && defines(t, name)),
            None => anywhere(name),
        };
        if !found {
            return Some(format!("{name} (in `{span}`)"));
        }
    }
    None
}

#[test]
fn every_file_type_and_function_architecture_md_names_exists() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("read doc");
    let mut files = BTreeMap::new();
    sources(&Path::new(ROOT).join("src"), &mut files);
    let spans = backticked(&doc);
    let missing: Vec<String> = spans.iter().filter_map(|s| check(s, &files)).collect();
    assert_eq!(missing, Vec::<String>::new(), "ARCHITECTURE.md names these");
    // The check looks at something: most of the walk-through is code names.
    let checked = spans
        .iter()
        .filter(|s| s.contains("::") || s.ends_with(".rs"))
        .count();
    assert!(checked > 40, "only {checked} code names found");
}

#[test]
fn a_name_that_does_not_exist_is_reported() {
    let mut files = BTreeMap::new();
    sources(&Path::new(ROOT).join("src"), &mut files);
    assert_eq!(check("Reconciler::pass", &files), None);
    assert_eq!(check("model/desired.rs", &files), None);
    assert!(check("Reconciler::no_such_method", &files).is_some());
    assert!(check("model/no_such_file.rs", &files).is_some());
    assert!(check("model::{Service, NoSuchType}", &files).is_some());
    assert_eq!(check("tokio::sync::watch", &files), None);
}
