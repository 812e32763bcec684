//! Configuration: the TOML file format (`types`), loading with every error reported at once
//! (this module), and semantic checks (`validate`).
//!
//! Each top-level section and each element of `routes` and `upstreams` is deserialized on its
//! own, so one typo does not hide the problems after it.

mod types;
mod validate;
mod values;

pub use types::*;
pub use values::{HashKey, KeyPart, Window};

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file, located by its key path (`routes[2].upstream`) and,
/// for syntax errors, by line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
    pub line_col: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
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
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
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

impl std::error::Error for ConfigErrors {}

/// Read, parse and validate the file at `path`.
pub fn load(path: &Path) -> Result<(Config, String), ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(vec![ConfigError::new("", format!("cannot read file: {e}"))]))?;
    let config = parse(&text).map_err(fail)?;
    Ok((config, text))
}

/// Parse and validate configuration text.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line_col = e.span().map(|span| line_col(text, span.start));
        vec![ConfigError {
            path: String::new(),
            message: format!("syntax error: {}", e.message().trim_end()),
            line_col,
        }]
    })?;

    let mut errors = Vec::new();
    let mut config = Config::default();
    for (key, value) in table {
        match key.as_str() {
            "server" => set(&mut config.server, section(value, "server", &mut errors)),
            "admin" => set(&mut config.admin, section(value, "admin", &mut errors)),
            "access_log" => set(
                &mut config.access_log,
                section(value, "access_log", &mut errors),
            ),
            "listeners" => config.listeners = elements(value, "listeners", &mut errors),
            "routes" => config.routes = elements(value, "routes", &mut errors),
            "upstreams" => config.upstreams = named(value, "upstreams", &mut errors),
            "limits" => config.limits = named(value, "limits", &mut errors),
            "redis" => config.redis = section(value, "redis", &mut errors),
            "authorizers" => config.authorizers = authorizers(value, &mut errors),
            "certificates" => config.certificates = named(value, "certificates", &mut errors),
            "tls" => set(&mut config.tls, section(value, "tls", &mut errors)),
            "hosts" => config.hosts = named(value, "hosts", &mut errors),
            _ => errors.push(ConfigError::new(
                key.as_str(),
                "unknown key, expected one of `server`, `listeners`, `admin`, `access_log`, \
                 `upstreams`, `limits`, `redis`, `authorizers`, `certificates`, `tls`, `hosts`, \
                 `routes`",
            )),
        }
    }
    // Semantic checks on a half-parsed file would mostly report follow-on errors
    // (e.g. a route naming a pool that failed to parse), so they wait for a clean parse.
    if errors.is_empty() {
        validate::validate(&config, &mut errors);
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn section<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map_err(|e| {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            errors.push(ConfigError::new(full, e.into_inner().message().trim_end()));
        })
        .ok()
}

/// A table of named entries (`[upstreams.NAME]`, `[limits.NAME]`), each checked on its own.
fn named<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> std::collections::BTreeMap<String, T> {
    match value {
        toml::Value::Table(items) => items
            .into_iter()
            .filter_map(|(name, item)| {
                section(item, &format!("{path}.{name}"), errors).map(|v| (name, v))
            })
            .collect(),
        other => {
            errors.push(ConfigError::new(
                path,
                format!(
                    "expected a table of named entries, found {}",
                    other.type_str()
                ),
            ));
            Default::default()
        }
    }
}

/// `[authorizers.NAME]`: the `type` key picks the struct the rest is read into, so errors
/// keep their full key path (serde's internally tagged enums would lose it).
fn authorizers(
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> std::collections::BTreeMap<String, AuthorizerConfig> {
    let tables: std::collections::BTreeMap<String, toml::Value> =
        named(value, "authorizers", errors);
    let mut out = std::collections::BTreeMap::new();
    for (name, item) in tables {
        let path = format!("authorizers.{name}");
        let toml::Value::Table(mut table) = item else {
            errors.push(ConfigError::new(path, "expected a table"));
            continue;
        };
        let kind = table.remove("type");
        let value = toml::Value::Table(table);
        let parsed = match kind.as_ref().and_then(|k| k.as_str()) {
            Some("jwt") => {
                section(value, &path, errors).map(|c| AuthorizerConfig::Jwt(Box::new(c)))
            }
            Some("api_key") => section(value, &path, errors).map(AuthorizerConfig::ApiKey),
            Some("external") => section(value, &path, errors).map(AuthorizerConfig::External),
            _ => {
                errors.push(ConfigError::new(
                    format!("{path}.type"),
                    "expected one of `jwt`, `api_key`, `external`",
                ));
                None
            }
        };
        if let Some(parsed) = parsed {
            out.insert(name, parsed);
        }
    }
    out
}

fn elements<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<T> {
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| section(item, &format!("{path}[{i}]"), errors))
            .collect(),
        other => {
            errors.push(ConfigError::new(
                path,
                format!(
                    "expected an array of tables (`[[{path}]]`), found {}",
                    other.type_str()
                ),
            ));
            Vec::new()
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        parse(text)
            .expect_err("config should be invalid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let errs = errors_of("[server]\nthreads = 2\n[[routes]\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("line 3, column"), "{errs:?}");
    }

    #[test]
    fn unknown_keys_are_reported_everywhere_at_once() {
        let errs = errors_of(
            r#"
            [servr]
            [[listeners]]
            address = "127.0.0.1:1"
            [upstreams.a]
            targets = [{ address = "127.0.0.1:2" }]
            rate_limt = 3
            [[routes]]
            name = "r"
            upstream = "a"
            pathprefix = "/x"
            "#,
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("servr: unknown key")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("upstreams.a.rate_limt: unknown field `rate_limt`")));
        assert!(errs
            .iter()
            .any(|e| e
                .starts_with("routes[0].pathprefix: unknown field `pathprefix`, expected one of")));
    }

    #[test]
    fn type_errors_name_the_nested_key() {
        let errs = errors_of(
            r#"
            [[listeners]]
            address = "127.0.0.1:1"
            [upstreams.a]
            targets = [{ address = "127.0.0.1:2", weight = "heavy" }]
            [upstreams.b]
            targets = [{ address = "127.0.0.1:2" }]
            connect_timeout = "soon"
            "#,
        );
        assert_eq!(
            errs,
            [
                "upstreams.a.targets[0].weight: invalid type: string \"heavy\", expected u32",
                "upstreams.b.connect_timeout: invalid value: string \"soon\", expected a duration"
            ]
        );
    }

    #[test]
    fn semantic_errors_are_all_listed_with_paths() {
        let errs = errors_of(
            r#"
            [[listeners]]
            address = "127.0.0.1:1"
            [upstreams.a]
            targets = []
            [[routes]]
            name = "r"
            upstream = "mian"
            [[routes]]
            name = "r"
            path = "/x/../y"
            methods = ["FETCH"]
            respond = { status = 99 }
            "#,
        );
        assert_eq!(
            errs,
            [
                "upstreams.a.targets: a pool needs at least one target",
                "routes[0].upstream: unknown upstream \"mian\"",
                "routes[1].name: duplicate route name \"r\" (also routes[0])",
                "routes[1].path: \"/x/../y\" is not in normalized form (no `.`/`..` segments, \
                 `//` or %-encoded unreserved characters); requests are matched after normalization",
                "routes[1].methods[0]: unknown method \"FETCH\", expected one of GET, HEAD, POST, \
                 PUT, DELETE, PATCH, OPTIONS, TRACE",
                "routes[1].respond.status: must be between 200 and 599",
            ]
        );
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let errs = errors_of(
            r#"
            [[listeners]]
            address = "127.0.0.1:1"
            [[routes]]
            name = "a"
            hosts = ["api.example.com"]
            path_prefix = "/v1/"
            respond = {}
            [[routes]]
            name = "b"
            hosts = ["API.example.com"]
            path_prefix = "/v1"
            respond = {}
            "#,
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("routes[1]: matches the same host, path and method as routes[0]")
        );
    }
}
