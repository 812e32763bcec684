//! Configuration: the TOML file format (`types`), typed values parsed while reading
//! (`values`), reading with every problem reported at once (`read`), and the one
//! validation pass (`validate`) that holds every check that needs neither the network nor
//! files other than the config.
//!
//! `check`, startup and every reload go through [`check`] (by way of `snapshot::load`): a file
//! that passes it only fails later on what reading files or resolving names reveals.

mod error;
mod read;
mod types;
mod validate;
mod values;

pub use error::{ConfigError, ConfigErrors, KeyPath, Problems};
pub use read::Present;
pub use types::*;
pub use values::{
    check_url, family, glob_to_regex, parse_cidr, CredentialSource, Family, HashKey, Header,
    JwtAlgorithm, KeyPart, Window,
};

/// Parse and validate configuration text, reporting every problem, each once.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    match check(text) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(errors),
    }
}

/// Every problem of the text, and the config as far as it could be read (`None` after a
/// syntax error). Entries with problems are left out of it, so the rest can still be checked
/// against files and name resolution.
pub fn check(text: &str) -> (Option<Config>, Vec<ConfigError>) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let e: toml::de::Error = e;
            let line_col = e.span().map(|span| line_col(text, span.start));
            let error = ConfigError {
                path: KeyPath::root(),
                message: format!("syntax error: {}", e.message().trim_end()),
                line_col,
            };
            return (None, vec![error]);
        }
    };
    let mut errors = Vec::new();
    let (config, present) = read::read(table, &mut errors);
    let mut problems = Problems::default();
    validate::validate(&config, &present, &mut problems);
    errors.extend(problems.into_vec());
    (Some(config), errors)
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
