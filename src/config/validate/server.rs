//! `[server]`, `[[listeners]]`, `[admin]` and `[redis]`.

use super::{duration_in, Config, KeyPath, Present, Problems, HOUR, MINUTE, MS};
use std::collections::HashSet;
use std::time::Duration;

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    listeners(config, present, p);
    admin(config, present, p);
    server(config, p);
    if let Some(redis) = &config.redis {
        duration_in(
            p,
            KeyPath::top("redis").key("timeout"),
            redis.timeout,
            MS,
            MINUTE,
        );
        redis_target(redis, p);
    }
}

/// Exactly one of `url`, `cluster` and `sentinel`, each url one the client accepts.
fn redis_target(redis: &crate::config::RedisConfig, p: &mut Problems) {
    let at = KeyPath::top("redis");
    let set: Vec<&str> = [
        ("url", redis.url.is_some()),
        ("cluster", !redis.cluster.is_empty()),
        ("sentinel", redis.sentinel.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    match set.as_slice() {
        [] => p.at(
            at.clone(),
            "needs `url` (one Redis), `cluster` (the nodes of a Redis Cluster) or `sentinel` \
             (the sentinels watching a primary)",
        ),
        [_] => {}
        [.., last] => p.at(
            at.key(last),
            format!(
                "only one of `url`, `cluster` and `sentinel` can be set; found {}",
                set.join(", ")
            ),
        ),
    }
    let mut urls: Vec<(KeyPath, &crate::config::Secret)> = Vec::new();
    urls.extend(redis.url.iter().map(|url| (at.key("url"), url)));
    urls.extend(
        (redis.cluster.iter().enumerate()).map(|(i, node)| (at.key("cluster").index(i), node)),
    );
    if let Some(sentinel) = &redis.sentinel {
        let at = at.key("sentinel");
        if sentinel.master.trim().is_empty() {
            p.at(
                at.key("master"),
                "empty: give the name the sentinels monitor the primary under",
            );
        }
        if sentinel.nodes.is_empty() {
            p.at(at.key("nodes"), "at least one sentinel is required");
        }
        if sentinel.db < 0 {
            p.at(at.key("db"), "must not be negative");
        }
        urls.extend(
            (sentinel.nodes.iter().enumerate()).map(|(i, node)| (at.key("nodes").index(i), node)),
        );
    }
    // The parse error is not shown: it could echo the password in the url.
    for (path, url) in urls {
        if redis::Client::open(url.expose()).is_err() {
            p.at(path, "not a valid redis:// url");
        }
    }
}

fn listeners(config: &Config, present: &Present, p: &mut Problems) {
    let path = KeyPath::top("listeners");
    if present.listeners == 0 && !present.is_broken(&path) {
        p.at(
            path.clone(),
            "at least one `[[listeners]]` entry is required",
        );
    }
    let admin_ok = !present.is_broken(&KeyPath::top("admin"));
    let mut seen = HashSet::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let at = path.index(i).key("address");
        if !seen.insert(l.address) {
            p.at(at.clone(), format!("{} is listed twice", l.address));
        }
        if admin_ok && config.admin.enabled && l.address == config.admin.address {
            p.at(at, format!("{} is also the admin address", l.address));
        }
    }
}

fn admin(config: &Config, present: &Present, p: &mut Problems) {
    let admin = &config.admin;
    let path = KeyPath::top("admin");
    if present.is_broken(&path) {
        return;
    }
    let tokens = [
        ("read_token", &admin.read_token),
        ("admin_token", &admin.admin_token),
    ];
    if admin.enabled && !admin.address.ip().is_loopback() {
        for (key, token) in tokens {
            if token.is_none() {
                p.at(
                    path.key(key),
                    format!(
                        "required when the admin listener ({}) is not on loopback",
                        admin.address
                    ),
                );
            }
        }
    }
    for (key, token) in tokens {
        if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            p.at(path.key(key), "a token needs at least 16 characters");
        }
    }
    if let (Some(read), Some(write)) = (&admin.read_token, &admin.admin_token) {
        if read == write {
            p.at(path.key("read_token"), "must differ from admin.admin_token");
        }
    }
}

/// Shortest file-watch period: each tick reads and hashes the config and certificate files.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);

fn server(config: &Config, p: &mut Problems) {
    let s = &config.server;
    let path = KeyPath::top("server");
    // The certificate watch runs on the config watch's timer.
    if s.watch_config || config.tls.watch {
        duration_in(
            p,
            path.key("watch_interval"),
            s.watch_interval,
            MIN_WATCH_INTERVAL,
            HOUR,
        );
    }
    for (key, value) in [
        ("shutdown_delay", s.shutdown_delay),
        ("grace_period", s.grace_period),
        ("graceful_shutdown_timeout", s.graceful_shutdown_timeout),
    ] {
        duration_in(p, path.key(key), value, Duration::ZERO, HOUR);
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&s.log_level) {
        p.at(
            path.key("log_level"),
            format!("not a log filter such as `info` or `warn,gatehouse=debug`: {e}"),
        );
    }
    if s.threads > 1024 {
        p.at(
            path.key("threads"),
            "must be between 0 (one per core) and 1024",
        );
    }
    if s.tls_handshake_threads > 1024 {
        p.at(path.key("tls_handshake_threads"), "must be at most 1024");
    }
}
