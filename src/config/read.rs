//! Reading the TOML into typed sections so that one run reports every problem, each once.
//!
//! Each top-level section, each `[[routes]]`/`[[listeners]]` element and each named entry
//! (`[upstreams.NAME]`, ...) is deserialized on its own. Within one entry, a key that serde
//! refuses is reported, removed and the entry read again, so a second typo in the same table
//! is reported too; a "missing field" that only follows from such a removal is not.
//!
//! An entry with any problem is left out of the [`Config`], and its name is remembered in
//! [`Present`], so that semantic checks neither run on half-read values nor report references
//! to it as unknown (`routes[0].upstream: unknown upstream "api"` after `upstreams.api` had a
//! typo would be a follow-on error).

use super::error::{ConfigError, KeyPath};
use super::types::{AuthorizerConfig, Config};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

/// Most problems reported for one entry; beyond that the entry is given up.
const MAX_PROBLEMS_PER_ENTRY: usize = 16;

/// What the file has, whether or not it could be read: names of named entries, and which
/// entries and sections had problems.
#[derive(Debug, Default, Clone)]
pub struct Present {
    pub upstreams: BTreeSet<String>,
    pub limits: BTreeSet<String>,
    pub authorizers: BTreeSet<String>,
    pub cors: BTreeSet<String>,
    pub certificates: BTreeSet<String>,
    /// `[[listeners]]` entries in the file, read or not.
    pub listeners: usize,
    /// For each route in `Config::routes`, its index in the file (entries with problems are
    /// left out, so the two can differ).
    pub route_index: Vec<usize>,
    /// Paths of entries and sections that were left out because of a problem.
    pub broken: BTreeSet<KeyPath>,
}

impl Present {
    /// Whether the entry or section at `path` had a problem while reading.
    pub fn is_broken(&self, path: &KeyPath) -> bool {
        self.broken.contains(path)
    }
}

/// Read every section of `table` into a [`Config`], collecting problems.
pub fn read(table: toml::Table, errors: &mut Vec<ConfigError>) -> (Config, Present) {
    let mut r = Reader {
        errors,
        present: Present::default(),
    };
    let mut config = Config::default();
    for (key, value) in table {
        let path = KeyPath::top(&key);
        match key.as_str() {
            "server" => set(&mut config.server, r.entry(value, &path)),
            "admin" => set(&mut config.admin, r.entry(value, &path)),
            "access_log" => set(&mut config.access_log, r.entry(value, &path)),
            "tracing" => config.tracing = r.entry(value, &path),
            "tls" => set(&mut config.tls, r.entry(value, &path)),
            "edge" => set(&mut config.edge, r.entry(value, &path)),
            "firewall" => set(&mut config.firewall, r.entry(value, &path)),
            "redis" => config.redis = r.entry(value, &path),
            "acme" => config.acme = r.entry(value, &path),
            "listeners" => {
                let (items, _, n) = r.elements(value, &path);
                config.listeners = items;
                r.present.listeners = n;
            }
            "routes" => {
                let (items, indices, _) = r.elements(value, &path);
                config.routes = items;
                r.present.route_index = indices;
            }
            "upstreams" => {
                let names = names(&value);
                r.present.upstreams = names;
                config.upstreams = r.named(value, &path);
            }
            "limits" => {
                r.present.limits = names(&value);
                config.limits = r.named(value, &path);
            }
            "certificates" => {
                r.present.certificates = names(&value);
                config.certificates = r.named(value, &path);
            }
            "hosts" => config.hosts = r.named(value, &path),
            "apis" => config.apis = r.named(value, &path),
            "cors" => {
                r.present.cors = names(&value);
                config.cors = r.named(value, &path);
            }
            "authorizers" => {
                r.present.authorizers = names(&value);
                config.authorizers = r.authorizers(value, &path);
            }
            _ => r.errors.push(ConfigError::new(
                path,
                "unknown key, expected one of `server`, `listeners`, `edge`, `firewall`, `admin`, `access_log`, `tracing`, \
                 `upstreams`, `limits`, `redis`, `authorizers`, `cors`, `certificates`, `tls`, `acme`, \
                 `hosts`, `routes`, `apis`",
            )),
        }
    }
    (config, r.present)
}

/// The names of a table of named entries, read or not.
fn names(value: &toml::Value) -> BTreeSet<String> {
    value
        .as_table()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

struct Reader<'a> {
    errors: &'a mut Vec<ConfigError>,
    present: Present,
}

impl Reader<'_> {
    /// One entry or section; `None` (and the path remembered as broken) on any problem.
    fn entry<T: DeserializeOwned>(&mut self, mut value: toml::Value, path: &KeyPath) -> Option<T> {
        let mut removed: Vec<Vec<String>> = Vec::new();
        for _ in 0..MAX_PROBLEMS_PER_ENTRY {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) if removed.is_empty() => return Some(v),
                Ok(_) => break,
                Err(e) => e,
            };
            let at = path.join_serde(e.path());
            let keys = table_keys(e.path());
            let message = e.into_inner().message().trim_end().to_string();
            if follows_from_removal(keys.as_deref(), &message, &removed) {
                break;
            }
            self.errors.push(ConfigError::new(at, message));
            match keys {
                Some(k) if !k.is_empty() && remove_key(&mut value, &k) => removed.push(k),
                _ => break,
            }
        }
        self.present.broken.insert(path.clone());
        None
    }

    fn named<T: DeserializeOwned>(
        &mut self,
        value: toml::Value,
        path: &KeyPath,
    ) -> BTreeMap<String, T> {
        match value {
            toml::Value::Table(items) => items
                .into_iter()
                .filter_map(|(name, item)| self.entry(item, &path.key(&name)).map(|v| (name, v)))
                .collect(),
            other => {
                self.errors.push(ConfigError::new(
                    path.clone(),
                    format!(
                        "expected a table of named entries, found {}",
                        other.type_str()
                    ),
                ));
                self.present.broken.insert(path.clone());
                BTreeMap::new()
            }
        }
    }

    /// Elements of an array of tables that could be read, their indices in the file, and how
    /// many there were.
    fn elements<T: DeserializeOwned>(
        &mut self,
        value: toml::Value,
        path: &KeyPath,
    ) -> (Vec<T>, Vec<usize>, usize) {
        match value {
            toml::Value::Array(items) => {
                let n = items.len();
                let (indices, parsed) = items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, item)| Some((i, self.entry(item, &path.index(i))?)))
                    .unzip();
                (parsed, indices, n)
            }
            other => {
                self.errors.push(ConfigError::new(
                    path.clone(),
                    format!(
                        "expected an array of tables (`[[{path}]]`), found {}",
                        other.type_str()
                    ),
                ));
                self.present.broken.insert(path.clone());
                (Vec::new(), Vec::new(), 0)
            }
        }
    }

    /// `[authorizers.NAME]`: the `type` key picks the struct the rest is read into, so errors
    /// keep their full key path (serde's internally tagged enums would lose it).
    fn authorizers(
        &mut self,
        value: toml::Value,
        path: &KeyPath,
    ) -> BTreeMap<String, AuthorizerConfig> {
        let tables: BTreeMap<String, toml::Table> = self.named(value, path);
        let mut out = BTreeMap::new();
        for (name, mut table) in tables {
            let path = path.key(&name);
            let kind = table.remove("type");
            let value = toml::Value::Table(table);
            let parsed = match kind.as_ref().and_then(|k| k.as_str()) {
                Some("jwt") => self
                    .entry(value, &path)
                    .map(|c| AuthorizerConfig::Jwt(Box::new(c))),
                Some("api_key") => self.entry(value, &path).map(AuthorizerConfig::ApiKey),
                Some("external") => self.entry(value, &path).map(AuthorizerConfig::External),
                _ => {
                    self.errors.push(ConfigError::new(
                        path.key("type"),
                        "expected one of `jwt`, `api_key`, `external`",
                    ));
                    self.present.broken.insert(path.clone());
                    None
                }
            };
            if let Some(parsed) = parsed {
                out.insert(name, parsed);
            }
        }
        out
    }
}

/// The path as table keys only; `None` when it goes through an array or an enum.
fn table_keys(path: &serde_path_to_error::Path) -> Option<Vec<String>> {
    path.iter()
        .map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// "missing field `x`" at the table we removed `x` from: a consequence, not a new problem.
fn follows_from_removal(keys: Option<&[String]>, message: &str, removed: &[Vec<String>]) -> bool {
    let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    else {
        return false;
    };
    let Some(parent) = keys else {
        return false;
    };
    removed.iter().any(|r| {
        r.len() == parent.len() + 1 && r[..parent.len()] == *parent && r[parent.len()] == field
    })
}

/// Remove the key at `keys` (all table keys) from `value`; false when it is not there.
fn remove_key(value: &mut toml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut table = value.as_table_mut();
    for k in parents {
        table = table
            .and_then(|t| t.get_mut(k))
            .and_then(|v| v.as_table_mut());
    }
    table.is_some_and(|t| t.remove(last).is_some())
}
