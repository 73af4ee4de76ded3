//! File name globs: `*`, `?` and bracket classes (`[abc]`, `[a-z]`, `[!x]`) in the last path component;
//! the directory part is taken literally.

use std::path::{Path, PathBuf};

/// A parsed glob: a literal directory and a file-name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGlob {
    directory: PathBuf,
    pattern: Vec<u8>,
}

impl FileGlob {
    /// Splits `glob` into its directory (literal) and file-name pattern. Returns `None` when the directory
    /// part holds a wildcard (`*`, `?`, `[`) or there is no file name.
    pub fn new(glob: &str) -> Option<FileGlob> {
        let path = Path::new(glob);
        let name = path.file_name()?.to_str()?;
        let directory = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let directory = if directory.as_os_str().is_empty() { PathBuf::from(".") } else { directory };
        if directory.to_str().is_some_and(|text| text.contains(['*', '?', '['])) {
            return None;
        }
        Some(FileGlob { directory, pattern: name.as_bytes().to_vec() })
    }

    /// The directory whose entries are matched.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Whether the file name `name` matches the pattern.
    pub fn matches_name(&self, name: &str) -> bool {
        matches(&self.pattern, name.as_bytes())
    }

    /// The regular files in the directory whose names match, sorted by path. A missing or unreadable directory
    /// gives an empty list (files may appear later).
    pub fn expand(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.directory) else { return Vec::new() };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter(|entry| entry.file_name().to_str().is_some_and(|name| self.matches_name(name)))
            .map(|entry| entry.path())
            .collect();
        found.sort();
        found
    }
}

/// Iterative glob matching with single-star backtracking: linear in practice, no recursion.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut pattern_at, mut name_at) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while name_at < name.len() {
        match pattern.get(pattern_at) {
            Some(b'*') => {
                star = Some((pattern_at, name_at));
                pattern_at += 1;
                continue;
            }
            Some(b'?') => {
                pattern_at += 1;
                name_at += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, class_end)) = match_class(pattern, pattern_at, name[name_at]) {
                    if matched {
                        pattern_at = class_end;
                        name_at += 1;
                        continue;
                    }
                } else if name[name_at] == b'[' {
                    // An unclosed bracket is a literal.
                    pattern_at += 1;
                    name_at += 1;
                    continue;
                }
            }
            Some(&literal) if literal == name[name_at] => {
                pattern_at += 1;
                name_at += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_at, star_name_at)) => {
                pattern_at = star_at + 1;
                name_at = star_name_at + 1;
                star = Some((star_at, star_name_at + 1));
            }
            None => return false,
        }
    }
    pattern[pattern_at.min(pattern.len())..].iter().all(|byte| *byte == b'*')
}

/// Matches `byte` against the class starting at `pattern[start] == b'['`; returns (matched, index after `]`),
/// or `None` when the class is not closed.
fn match_class(pattern: &[u8], start: usize, byte: u8) -> Option<(bool, usize)> {
    let mut at = start + 1;
    let negated = matches!(pattern.get(at), Some(b'!' | b'^'));
    if negated {
        at += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let current = *pattern.get(at)?;
        if current == b']' && !first {
            return Some((matched != negated, at + 1));
        }
        first = false;
        if pattern.get(at + 1) == Some(&b'-') && pattern.get(at + 2).is_some_and(|end| *end != b']') {
            let end = *pattern.get(at + 2)?;
            matched |= current <= byte && byte <= end;
            at += 3;
        } else {
            matched |= current == byte;
            at += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(pattern: &str, name: &str) -> bool {
        matches(pattern.as_bytes(), name.as_bytes())
    }

    #[test]
    fn wildcards_and_classes() {
        assert!(check("app.log*", "app.log"));
        assert!(check("app.log*", "app.log.1"));
        assert!(!check("app.log*", "other.log"));
        assert!(check("*.log", "boxoffice.log"));
        assert!(!check("*.log", "boxoffice.log.1"));
        assert!(check("app-?.log", "app-1.log"));
        assert!(check("app-[0-9].log", "app-7.log"));
        assert!(!check("app-[!0-9].log", "app-7.log"));
        assert!(check("a*b*c", "axxbyyc"));
        assert!(!check("a*b*c", "axxbyy"));
        assert!(check("[x", "[x"));
    }

    #[test]
    fn directory_part_is_literal() {
        let glob = FileGlob::new("/var/log/boxoffice/*.log").unwrap();
        assert_eq!(glob.directory(), Path::new("/var/log/boxoffice"));
        assert!(FileGlob::new("/var/log/*/app.log").is_none());
        assert_eq!(FileGlob::new("app.log").unwrap().directory(), Path::new("."));
    }

    #[test]
    fn expand_lists_matching_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["app.log", "app.log.1", "other.txt"] {
            std::fs::write(dir.path().join(name), b"x\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("app.log.d")).unwrap();
        let glob = FileGlob::new(&format!("{}/app.log*", dir.path().display())).unwrap();
        let names: Vec<String> =
            glob.expand().iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["app.log", "app.log.1"]);
    }
}
