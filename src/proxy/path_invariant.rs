//! The strict-path invariant, as a property: no spelling of a path reaches an upstream
//! through a route other than the one its normalized form selects, whatever liberties the
//! upstream takes when it reads the path (decoding `%2F`, treating `\` as `/`, dropping `;`
//! parameters, trimming whitespace, matching case-insensitively when the route says so).
//!
//! Test code only (`#[cfg(test)] mod path_invariant` in `proxy`), hence its `unwrap`s.

use super::decide;
use crate::config;
use crate::edge::path;
use crate::snapshot::{compile, Registries, Snapshot};
use pingora::http::RequestHeader;
use proptest::prelude::*;

fn snapshot(case_insensitive: bool) -> Snapshot {
    let text = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:1"
        [upstreams.a]
        targets = [{{ address = "127.0.0.1:2" }}]
        [[routes]]
        name = "public"
        path_prefix = "/"
        upstream = "a"
        [[routes]]
        name = "private"
        path_prefix = "/private"
        upstream = "a"
        case_insensitive = {case_insensitive}
        "#
    );
    let cfg = config::parse(&text).unwrap();
    let reg = Registries::new().unwrap();
    compile(&cfg, &text, &reg).unwrap()
}

/// The route serving `raw`, and the path the upstream gets; `None` when the gateway refuses.
fn gateway(s: &Snapshot, raw: &str) -> Option<(String, String)> {
    let mut req = RequestHeader::build("GET", raw.as_bytes(), None).ok()?;
    req.insert_header("host", "api.example.com").ok()?;
    let routed = decide::route_request(s, &req, Some("api.example.com")).ok()?;
    path::check(decide::raw_path(&req), routed.route.edge.path_allow).ok()?;
    let sent = match &routed.upstream_uri {
        Some(uri) => uri.path().to_string(),
        None => req.uri.path().to_string(),
    };
    Some((routed.route.name.clone(), sent))
}

/// How a lenient upstream might read `path`: every escape decoded, `\` as `/`, `;` parameters
/// dropped, whitespace trimmed from segment ends, dot segments resolved, optionally in lower
/// case.
fn lenient_reading(path: &str, lowercase: bool) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                decoded.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    // Overlong `/` (C0 AF, E0 80 AF) as a lax decoder reads it.
    let text = String::from_utf8_lossy(&decoded)
        .replace('\\', "/")
        .replace("\u{FFFD}\u{FFFD}", "/");
    let mut out: Vec<String> = Vec::new();
    for segment in text.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        let segment = segment.trim_end_matches([' ', '\t', '\0', '\n']);
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(if lowercase {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }),
        }
    }
    format!("/{}", out.join("/"))
}

fn pieces() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("private"),
        Just("PRIVATE"),
        Just("Private"),
        Just("public"),
        Just("%2F"),
        Just("%2f"),
        Just("\\"),
        Just("%5C"),
        Just(";x=1"),
        Just("%00"),
        Just("%0A"),
        Just("%20"),
        Just("%09"),
        Just(".."),
        Just("."),
        Just("%2E"),
        Just("%2e%2e"),
        Just("%C0%AF"),
        Just("%E0%80%AF"),
        Just("%70rivate"),
        Just("%72"),
        Just("x"),
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|v| format!("/{}", v.concat()))
}

fn under_private(p: &str) -> bool {
    p == "/private" || p.starts_with("/private/")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn no_spelling_reaches_private_through_the_public_route(raw in pieces()) {
        for case_insensitive in [false, true] {
            let s = snapshot(case_insensitive);
            let Some((route, sent)) = gateway(&s, &raw) else { continue };
            let reading = lenient_reading(&sent, case_insensitive);
            if under_private(&reading) {
                prop_assert_eq!(
                    route.as_str(), "private",
                    "{} was sent as {} (read as {}) through {}", raw, sent, reading, route
                );
            }
        }
    }
}

#[test]
fn the_issue_spellings_are_refused_or_routed_to_private() {
    let s = snapshot(true);
    for raw in [
        "/private;x=1",
        "/private%2Fx",
        "/%2Fprivate",
        "/PRIVATE",
        "/public%5C..%5Cprivate",
        "/public/..%2Fprivate",
        "/private%00",
        "/private%20",
        "/%C0%AFprivate",
    ] {
        match gateway(&s, raw) {
            None => {}
            Some((route, _)) => assert_eq!(route, "private", "{raw}"),
        }
    }
}
