//! `request_headers` and `response_headers` of routes, and `hide_headers` of upstreams.

use super::{KeyPath, Problems};
use crate::config::HeaderTransformConfig;

/// Response headers the gateway sets or needs as they are.
const RESPONSE_PROTECTED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "trailer",
    "keep-alive",
    "x-request-id",
    "strict-transport-security",
    "ratelimit",
    "ratelimit-policy",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
];

/// Check one route's transforms.
pub(super) fn route(
    p: &mut Problems,
    path: &KeyPath,
    request: &HeaderTransformConfig,
    response: &HeaderTransformConfig,
) {
    transform(
        p,
        &path.key("request_headers"),
        request,
        super::GATEWAY_REQUEST_HEADERS,
    );
    // (Authorizers' identity headers are checked when the snapshot is compiled, where they
    // are known.)
    transform(
        p,
        &path.key("response_headers"),
        response,
        RESPONSE_PROTECTED,
    );
}

fn transform(p: &mut Problems, path: &KeyPath, t: &HeaderTransformConfig, protected: &[&str]) {
    let mut name = |at: KeyPath, name: &str| {
        let lower = name.to_ascii_lowercase();
        if super::header_name(p, at.clone(), name) && protected.contains(&lower.as_str()) {
            p.at(
                at,
                format!(
                    "{name:?} is set or needed by the gateway itself and cannot be transformed"
                ),
            );
        }
    };
    for (i, n) in t.remove.iter().enumerate() {
        name(path.key("remove").index(i), n);
    }
    for (from, to) in &t.rename {
        name(path.key("rename").key(from), from);
        name(path.key("rename").key(from), to);
    }
    for (key, map) in [("set", &t.set), ("add", &t.add)] {
        for n in map.keys() {
            name(path.key(key).key(n), n);
        }
    }
    for (key, map) in [("set", &t.set), ("add", &t.add)] {
        for (n, v) in map {
            if http::HeaderValue::from_str(v).is_err() {
                p.at(
                    path.key(key).key(n),
                    "the value has characters a header cannot carry",
                );
            }
        }
    }
}

/// `hide_headers` of an upstream: header names.
pub(super) fn hide_headers(p: &mut Problems, path: &KeyPath, names: &[String]) {
    for (i, n) in names.iter().enumerate() {
        super::header_name(p, path.key("hide_headers").index(i), n);
    }
}
