//! `[[routes]]`: matching, actions, rewrites, and the names they refer to.

use super::{display_name, transforms, Config, KeyPath, Present, Problems};
use crate::config::{AuthorizerConfig, RouteAuthConfig, RouteConfig};
use crate::host::HostPattern;
use crate::urlpath::{normalize_path, trim_prefix};
use std::collections::HashMap;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    let top = KeyPath::top("routes");
    // Routes with problems while reading are not in `config.routes`; report by file index.
    let index = |i: usize| present.route_index.get(i).copied().unwrap_or(i);
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let path = top.index(index(i));
        if let Some(first) = names.insert(route.name.as_str(), index(i)) {
            p.at(
                path.key("name"),
                format!(
                    "duplicate route name {:?} (also routes[{first}])",
                    route.name
                ),
            );
        }
        self::route(p, &path, route, config, present);
    }
    overlapping(p, &config.routes, &index);
}

fn route(
    p: &mut Problems,
    path: &KeyPath,
    route: &RouteConfig,
    config: &Config,
    present: &Present,
) {
    // Route names are metric labels and appear in logs and the admin API.
    display_name(p, path.key("name"), "route", &route.name);
    for (i, host) in route.hosts.iter().enumerate() {
        if let Err(e) = HostPattern::parse(host) {
            p.at(path.key("hosts").index(i), e);
        }
    }
    match (&route.path, &route.path_prefix) {
        (Some(_), Some(_)) => p.at(path.clone(), "set either `path` or `path_prefix`, not both"),
        (Some(v), None) => {
            config_path(p, path.key("path"), v);
            if v.contains(['{', '}']) {
                if let Err(e) = crate::urlpath::template::parse(v) {
                    p.at(
                        path.key("path"),
                        format!("{v:?} is not a path template: {e}"),
                    );
                }
                if route.case_insensitive {
                    p.at(
                        path.key("case_insensitive"),
                        "path templates match case-sensitively",
                    );
                }
            }
        }
        (None, Some(v)) => {
            config_path(p, path.key("path_prefix"), v);
            if v.contains(['{', '}']) {
                p.at(
                    path.key("path_prefix"),
                    "templates (`{name}`) are for `path`, not prefixes",
                );
            }
        }
        (None, None) => {}
    }
    for (i, m) in route.methods.iter().enumerate() {
        if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
            p.at(
                path.key("methods").index(i),
                format!(
                    "unknown method {m:?}, expected one of {}",
                    METHODS.join(", ")
                ),
            );
        }
    }
    match (&route.upstream, &route.respond) {
        (Some(_), Some(_)) => p.at(path.clone(), "set either `upstream` or `respond`, not both"),
        (None, None) => p.at(path.clone(), "a route needs `upstream` or `respond`"),
        (Some(name), None) if !present.upstreams.contains(name) => {
            p.at(path.key("upstream"), format!("unknown upstream {name:?}"))
        }
        _ => {}
    }
    if route.strip_prefix || route.prefix_rewrite.is_some() {
        if route.path_prefix.is_none() {
            p.at(
                path.clone(),
                "`strip_prefix` and `prefix_rewrite` need `path_prefix`",
            );
        }
        if route.strip_prefix && route.prefix_rewrite.is_some() {
            p.at(
                path.clone(),
                "set either `strip_prefix` or `prefix_rewrite`, not both",
            );
        }
        if route.respond.is_some() {
            p.at(
                path.clone(),
                "`strip_prefix` and `prefix_rewrite` only apply to `upstream` routes",
            );
        }
    }
    if let Some(v) = &route.prefix_rewrite {
        config_path(p, path.key("prefix_rewrite"), v);
    }
    transforms::route(p, path, &route.request_headers, &route.response_headers);
    if let Some(name) = route.cors.as_ref().filter(|n| !present.cors.contains(*n)) {
        p.at(path.key("cors"), format!("unknown CORS policy {name:?}"));
    }
    for (i, name) in route.limits.iter().enumerate() {
        if !present.limits.contains(name) {
            p.at(
                path.key("limits").index(i),
                format!("unknown limit {name:?}"),
            );
        }
    }
    if let (Some(name), None) = (config.per_consumer_limit(&route.limits), &route.auth) {
        p.at(
            path.key("limits"),
            format!("limit {name:?} counts per consumer, but the route has no `auth` to name one"),
        );
    }
    if let Some(auth) = &route.auth {
        route_auth(p, path, auth, config, present);
    }
    if let Some(respond) = &route.respond {
        let at = path.key("respond");
        if !(200..=599).contains(&respond.status) {
            p.at(at.key("status"), "must be between 200 and 599");
        }
        for (name, value) in &respond.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.at(at.key("headers").key(name), "invalid header name");
            } else if http::HeaderValue::from_str(value).is_err() {
                p.at(at.key("headers").key(name), "invalid header value");
            }
        }
    }
}

fn route_auth(
    p: &mut Problems,
    path: &KeyPath,
    auth: &RouteAuthConfig,
    config: &Config,
    present: &Present,
) {
    if !present.authorizers.contains(&auth.authorizer) {
        p.at(
            path.key("auth").key("authorizer"),
            format!("unknown authorizer {:?}", auth.authorizer),
        );
    }
    let not_jwt = config
        .authorizers
        .get(&auth.authorizer)
        .is_some_and(|a| !matches!(a, AuthorizerConfig::Jwt(_)));
    if not_jwt && (!auth.scopes.is_empty() || !auth.claims.is_empty()) {
        p.at(
            path.key("auth"),
            "`scopes` and `claims` need a jwt authorizer",
        );
    }
    for (i, s) in auth.scopes.iter().enumerate() {
        // RFC 6749 scope-token characters; also keeps the challenge header well formed.
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            p.at(
                path.key("auth").key("scopes").index(i),
                format!("{s:?} is not a valid scope"),
            );
        }
    }
    for claim in auth.claims.keys() {
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            p.at(
                path.key("auth").key("claims").key(claim),
                "not a claim name or dotted path",
            );
        }
    }
}

fn config_path(p: &mut Problems, path: KeyPath, v: &str) {
    if !v.starts_with('/') {
        p.at(path, "must start with `/`");
    } else if v.contains(['?', '#']) {
        p.at(path, "must not contain `?` or `#`");
    } else if normalize_path(v.as_bytes()).as_deref() != Some(v.as_bytes()) {
        p.at(
            path,
            format!(
                "{v:?} is not in normalized form (no `.`/`..` segments, `//` or %-encoded \
                 unreserved characters); requests are matched after normalization"
            ),
        );
    }
}

/// Two routes with the same host, path and method can never both match: the second is dead
/// configuration, almost always a copy-paste mistake.
fn overlapping(p: &mut Problems, routes: &[RouteConfig], index: &dyn Fn(usize) -> usize) {
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let path_key = match (&route.path, &route.path_prefix) {
            (Some(v), _) => format!("={v}"),
            (None, Some(v)) => format!("^{}", trim_prefix(v)),
            (None, None) => "^/".to_string(),
        };
        let hosts: Vec<String> = if route.hosts.is_empty() {
            vec![String::new()]
        } else {
            route.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        let methods: Vec<String> = if route.methods.is_empty() {
            vec!["*".to_string()]
        } else {
            route
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect()
        };
        'outer: for host in &hosts {
            for method in &methods {
                let key = (host.clone(), path_key.clone(), method.clone());
                match seen.get(&key) {
                    Some(&first) if first != i => {
                        p.at(
                            KeyPath::top("routes").index(index(i)),
                            format!(
                                "matches the same host, path and method as routes[{}] \
                                 ({:?}), so it could never be selected",
                                index(first),
                                routes[first].name
                            ),
                        );
                        break 'outer;
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(key, i);
                    }
                }
            }
        }
    }
}
