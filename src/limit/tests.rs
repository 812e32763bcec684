// Unit tests of the parent module, compiled only under #[cfg(test)] (see `mod tests;`).
use super::*;
use crate::config::LimitConfig;
use crate::observe::metrics::Metrics;
use futures_util::FutureExt;

/// Local policies never wait, so their check completes on the first poll.
fn check(
    policies: &[Arc<Policy>],
    input: &LimitInput<'_>,
    now: u64,
    state: &mut LimitState,
) -> Result<(), Box<LimitRejection>> {
    super::check(policies, input, now, state)
        .now_or_never()
        .expect("local checks do not wait")
}

const SEC: u64 = 1_000_000_000;

fn policy(toml: &str, registry: &LimitRegistry) -> Arc<Policy> {
    let config: LimitConfig = toml::from_str(toml).unwrap();
    let metrics = Metrics::new().unwrap();
    Arc::new(Policy::compile("p", &config, registry, None, metrics.policy("p")).unwrap())
}

fn input<'a>(ip: &str, headers: &'a HeaderMap) -> LimitInput<'a> {
    LimitInput {
        route: "r",
        client_ip: ip.parse().ok(),
        consumer: None,
        headers,
    }
}

#[test]
fn keys_are_counted_separately() {
    let reg = LimitRegistry::default();
    let p = [policy("rate = 1\nburst = 0", &reg)];
    let h = HeaderMap::new();
    let mut st = LimitState::default();
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut st).is_ok());
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut st).is_err());
    assert!(check(&p, &input("10.0.0.2", &h), SEC, &mut st).is_ok());
}

#[test]
fn header_keys_and_rejection_details() {
    let reg = LimitRegistry::default();
    let p = [policy(
        "rate = 2\nperiod = \"10s\"\nkey = [\"header:x-api-key\"]",
        &reg,
    )];
    let mut h = HeaderMap::new();
    h.insert("x-api-key", "k1".parse().unwrap());
    let mut st = LimitState::default();
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut st).is_ok());
    // Same key from another address: same counter.
    assert!(check(&p, &input("10.0.0.2", &h), SEC, &mut st).is_err());
    let err = check(&p, &input("10.0.0.3", &h), SEC, &mut st).unwrap_err();
    assert_eq!(err.retry_after_secs, 5, "one emission interval of 5 s");
    let report = err.report.unwrap();
    assert_eq!(report.policy, "\"p\";q=2;w=10");
    assert_eq!(report.state, "\"p\";r=0;t=5");
}

#[test]
fn dry_run_counts_but_allows() {
    let reg = LimitRegistry::default();
    let p = [policy("rate = 1\ndry_run = true", &reg)];
    let h = HeaderMap::new();
    let mut st = LimitState::default();
    for _ in 0..5 {
        assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut st).is_ok());
    }
    assert_eq!(p[0].metrics.dry_run_rejected.get(), 4);
}

#[test]
fn concurrency_slots_are_released_when_the_request_ends() {
    let reg = LimitRegistry::default();
    let p = [policy("concurrency = 1\nkey = [\"route\"]", &reg)];
    let h = HeaderMap::new();
    let mut first = LimitState::default();
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut first).is_ok());
    let mut second = LimitState::default();
    assert!(check(&p, &input("10.0.0.2", &h), SEC, &mut second).is_err());
    drop(first);
    assert!(check(&p, &input("10.0.0.2", &h), SEC, &mut second).is_ok());
}

#[test]
fn counters_survive_recompilation_under_the_same_name_once_adopted() {
    let reg = LimitRegistry::default();
    let h = HeaderMap::new();
    let mut st = LimitState::default();
    let p = [policy("rate = 1", &reg)];
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut st).is_ok());
    // Compiled but never put in use: the registry does not remember it.
    let unused = [policy("rate = 1\nburst = 0", &reg)];
    assert!(check(&unused, &input("10.0.0.1", &h), SEC, &mut st).is_ok());
    reg.adopt(p.iter().map(|p| &**p));
    let p = [policy("rate = 1\nburst = 0", &reg)];
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut st).is_err());
}

#[test]
fn rate_is_exact_under_contention_from_many_threads() {
    let reg = LimitRegistry::default();
    let p = Arc::new([policy(
        "rate = 1000\nperiod = \"1000s\"\nburst = 999\nkey = [\"route\"]",
        &reg,
    )]);
    let allowed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let h = HeaderMap::new();
                for _ in 0..500 {
                    let mut st = LimitState::default();
                    if check(&p[..], &input("10.0.0.1", &h), SEC, &mut st).is_ok() {
                        allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        allowed.into_inner(),
        1000,
        "4,000 attempts, a bucket of exactly 1,000"
    );
}

#[test]
fn ipv6_clients_are_counted_by_their_64_prefix() {
    let reg = LimitRegistry::default();
    let p = [policy("rate = 1\nburst = 0", &reg)];
    let h = HeaderMap::new();
    let mut st = LimitState::default();
    assert!(check(&p, &input("2001:db8:1:2::1", &h), SEC, &mut st).is_ok());
    assert!(
        check(&p, &input("2001:db8:1:2::beef", &h), SEC, &mut st).is_err(),
        "same /64, same bucket"
    );
    assert!(check(&p, &input("2001:db8:1:3::1", &h), SEC, &mut st).is_ok());
}

#[test]
fn a_prepended_header_value_does_not_select_the_bucket() {
    let reg = LimitRegistry::default();
    let p = [policy(
        "rate = 1\nburst = 0\nkey = [\"header:x-api-key\"]",
        &reg,
    )];
    let mut real = HeaderMap::new();
    real.insert("x-api-key", "real".parse().unwrap());
    let mut st = LimitState::default();
    assert!(check(&p, &input("10.0.0.1", &real), SEC, &mut st).is_ok());
    assert!(check(&p, &input("10.0.0.1", &real), SEC, &mut st).is_err());
    // Different full value list: a different key, never the bucket of `real` alone.
    let mut spoof = HeaderMap::new();
    spoof.append("x-api-key", "junk".parse().unwrap());
    spoof.append("x-api-key", "real".parse().unwrap());
    let k1 = KeyOf(&p[0].key, &input("10.0.0.1", &real)).bytes();
    let k2 = KeyOf(&p[0].key, &input("10.0.0.1", &spoof)).bytes();
    assert_ne!(k1, k2);
}

#[test]
fn held_concurrency_slots_are_never_evicted() {
    let reg = LimitRegistry::default();
    // One entry per shard: every new key in a shard competes with the held one.
    let p = [policy(
        &format!("concurrency = 1\nmax_keys = {}", crate::cache::SHARDS),
        &reg,
    )];
    let h = HeaderMap::new();
    let mut holder = LimitState::default();
    assert!(check(&p, &input("10.0.0.1", &h), SEC, &mut holder).is_ok());
    for i in 0..2_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i).to_string();
        let mut st = LimitState::default();
        let _ = check(&p, &input(&ip, &h), SEC, &mut st);
    }
    let mut again = LimitState::default();
    assert!(
        check(&p, &input("10.0.0.1", &h), SEC, &mut again).is_err(),
        "the held slot survived the flood"
    );
}

#[test]
fn a_changed_quota_window_starts_a_fresh_count() {
    let mut u = Usage::default();
    let t = 1_800_000_000 * SEC;
    for _ in 0..3 {
        quota::check(3, Window::Month, &mut u, t);
    }
    assert!(!quota::check(3, Window::Month, &mut u, t).allowed);
    assert!(
        quota::check(3, Window::Minute, &mut u, t).allowed,
        "new window size, new count"
    );
}

#[test]
fn policies_validation_refuses_do_not_compile_either() {
    let reg = LimitRegistry::default();
    let compile = |toml: &str| {
        let config: LimitConfig = toml::from_str(toml).unwrap();
        let metrics = Metrics::new().unwrap();
        Policy::compile("p", &config, &reg, None, metrics.policy("p")).err()
    };
    assert_eq!(
        compile("rate = 1\nbackend = \"redis\""),
        Some(PolicyError::NoRedis)
    );
    assert_eq!(compile("quota = 1"), Some(PolicyError::NotOneKind));
    assert_eq!(
        compile("concurrency = 1\nbackend = \"redis\""),
        Some(PolicyError::NoRedis),
        "without a client the backend is refused first"
    );
    let redis = Arc::new(
        redis::RedisLimiter::new(
            &redis::RedisTarget::Single("redis://127.0.0.1:1/".into()),
            std::time::Duration::from_millis(50),
            "t:",
        )
        .unwrap(),
    );
    let config: LimitConfig = toml::from_str("concurrency = 1\nbackend = \"redis\"").unwrap();
    let metrics = Metrics::new().unwrap();
    let shared = Policy::compile("p", &config, &reg, Some(&redis), metrics.policy("p"));
    assert_eq!(shared.err(), Some(PolicyError::SharedConcurrency));
}
