//! `[apis.NAME]`: what can be checked without reading the document.

use super::{token_name, Config, KeyPath, Problems};
use crate::config::{MAX_CHECKED_RESPONSE_BYTES, MAX_VALIDATED_BODY_BYTES};

pub(super) fn validate(config: &Config, present: &crate::config::Present, p: &mut Problems) {
    let top = KeyPath::top("apis");
    for (name, api) in &config.apis {
        let path = top.key(name);
        token_name(p, path.clone(), "API", name);
        if api.openapi.trim().is_empty() {
            p.at(path.key("openapi"), "names no file");
        }
        if !present.upstreams.contains(&api.upstream) {
            p.at(
                path.key("upstream"),
                format!("unknown upstream {:?}", api.upstream),
            );
        }
        for (i, host) in api.hosts.iter().enumerate() {
            if let Err(e) = crate::host::HostPattern::parse(host) {
                p.at(path.key("hosts").index(i), e.to_string());
            }
        }
        if let Some(base) = &api.base_path {
            let normal = crate::urlpath::normalize_path(base.as_bytes())
                .is_some_and(|n| n.as_ref() == base.as_bytes());
            if !base.starts_with('/') || base.len() > 1 && base.ends_with('/') || !normal {
                p.at(
                    path.key("base_path"),
                    format!("{base:?} must start with `/`, not end with one, and be normalized"),
                );
            }
            if base.contains(['{', '}', '?', '#']) {
                p.at(path.key("base_path"), "must not hold `{`, `}`, `?` or `#`");
            }
        } else if api.strip_base_path {
            p.at(
                path.key("strip_base_path"),
                "there is no `base_path` to strip",
            );
        }
        for (scheme, authorizer) in &api.authorizers {
            if !present.authorizers.contains(authorizer) {
                p.at(
                    path.key("authorizers").key(scheme),
                    format!("unknown authorizer {authorizer:?}"),
                );
            }
        }
        if let Some(cors) = &api.cors {
            if !present.cors.contains(cors) {
                p.at(path.key("cors"), format!("unknown CORS policy {cors:?}"));
            }
        }
        for (i, limit) in api.limits.iter().enumerate() {
            if !present.limits.contains(limit) {
                p.at(
                    path.key("limits").index(i),
                    format!("unknown limit {limit:?}"),
                );
            }
        }
        if api.max_response_bytes == 0 || api.max_response_bytes > MAX_CHECKED_RESPONSE_BYTES {
            p.at(
                path.key("max_response_bytes"),
                format!(
                    "must be between 1 and {MAX_CHECKED_RESPONSE_BYTES} (a checked response is \
                     held in memory until it passed)"
                ),
            );
        }
        if api.max_body_bytes == 0 || api.max_body_bytes > MAX_VALIDATED_BODY_BYTES {
            p.at(
                path.key("max_body_bytes"),
                format!(
                    "must be between 1 and {MAX_VALIDATED_BODY_BYTES} (a validated body is held \
                     in memory until it passed)"
                ),
            );
        }
    }
}
