//! Config audit: one JSON line per applied config, saying what changed by name. Names only:
//! tokens and other values never reach the audit log.

use crate::config::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Names added, removed and changed between two configs, for one kind of object.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Delta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Delta {
    fn between<'a, T: PartialEq + 'a>(
        old: impl IntoIterator<Item = (&'a str, &'a T)>,
        new: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> Self {
        let old: BTreeMap<&str, &T> = old.into_iter().collect();
        let new: BTreeMap<&str, &T> = new.into_iter().collect();
        let mut d = Delta::default();
        for (name, value) in &new {
            match old.get(name) {
                None => d.added.push(name.to_string()),
                Some(prev) if prev != value => d.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        d.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| k.to_string())
            .collect();
        d
    }
}

/// What changed between two configs.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Changes {
    pub routes: Delta,
    pub upstreams: Delta,
    pub limits: Delta,
    pub authorizers: Delta,
    /// Other top-level sections that differ (`server`, `listeners`, `admin`, `access_log`).
    pub sections: Vec<&'static str>,
}

/// Compare two configs by object name.
pub fn diff(old: &Config, new: &Config) -> Changes {
    let sections = [
        ("server", old.server != new.server),
        ("listeners", old.listeners != new.listeners),
        ("edge", old.edge != new.edge),
        ("admin", old.admin != new.admin),
        ("access_log", old.access_log != new.access_log),
        ("redis", old.redis != new.redis),
        ("certificates", old.certificates != new.certificates),
        ("tls", old.tls != new.tls),
        ("hosts", old.hosts != new.hosts),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    Changes {
        routes: Delta::between(
            old.routes.iter().map(|r| (r.name.as_str(), r)),
            new.routes.iter().map(|r| (r.name.as_str(), r)),
        ),
        upstreams: Delta::between(
            old.upstreams.iter().map(|(k, v)| (k.as_str(), v)),
            new.upstreams.iter().map(|(k, v)| (k.as_str(), v)),
        ),
        limits: Delta::between(
            old.limits.iter().map(|(k, v)| (k.as_str(), v)),
            new.limits.iter().map(|(k, v)| (k.as_str(), v)),
        ),
        authorizers: Delta::between(
            old.authorizers.iter().map(|(k, v)| (k.as_str(), v)),
            new.authorizers.iter().map(|(k, v)| (k.as_str(), v)),
        ),
        sections,
    }
}

/// One audit line.
#[derive(Debug, Serialize)]
pub struct AuditEntry<'a> {
    pub time: String,
    pub version: &'a str,
    pub previous_version: Option<&'a str>,
    pub source: super::Source,
    pub file: &'a Path,
    pub changes: &'a Changes,
}

/// Append-only audit file.
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The file the entries go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line. Config changes are rare, so this writes synchronously.
    pub fn append(&self, entry: &AuditEntry<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(&format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{text}")).unwrap()
    }

    #[test]
    fn diff_names_added_removed_and_changed_objects() {
        let old = config(
            "[upstreams.a]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
             [upstreams.b]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
             [[routes]]\nname = \"keep\"\nupstream = \"a\"\n\
             [[routes]]\nname = \"edit\"\npath = \"/e\"\nupstream = \"a\"\n\
             [[routes]]\nname = \"gone\"\npath = \"/g\"\nupstream = \"b\"\n",
        );
        let new = config(
            "[server]\nthreads = 3\n\
             [upstreams.a]\ntargets = [{ address = \"127.0.0.1:3\" }]\n\
             [upstreams.c]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
             [[routes]]\nname = \"keep\"\nupstream = \"a\"\n\
             [[routes]]\nname = \"edit\"\npath = \"/e2\"\nupstream = \"a\"\n\
             [[routes]]\nname = \"new\"\npath = \"/n\"\nupstream = \"c\"\n",
        );
        let c = diff(&old, &new);
        assert_eq!(c.routes.added, ["new"]);
        assert_eq!(c.routes.removed, ["gone"]);
        assert_eq!(c.routes.changed, ["edit"]);
        assert_eq!(c.upstreams.added, ["c"]);
        assert_eq!(c.upstreams.removed, ["b"]);
        assert_eq!(c.upstreams.changed, ["a"]);
        assert_eq!(c.sections, ["server"]);
        assert_eq!(diff(&new, &new), Changes::default());
    }
}
