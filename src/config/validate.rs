//! Semantic checks that serde cannot express: cross references, uniqueness, value ranges.
//! Every check pushes onto one error list so `gatehouse check` reports all problems in one run.

use super::{
    Balance, Config, ConfigError, HealthCheckConfig, LimitConfig, RouteConfig, UpstreamConfig,
};
use crate::host::HostPattern;
use crate::urlpath::normalize_path;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

pub(super) fn validate(config: &Config, errors: &mut Vec<ConfigError>) {
    validate_listeners(config, errors);
    for (name, pool) in &config.upstreams {
        validate_upstream(&format!("upstreams.{name}"), pool, errors);
    }
    // Authorizer names are metric labels; limit names are also quoted in RateLimit headers.
    for name in config.authorizers.keys() {
        check_token_name(&format!("authorizers.{name}"), "authorizer", name, errors);
    }
    for (name, limit) in &config.limits {
        let path = format!("limits.{name}");
        check_token_name(&path, "limit", name, errors);
        validate_limit(&path, limit, errors);
        if limit.backend == super::LimitBackend::Redis {
            if config.redis.is_none() {
                errors.push(ConfigError::new(
                    format!("{path}.backend"),
                    "`redis` needs a `[redis]` section with the url",
                ));
            }
            if limit.concurrency.is_some() {
                errors.push(ConfigError::new(
                    format!("{path}.backend"),
                    "concurrency limits are per instance (`local`) only",
                ));
            }
        }
    }
    if let Some(redis) = &config.redis {
        require_positive("redis.timeout", redis.timeout, errors);
        // The parse error is not shown: it could echo the password in the url.
        if redis::Client::open(redis.url.expose()).is_err() {
            errors.push(ConfigError::new("redis.url", "not a valid redis:// url"));
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(first) = names.insert(route.name.as_str(), i) {
            errors.push(ConfigError::new(
                format!("{path}.name"),
                format!(
                    "duplicate route name {:?} (also routes[{first}])",
                    route.name
                ),
            ));
        }
        validate_route(&path, route, config, errors);
    }
    check_overlapping_routes(&config.routes, errors);
}

/// Names that go into headers and metric labels: letters, digits, `_`, `-`, `.`.
fn check_token_name(path: &str, what: &str, name: &str, errors: &mut Vec<ConfigError>) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        errors.push(ConfigError::new(
            path,
            format!("{what} names may only use letters, digits, `_`, `-` and `.`"),
        ));
    }
}

fn validate_listeners(config: &Config, errors: &mut Vec<ConfigError>) {
    if config.listeners.is_empty() {
        errors.push(ConfigError::new(
            "listeners",
            "at least one `[[listeners]]` entry is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if !seen.insert(l.address) {
            errors.push(ConfigError::new(
                format!("listeners[{i}].address"),
                format!("{} is listed twice", l.address),
            ));
        }
        if config.admin.enabled && l.address == config.admin.address {
            errors.push(ConfigError::new(
                format!("listeners[{i}].address"),
                format!("{} is also the admin address", l.address),
            ));
        }
    }
    let admin = &config.admin;
    if admin.enabled && !admin.address.ip().is_loopback() {
        for (key, token) in [
            ("read_token", &admin.read_token),
            ("admin_token", &admin.admin_token),
        ] {
            if token.is_none() {
                errors.push(ConfigError::new(
                    format!("admin.{key}"),
                    format!(
                        "required when the admin listener ({}) is not on loopback",
                        admin.address
                    ),
                ));
            }
        }
    }
    for (key, token) in [
        ("read_token", &admin.read_token),
        ("admin_token", &admin.admin_token),
    ] {
        if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            errors.push(ConfigError::new(
                format!("admin.{key}"),
                "a token needs at least 16 characters",
            ));
        }
    }
    if let (Some(read), Some(write)) = (&admin.read_token, &admin.admin_token) {
        if read == write {
            errors.push(ConfigError::new(
                "admin.read_token",
                "must differ from admin.admin_token",
            ));
        }
    }
    if config.server.watch_config {
        require_positive(
            "server.watch_interval",
            config.server.watch_interval,
            errors,
        );
    }
    if config.server.threads > 1024 {
        errors.push(ConfigError::new(
            "server.threads",
            "must be between 0 (one per core) and 1024",
        ));
    }
}

fn validate_upstream(path: &str, pool: &UpstreamConfig, errors: &mut Vec<ConfigError>) {
    if pool.targets.is_empty() {
        errors.push(ConfigError::new(
            format!("{path}.targets"),
            "a pool needs at least one target",
        ));
    }
    for (i, t) in pool.targets.iter().enumerate() {
        if t.weight == 0 || t.weight > 1000 {
            errors.push(ConfigError::new(
                format!("{path}.targets[{i}].weight"),
                "must be between 1 and 1000",
            ));
        }
        if t.address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            errors.push(ConfigError::new(
                format!("{path}.targets[{i}].address"),
                format!("{:?} is not `host:port`", t.address),
            ));
        }
    }
    match (pool.balance, &pool.hash_key) {
        (Balance::RoundRobin, Some(_)) => errors.push(ConfigError::new(
            format!("{path}.hash_key"),
            "only used with balance = \"consistent_hash\"",
        )),
        _ => {}
    }
    for (key, value) in [
        ("connect_timeout", pool.connect_timeout),
        ("read_timeout", pool.read_timeout),
        ("write_timeout", pool.write_timeout),
    ] {
        require_positive(&format!("{path}.{key}"), value, errors);
    }
    if let Some(hc) = &pool.health_check {
        validate_health_check(&format!("{path}.health_check"), hc, errors);
    }
    if pool.passive.max_fails > 0 {
        require_positive(
            &format!("{path}.passive.fail_timeout"),
            pool.passive.fail_timeout,
            errors,
        );
    }
}

fn validate_limit(path: &str, limit: &LimitConfig, errors: &mut Vec<ConfigError>) {
    let kinds = [
        limit.rate.is_some(),
        limit.quota.is_some(),
        limit.concurrency.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        errors.push(ConfigError::new(
            path,
            "set exactly one of `rate`, `quota`, `concurrency`",
        ));
    }
    for (key, value) in [
        ("rate", limit.rate),
        ("quota", limit.quota),
        ("concurrency", limit.concurrency),
    ] {
        if value == Some(0) {
            errors.push(ConfigError::new(
                format!("{path}.{key}"),
                "must be at least 1",
            ));
        }
    }
    if limit.quota.is_some() != limit.window.is_some() {
        errors.push(ConfigError::new(
            format!("{path}.window"),
            "`quota` and `window` (minute, hour, day, month) go together",
        ));
    }
    if limit.rate.is_some() && (limit.period.subsec_nanos() != 0 || limit.period.is_zero()) {
        // RateLimit-Policy states the window in whole seconds.
        errors.push(ConfigError::new(
            format!("{path}.period"),
            "must be a whole number of seconds, at least 1s",
        ));
    }
    if limit.burst > 1_000_000_000 {
        errors.push(ConfigError::new(
            format!("{path}.burst"),
            "must be at most 1000000000",
        ));
    }
    if limit.key.is_empty() {
        errors.push(ConfigError::new(
            format!("{path}.key"),
            "needs at least one part",
        ));
    }
    if limit.max_keys == 0 {
        errors.push(ConfigError::new(
            format!("{path}.max_keys"),
            "must be at least 1",
        ));
    }
}

fn validate_health_check(path: &str, hc: &HealthCheckConfig, errors: &mut Vec<ConfigError>) {
    if !hc.path.starts_with('/') {
        errors.push(ConfigError::new(
            format!("{path}.path"),
            "must start with `/`",
        ));
    }
    require_positive(&format!("{path}.interval"), hc.interval, errors);
    require_positive(&format!("{path}.timeout"), hc.timeout, errors);
    for (key, value) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        if value == 0 {
            errors.push(ConfigError::new(
                format!("{path}.{key}"),
                "must be at least 1",
            ));
        }
    }
}

fn require_positive(path: &str, value: Duration, errors: &mut Vec<ConfigError>) {
    if value.is_zero() {
        errors.push(ConfigError::new(path, "must be greater than zero"));
    }
}

fn validate_route(path: &str, route: &RouteConfig, config: &Config, errors: &mut Vec<ConfigError>) {
    let mut err =
        |key: &str, msg: String| errors.push(ConfigError::new(format!("{path}{key}"), msg));
    if route.name.is_empty() {
        err(".name", "must not be empty".into());
    }
    for (i, host) in route.hosts.iter().enumerate() {
        if let Err(e) = HostPattern::parse(host) {
            err(&format!(".hosts[{i}]"), e);
        }
    }
    match (&route.path, &route.path_prefix) {
        (Some(_), Some(_)) => err("", "set either `path` or `path_prefix`, not both".into()),
        (Some(p), None) => check_config_path(p, &mut |m| err(".path", m)),
        (None, Some(p)) => check_config_path(p, &mut |m| err(".path_prefix", m)),
        (None, None) => {}
    }
    for (i, m) in route.methods.iter().enumerate() {
        if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
            err(
                &format!(".methods[{i}]"),
                format!(
                    "unknown method {m:?}, expected one of {}",
                    METHODS.join(", ")
                ),
            );
        }
    }
    match (&route.upstream, &route.respond) {
        (Some(_), Some(_)) => err("", "set either `upstream` or `respond`, not both".into()),
        (None, None) => err("", "a route needs `upstream` or `respond`".into()),
        (Some(name), None) if !config.upstreams.contains_key(name) => {
            err(".upstream", format!("unknown upstream {name:?}"))
        }
        _ => {}
    }
    if route.strip_prefix || route.prefix_rewrite.is_some() {
        if route.path_prefix.is_none() {
            err(
                "",
                "`strip_prefix` and `prefix_rewrite` need `path_prefix`".into(),
            );
        }
        if route.strip_prefix && route.prefix_rewrite.is_some() {
            err(
                "",
                "set either `strip_prefix` or `prefix_rewrite`, not both".into(),
            );
        }
        if route.respond.is_some() {
            err(
                "",
                "`strip_prefix` and `prefix_rewrite` only apply to `upstream` routes".into(),
            );
        }
    }
    for (i, name) in route.limits.iter().enumerate() {
        if !config.limits.contains_key(name) {
            err(&format!(".limits[{i}]"), format!("unknown limit {name:?}"));
        }
    }
    if let Some(p) = &route.prefix_rewrite {
        check_config_path(p, &mut |m| err(".prefix_rewrite", m));
    }
    if let Some(respond) = &route.respond {
        if !(200..=599).contains(&respond.status) {
            err(".respond.status", "must be between 200 and 599".into());
        }
        for (name, value) in &respond.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                err(
                    &format!(".respond.headers.{name}"),
                    "invalid header name".into(),
                );
            } else if http::HeaderValue::from_str(value).is_err() {
                err(
                    &format!(".respond.headers.{name}"),
                    "invalid header value".into(),
                );
            }
        }
    }
}

fn check_config_path(p: &str, err: &mut dyn FnMut(String)) {
    if !p.starts_with('/') {
        err("must start with `/`".into());
    } else if p.contains(['?', '#']) {
        err("must not contain `?` or `#`".into());
    } else if normalize_path(p.as_bytes()).as_deref() != Some(p.as_bytes()) {
        err(format!(
            "{p:?} is not in normalized form (no `.`/`..` segments, `//` or %-encoded \
             unreserved characters); requests are matched after normalization"
        ));
    }
}

/// Two routes with the same host, path and method can never both match: the second is dead
/// configuration, almost always a copy-paste mistake.
fn check_overlapping_routes(routes: &[RouteConfig], errors: &mut Vec<ConfigError>) {
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let path_key = match (&route.path, &route.path_prefix) {
            (Some(p), _) => format!("={p}"),
            (None, Some(p)) => format!("^{}", crate::urlpath::trim_prefix(p)),
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
                if let Some(&first) = seen.get(&key) {
                    if first != i {
                        errors.push(ConfigError::new(
                            format!("routes[{i}]"),
                            format!(
                                "matches the same host, path and method as routes[{first}] \
                                 ({:?}), so it could never be selected",
                                routes[first].name
                            ),
                        ));
                        break 'outer;
                    }
                } else {
                    seen.insert(key, i);
                }
            }
        }
    }
}
