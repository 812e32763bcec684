//! `[edge]`, `[listeners.edge]`, and the edge settings of hosts and routes.

use super::{duration_in, Config, KeyPath, Present, Problems, HOUR, MINUTE, MS};
use crate::config::parse_cidr;
use crate::config::EdgeLimits;
use std::time::Duration;

/// Pingora refuses request heads over 1 MiB and more than 256 header fields itself.
const MAX_HEADER_BYTES: usize = 1024 * 1024;
const MAX_HEADERS: usize = 256;

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    let top = KeyPath::top("edge");
    let edge = &config.edge;
    ip_list(p, top.key("trusted_proxies"), &edge.trusted_proxies);
    ip_list(p, top.key("ip_allow"), &edge.ip_allow);
    ip_list(p, top.key("ip_deny"), &edge.ip_deny);
    limits(p, &top, &edge.limits(), |_| true);
    duration_in(
        p,
        top.key("body_timeout"),
        edge.body_timeout,
        100 * MS,
        HOUR,
    );

    for (i, listener) in config.listeners.iter().enumerate() {
        let at = KeyPath::top("listeners").index(i);
        let e = &listener.edge;
        let at = at.key("edge");
        if let Some(list) = &e.ip_allow {
            ip_list(p, at.key("ip_allow"), list);
        }
        if let Some(list) = &e.ip_deny {
            ip_list(p, at.key("ip_deny"), list);
        }
        // Only what the listener sets itself: `[edge]`'s values were reported above.
        let own = |key: &str| match key {
            "header_timeout" => e.header_timeout.is_some(),
            "keepalive_timeout" => e.keepalive_timeout.is_some(),
            "max_requests_per_connection" => e.max_requests_per_connection.is_some(),
            "max_header_bytes" => e.max_header_bytes.is_some(),
            "max_headers" => e.max_headers.is_some(),
            "max_uri_bytes" => e.max_uri_bytes.is_some() || e.max_header_bytes.is_some(),
            _ => false,
        };
        limits(p, &at, &e.limits(&edge.limits()), own);
    }
    for (name, host) in &config.hosts {
        let at = KeyPath::top("hosts").key(name);
        ip_list(p, at.key("ip_allow"), &host.ip_allow);
        ip_list(p, at.key("ip_deny"), &host.ip_deny);
    }
    for (i, route) in config.routes.iter().enumerate() {
        let at = KeyPath::top("routes").index(present.route_index.get(i).copied().unwrap_or(i));
        ip_list(p, at.key("ip_allow"), &route.ip_allow);
        ip_list(p, at.key("ip_deny"), &route.ip_deny);
        if let Some(t) = route.body_timeout {
            duration_in(p, at.key("body_timeout"), t, 100 * MS, HOUR);
        }
    }
}

/// Each entry a CIDR or an address.
pub(super) fn ip_list(p: &mut Problems, path: KeyPath, entries: &[String]) {
    for (i, entry) in entries.iter().enumerate() {
        if let Err(e) = parse_cidr(entry) {
            p.at(path.index(i), e);
        }
    }
}

/// Ranges for one listener's limits (after its exceptions), reported under `at` for the keys
/// `report` selects.
fn limits(p: &mut Problems, at: &KeyPath, l: &EdgeLimits, report: impl Fn(&str) -> bool) {
    let mut problem = |key: &str, message: String| {
        if report(key) {
            p.at(at.key(key), message);
        }
    };
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if !(100 * MS..=10 * MINUTE).contains(&l.header_timeout) {
        problem(
            "header_timeout",
            format!(
                "must be between {} and {}",
                show(100 * MS),
                show(10 * MINUTE)
            ),
        );
    }
    if l.keepalive_timeout > HOUR {
        problem(
            "keepalive_timeout",
            format!("must be at most {}", show(HOUR)),
        );
    }
    if l.max_requests_per_connection == 0 {
        problem("max_requests_per_connection", "must be at least 1".into());
    }
    if !(1024..=MAX_HEADER_BYTES).contains(&l.max_header_bytes) {
        problem(
            "max_header_bytes",
            format!("must be between 1024 and {MAX_HEADER_BYTES}"),
        );
    }
    if !(1..=MAX_HEADERS).contains(&l.max_headers) {
        problem(
            "max_headers",
            format!("must be between 1 and {MAX_HEADERS}"),
        );
    }
    if l.max_uri_bytes < 64 || l.max_uri_bytes > l.max_header_bytes {
        problem(
            "max_uri_bytes",
            format!(
                "must be between 64 and max_header_bytes ({})",
                l.max_header_bytes
            ),
        );
    }
}
