//! `[upstreams.NAME]`: targets, balancing, timeouts, health checks, TLS.

use super::{display_name, duration_in, Config, KeyPath, Present, Problems, DAY, HOUR, MINUTE, MS};
use crate::config::{Balance, HealthCheckConfig, UpstreamConfig, UpstreamTlsConfig};
use std::net::IpAddr;
use std::time::Duration;

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    let top = KeyPath::top("upstreams");
    for name in &present.upstreams {
        display_name(p, top.key(name), "upstream", name);
    }
    for (name, pool) in &config.upstreams {
        upstream(p, &top.key(name), pool);
    }
}

fn upstream(p: &mut Problems, path: &KeyPath, pool: &UpstreamConfig) {
    super::transforms::hide_headers(p, path, &pool.hide_headers);
    if pool.targets.is_empty() {
        p.at(path.key("targets"), "a pool needs at least one target");
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in pool.targets.iter().enumerate() {
        let at = path.key("targets").index(i);
        // Different names for one address are found when they are resolved.
        if !seen.insert(t.address.to_ascii_lowercase()) {
            p.at(
                at.key("address"),
                format!("{:?} is listed twice", t.address),
            );
        }
        if t.weight == 0 || t.weight > 1000 {
            p.at(at.key("weight"), "must be between 1 and 1000");
        }
        let port_ok = t
            .address
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok_and(|n| n > 0));
        if !port_ok {
            p.at(
                at.key("address"),
                format!("{:?} is not `host:port`", t.address),
            );
        }
    }
    if let (Balance::RoundRobin, Some(_)) = (pool.balance, &pool.hash_key) {
        p.at(
            path.key("hash_key"),
            "only used with balance = \"consistent_hash\"",
        );
    }
    for (key, value) in [
        ("connect_timeout", pool.connect_timeout),
        ("read_timeout", pool.read_timeout),
        ("write_timeout", pool.write_timeout),
    ] {
        duration_in(p, path.key(key), value, MS, DAY);
    }
    duration_in(
        p,
        path.key("idle_timeout"),
        pool.idle_timeout,
        Duration::ZERO,
        DAY,
    );
    if let Some(hc) = &pool.health_check {
        health_check(p, &path.key("health_check"), hc);
    }
    if pool.passive.max_fails > 0 {
        duration_in(
            p,
            path.key("passive").key("fail_timeout"),
            pool.passive.fail_timeout,
            MS,
            HOUR,
        );
    }
    if let Some(tls) = &pool.tls {
        upstream_tls(p, &path.key("tls"), tls, pool);
    }
}

/// Shortest interval between two checks of one target: the scheduler ticks every 50 ms, and
/// faster checks make a target flap between healthy and unhealthy on one slow answer.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

fn health_check(p: &mut Problems, path: &KeyPath, hc: &HealthCheckConfig) {
    if !hc.path.starts_with('/') {
        p.at(path.key("path"), "must start with `/`");
    }
    duration_in(
        p,
        path.key("interval"),
        hc.interval,
        MIN_CHECK_INTERVAL,
        HOUR,
    );
    duration_in(p, path.key("timeout"), hc.timeout, MS, MINUTE);
    for (key, value) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        if value == 0 || value > 1000 {
            p.at(path.key(key), "must be between 1 and 1000");
        }
    }
}

fn upstream_tls(p: &mut Problems, path: &KeyPath, c: &UpstreamTlsConfig, pool: &UpstreamConfig) {
    let first = pool.targets.first().map_or("", |t| t.address.as_str());
    let host = crate::host::target_host(first);
    match &c.sni {
        // Pingora turns verification off for an empty SNI.
        Some(s) if s.is_empty() && c.verify => p.at(
            path.key("sni"),
            "an empty SNI turns certificate verification off; name the host (or set \
             verify = false)",
        ),
        None if c.verify && host.parse::<IpAddr>().is_ok() => p.at(
            path.key("sni"),
            "targets are IP addresses: set the name their certificate is for",
        ),
        _ => {}
    }
    if c.client_cert.is_some() != c.client_key.is_some() {
        p.at(
            path.key("client_cert"),
            "`client_cert` and `client_key` go together",
        );
    }
}
