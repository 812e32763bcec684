//! What a config problem looks like: where it is (a [`KeyPath`], and line and column for
//! syntax errors) and what is wrong. Parsing, validation and compilation all report through
//! [`ConfigError`], so every message names its place the same way.

use std::fmt;
use std::path::PathBuf;

/// Where a value sits in the file, as a user would write it: `routes[3].auth.authorizer`,
/// `hosts."api.example.com".hsts`. Built with [`KeyPath::key`] and [`KeyPath::index`], never by
/// formatting strings, so every path is joined one way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(String);

impl KeyPath {
    /// The file itself (problems that are not about one key).
    pub fn root() -> Self {
        Self::default()
    }

    /// A top-level key.
    pub fn top(key: &str) -> Self {
        Self::root().key(key)
    }

    /// The table entry `key` below this path. Keys that are not bare TOML keys are quoted.
    pub fn key(&self, key: &str) -> Self {
        let mut s = self.0.clone();
        if !s.is_empty() {
            s.push('.');
        }
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if bare {
            s.push_str(key);
        } else {
            s.push_str(&format!("{key:?}"));
        }
        Self(s)
    }

    /// The array element `index` below this path.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path below this one that serde reported while reading the value here.
    pub fn join_serde(&self, inner: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        inner
            .iter()
            .fold(self.clone(), |path, segment| match segment {
                Segment::Seq { index } => path.index(*index),
                Segment::Map { key } => path.key(key),
                Segment::Enum { variant } => path.key(variant),
                Segment::Unknown => path,
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this path is `top` or lies below it.
    pub fn is_under(&self, top: &str) -> bool {
        self.0
            .strip_prefix(top)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One problem in a configuration file, located by its key path and, for syntax errors, by
/// line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: KeyPath,
    pub message: String,
    pub line_col: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
            line_col: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.line_col {
            write!(f, "line {line}, column {col}: ")?;
        }
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One problem that concerns the whole file (it cannot be read, say).
    pub fn whole_file(file: PathBuf, message: impl Into<String>) -> Self {
        Self {
            file,
            errors: vec![ConfigError::new(KeyPath::root(), message)],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{} in configuration",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {}: {e}", self.file.display())?;
        }
        Ok(())
    }
}

/// Collects problems during one validation or compile pass.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    /// Record a problem at `path`.
    pub fn at(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_as_in_the_file() {
        let p = KeyPath::top("routes")
            .index(3)
            .key("auth")
            .key("authorizer");
        assert_eq!(p.as_str(), "routes[3].auth.authorizer");
        let h = KeyPath::top("hosts").key("api.example.com").key("hsts");
        assert_eq!(h.as_str(), "hosts.\"api.example.com\".hsts");
        assert!(h.is_under("hosts") && !h.is_under("host"));
        assert!(KeyPath::top("tls").is_under("tls"));
    }
}
