//! The documentation's relative links resolve: every `[text](target)` of `README.md`,
//! `BENCHMARKS.md`, `sentinel/README.md` and `docs/**/*.md` whose target is not a URL names a
//! file or folder that exists, and its `#anchor` (if any) a heading of the target, slugged as
//! GitHub slugs headings. Links inside code blocks and code spans are not links.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Announced but not written yet: the owner writes it after a redesign. Links to it are
/// allowed to dangle until then (its anchors are not checked).
const PLANNED: &[&str] = &[];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("actors-tests is inside the repository")
        .to_path_buf()
}

/// The Markdown files whose links are checked, relative to the repository.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("README.md"),
        PathBuf::from("BENCHMARKS.md"),
        PathBuf::from("sentinel/README.md"),
    ];
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = dir.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The lines outside fenced code blocks, with their numbers (from 1).
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` without its code spans.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links (and images) in `line`.
fn link_targets(line: &str) -> Vec<String> {
    let text = without_code(line);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end + 1..];
    }
    targets
}

/// The text of a heading as GitHub renders it, for its slug: code spans keep their text,
/// links their text, emphasis marks go.
fn heading_text(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else {
            break;
        };
        let Some(close) = rest[mid..].find(')').map(|c| mid + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..mid]);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out.replace(['`', '*'], "")
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept; spaces
/// become `-`; everything else dropped.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            out.extend(c.to_lowercase());
        } else if c == ' ' {
            out.push('-');
        }
    }
    out
}

/// Every anchor of a Markdown file (duplicates numbered `-1`, `-2`, … as GitHub does).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&heading_text(line[hashes..].trim()));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `a/b/../c` → `a/c` (the paths are inside the repository, none is a symlink that matters).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn relative_links_and_anchors_resolve() {
    let root = repo();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents(&root) {
        let text = std::fs::read_to_string(root.join(&doc))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
        for (number, line) in prose(&text) {
            for target in link_targets(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = match target.split_once('#') {
                    Some((file, anchor)) => (file, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let resolved = if file.is_empty() {
                    doc.clone()
                } else {
                    normalise(&doc.parent().unwrap_or(Path::new("")).join(file))
                };
                let place = format!("{}:{number}: ({target})", doc.display());
                if PLANNED.iter().any(|p| Path::new(p) == resolved) {
                    continue;
                }
                let path = root.join(&resolved);
                if !path.exists() {
                    broken.push(format!("{place}: no such file {}", resolved.display()));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if path.extension().is_none_or(|e| e != "md") {
                    broken.push(format!(
                        "{place}: an anchor into a file that is not Markdown"
                    ));
                    continue;
                }
                let target_text = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!(
                        "{place}: no heading of {} has the anchor #{anchor}",
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser broken?"
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug(&heading_text(
            "Room administration (`admin_key` and permanent rooms)"
        )),
        "room-administration-admin_key-and-permanent-rooms"
    );
    assert_eq!(
        slug(&heading_text("Differences from Janus's plugin")),
        "differences-from-januss-plugin"
    );
    assert_eq!(
        slug(&heading_text("Selection policies (`registry.policy`)")),
        "selection-policies-registrypolicy"
    );
    assert_eq!(
        slug(&heading_text("A — B, [linked](x.md) *too*")),
        "a--b-linked-too"
    );
    let doc = "# Title\n## Tests\n```\n# not a heading\n```\n## Tests\n";
    let found = anchors(doc);
    assert!(found.contains("title") && found.contains("tests") && found.contains("tests-1"));
    assert!(!found.contains("not-a-heading"));
    assert_eq!(
        link_targets("see [a](docs/a.md#x) and `[b](not.md)` and ![i](img.png \"t\")"),
        vec!["docs/a.md#x".to_owned(), "img.png".to_owned()]
    );
}
