// Unit tests of the parent module, compiled only under #[cfg(test)] (see `mod tests;`).
use super::*;
use crate::config::{KeyPath, TargetConfig, UpstreamConfig};
use crate::observe::metrics::Metrics;

fn pool_config(balance: Balance, weights: &[u32]) -> UpstreamConfig {
    let toml = format!(
        "targets = [{}]\nbalance = \"{}\"",
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{{ address = \"127.0.0.1:{}\", weight = {w} }}", 10000 + i))
            .collect::<Vec<_>>()
            .join(", "),
        match balance {
            Balance::RoundRobin => "round_robin",
            Balance::ConsistentHash => "consistent_hash",
        }
    );
    let mut config: UpstreamConfig = toml::from_str(&toml).unwrap();
    config.passive.max_fails = 1;
    config
}

fn pool(balance: Balance, weights: &[u32]) -> Pool {
    let metrics = Metrics::new().unwrap();
    Pool::compile(
        "p",
        &KeyPath::top("upstreams").key("p"),
        &pool_config(balance, weights),
        &HealthRegistry::default(),
        metrics.upstream("p"),
    )
    .unwrap()
}

fn input<'a>(ip: &str, headers: &'a http::HeaderMap) -> SelectInput<'a> {
    SelectInput {
        client_ip: ip.parse().ok(),
        path: b"/",
        headers,
    }
}

#[test]
fn round_robin_follows_weights() {
    let p = pool(Balance::RoundRobin, &[1, 3]);
    let h = http::HeaderMap::new();
    let mut counts = [0; 2];
    for _ in 0..400 {
        counts[p.select(&input("10.0.0.1", &h), 0).unwrap()] += 1;
    }
    assert_eq!(counts, [100, 300]);
}

#[test]
fn unavailable_targets_get_no_traffic_and_none_left_means_none() {
    let p = pool(Balance::RoundRobin, &[1, 1, 1]);
    let h = http::HeaderMap::new();
    p.report_connect_failure(1);
    for _ in 0..50 {
        assert_ne!(p.select(&input("10.0.0.1", &h), 0), Some(1));
    }
    p.report_connect_failure(0);
    for _ in 0..20 {
        assert_eq!(p.select(&input("10.0.0.1", &h), 0), Some(2));
    }
    p.report_connect_failure(2);
    assert_eq!(p.select(&input("10.0.0.1", &h), 0), None);
}

#[test]
fn consistent_hash_is_sticky_and_moves_only_when_target_is_down() {
    let p = pool(Balance::ConsistentHash, &[1, 1, 1, 1]);
    let h = http::HeaderMap::new();
    let first = p.select(&input("192.0.2.7", &h), 0).unwrap();
    for _ in 0..20 {
        assert_eq!(p.select(&input("192.0.2.7", &h), 0), Some(first));
    }
    p.report_connect_failure(first);
    let second = p.select(&input("192.0.2.7", &h), 0).unwrap();
    assert_ne!(second, first);
}

#[test]
fn retry_excludes_the_failed_target_when_possible() {
    let p = pool(Balance::RoundRobin, &[1, 1]);
    let h = http::HeaderMap::new();
    for _ in 0..10 {
        assert_eq!(p.select(&input("10.0.0.1", &h), 0b1), Some(1));
    }
}

#[test]
fn retries_avoid_every_target_that_failed() {
    let p = pool(Balance::RoundRobin, &[1, 1, 1]);
    let h = http::HeaderMap::new();
    for _ in 0..10 {
        assert_eq!(p.select(&input("10.0.0.1", &h), 0b011), Some(2));
    }
    // All failed once: fall back to any available target rather than refusing.
    assert!(p.select(&input("10.0.0.1", &h), 0b111).is_some());
}

#[test]
fn hash_keys_parse() {
    assert_eq!(HashKey::parse("client_ip"), Ok(HashKey::ClientIp));
    assert_eq!(
        HashKey::parse("header:x-user"),
        Ok(HashKey::Header(http::HeaderName::from_static("x-user")))
    );
    assert!(HashKey::parse("cookie").is_err());
    assert!(HashKey::parse("header:bad header").is_err());
}

#[test]
fn unresolvable_target_is_a_config_error() {
    let mut config = pool_config(Balance::RoundRobin, &[1]);
    config.targets.push(TargetConfig {
        address: "no-such-host.invalid:80".into(),
        weight: 1,
    });
    let metrics = Metrics::new().unwrap();
    let err = Pool::compile(
        "p",
        &KeyPath::top("upstreams").key("p"),
        &config,
        &HealthRegistry::default(),
        metrics.upstream("p"),
    )
    .unwrap_err();
    assert_eq!(err.path.as_str(), "upstreams.p.targets[1].address");
}
