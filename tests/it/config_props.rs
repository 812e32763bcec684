//! Property: every config that `check` accepts compiles, and the gateway starts on it.
//! Configs are generated from pieces that are often wrong (bad names, durations out of range,
//! dangling references, conflicting options), so both sides of the check are exercised.

use crate::common::*;
use gatehouse::{config, snapshot};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

fn one_of(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(items)
}

/// Mostly `good`, sometimes `bad`: every piece is right often enough that whole configs pass.
fn mostly(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![9 => one_of(good), 1 => one_of(bad)]
}

fn name() -> impl Strategy<Value = &'static str> {
    mostly(&["a", "b", "c"], &["bad name", "x\u{202e}y", ""])
}

fn duration() -> impl Strategy<Value = &'static str> {
    mostly(
        &["1ms", "2s", "30s", "500ms"],
        &["0s", "1ns", "25h", "1000000000y"],
    )
}

fn upstream() -> impl Strategy<Value = String> {
    (
        name(),
        proptest::collection::vec(
            (one_of(&["127.0.0.1", "localhost", "[::1]"]), 0u32..3, prop_oneof![9 => 1u32..1001, 1 => Just(0u32)]),
            0..3,
        ),
        one_of(&["round_robin", "consistent_hash"]),
        proptest::option::weighted(0.3, mostly(&["client_ip", "path", "header:x-user"], &["cookie:x"])),
        duration(),
        proptest::option::of((duration(), duration(), mostly(&["/h"], &["h"]))),
    )
        .prop_map(|(name, targets, balance, hash_key, timeout, hc)| {
            let targets: Vec<String> = targets
                .iter()
                .map(|(host, port, weight)| {
                    // Names get ports of their own: two names for one address are only found
                    // by resolving them, which `check` does too, but it is not a syntax matter.
                    let port = if *host == "localhost" { 20 + port } else { 9 + port };
                    format!("{{ address = \"{host}:{port}\", weight = {weight} }}")
                })
                .collect();
            let mut s = format!(
                "[upstreams.{name:?}]\ntargets = [{}]\nbalance = \"{balance}\"\nconnect_timeout = \"{timeout}\"\n",
                targets.join(", ")
            );
            if let Some(k) = hash_key {
                s.push_str(&format!("hash_key = \"{k}\"\n"));
            }
            if let Some((interval, t, path)) = hc {
                s.push_str(&format!(
                    "health_check = {{ interval = \"{interval}\", timeout = \"{t}\", path = \"{path}\" }}\n"
                ));
            }
            s
        })
}

fn limit() -> impl Strategy<Value = String> {
    (
        name(),
        mostly(
            &[
                "rate = 10",
                "quota = 5\nwindow = \"day\"",
                "concurrency = 2",
            ],
            &["rate = 0", "quota = 5", "rate = 1\nquota = 1"],
        ),
        mostly(
            &["\"client_ip\"", "\"route\", \"header:x-k\"", "\"consumer\""],
            &["\"nope\""],
        ),
        mostly(&["1s", "2s", "60s"], &["1500ms", "2d"]),
    )
        .prop_map(|(name, kind, key, period)| {
            format!("[limits.{name:?}]\n{kind}\nkey = [{key}]\nperiod = \"{period}\"\n")
        })
}

fn authorizer() -> impl Strategy<Value = String> {
    (
        name(),
        prop_oneof![
            (mostly(&["bob", "carol"], &["", "al\u{7}ice"]), mostly(&["0123456789abcdefgh"], &["short"])).prop_map(
                |(consumer, key)| format!(
                    "type = \"api_key\"\nkeys = [{{ consumer = \"{consumer}\", key = \"{key}\" }}]\n"
                )
            ),
            (
                mostly(&["[\"HS256\"]", "[\"HS384\", \"HS512\"]"], &["[\"RS256\", \"HS256\"]", "[]", "[\"none\"]"]),
                mostly(&["0123456789abcdef0123456789abcdef"], &["short"]),
                mostly(&["{}", "{ sub = \"x-sub\" }"], &["{ sub = \"Content-Length\" }"]),
            )
                .prop_map(|(algs, secret, claims)| format!(
                    "type = \"jwt\"\nalgorithms = {algs}\nsecret = \"{secret}\"\nforward_claims = {claims}\n"
                )),
            (
                mostly(&["http://127.0.0.1:1/check", "https://auth.test/check"], &["http://example.com/check", "nope"]),
                duration()
            )
                .prop_map(|(url, timeout)| format!(
                    "type = \"external\"\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n"
                )),
        ],
    )
        .prop_map(|(name, body)| format!("[authorizers.{name:?}]\n{body}"))
}

fn route() -> impl Strategy<Value = String> {
    (
        mostly(&["r1", "r2", "r3"], &["bad\nname", ""]),
        mostly(
            &["path = \"/\"", "path_prefix = \"/a\"", "path = \"/b\"", ""],
            &["path_prefix = \"/a/../b\"", "path = \"a\""],
        ),
        mostly(
            &["", "methods = [\"GET\"]", "methods = [\"POST\", \"PUT\"]"],
            &["methods = [\"FETCH\"]"],
        ),
        prop_oneof![
            name().prop_map(|u| format!("upstream = {u:?}")),
            Just("respond = { status = 200, body = \"ok\" }".to_string()),
            Just("respond = { status = 204, headers = { x-a = \"1\" } }".to_string()),
            Just("respond = { status = 99 }".to_string()),
        ],
        proptest::option::weighted(0.3, name()),
        proptest::option::weighted(0.3, name()),
        mostly(
            &["", "hosts = [\"api.test\"]", "hosts = [\"*.test\"]"],
            &["hosts = [\"a b\"]"],
        ),
    )
        .prop_map(|(name, path, methods, action, limit, auth, hosts)| {
            let mut s =
                format!("[[routes]]\nname = {name:?}\n{path}\n{methods}\n{action}\n{hosts}\n");
            if let Some(l) = limit {
                s.push_str(&format!("limits = [{l:?}]\n"));
            }
            if let Some(a) = auth {
                s.push_str(&format!("auth = {a:?}\n"));
            }
            s
        })
}

fn host_policy() -> impl Strategy<Value = String> {
    (
        mostly(&["api.test", "*.test"], &["bad host"]),
        mostly(
            &["https_redirect = true", "hsts = { max_age = \"1d\" }"],
            &[
                "hsts = { max_age = \"1d\", preload = true }",
                "hsts = { max_age = \"1000000000y\" }",
            ],
        ),
    )
        .prop_map(|(name, body)| format!("[hosts.{name:?}]\n{body}\n"))
}

/// A config body without `[server]`, `[[listeners]]` and `[admin]` (the test harness adds them).
fn body() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(upstream(), 0..3),
        proptest::collection::vec(limit(), 0..2),
        proptest::collection::vec(authorizer(), 0..2),
        proptest::collection::vec(route(), 0..4),
        proptest::collection::vec(host_policy(), 0..2),
    )
        .prop_map(|(u, l, a, r, h)| [u, l, a, h, r].concat().join(""))
}

const LISTENER: &str =
    "[[listeners]]\naddress = \"127.0.0.1:1\"\n[admin]\naddress = \"127.0.0.1:2\"\n";

/// Generated bodies, from a fixed seed so failures reproduce.
fn runner(cases: u32) -> TestRunner {
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

#[test]
fn every_config_check_accepts_compiles() {
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    let rejected = std::sync::atomic::AtomicUsize::new(0);
    runner(400)
        .run(&body(), |body| {
            let text = format!("{LISTENER}{body}");
            match config::parse(&text) {
                Ok(config) => {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let registries = snapshot::Registries::new().unwrap();
                    let compiled = snapshot::compile(&config, &text, &registries);
                    prop_assert!(
                        compiled.is_ok(),
                        "accepted but does not compile: {:?}\n{text}",
                        compiled.err()
                    );
                }
                Err(errors) => {
                    rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Every problem names where it is, and none is reported twice.
                    let mut seen = std::collections::HashSet::new();
                    for e in &errors {
                        prop_assert!(seen.insert(e.to_string()), "reported twice: {e}\n{text}");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (a, r) = (accepted.into_inner(), rejected.into_inner());
    // The generator must exercise both outcomes, or the property says little.
    assert!(a >= 20 && r >= 20, "accepted {a}, rejected {r}");
}

#[test]
fn the_gateway_starts_on_accepted_configs() {
    let mut accepted: Vec<String> = Vec::new();
    let mut tree = runner(1);
    while accepted.len() < 3 {
        let body = body().new_tree(&mut tree).unwrap().current();
        if config::parse(&format!("{LISTENER}{body}")).is_ok() && body.contains("[[routes]]") {
            accepted.push(body);
        }
    }
    for body in accepted {
        // `start` waits until the gateway answers, and fails the test otherwise.
        let gw = Gateway::start(&body);
        drop(gw);
    }
}
