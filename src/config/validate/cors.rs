//! `[cors.NAME]`.

use super::{duration_in, token_name, Config, KeyPath, Problems, DAY};
use crate::config::CorsOrigin;
use std::time::Duration;

pub(super) fn validate(config: &Config, p: &mut Problems) {
    let top = KeyPath::top("cors");
    for (name, cors) in &config.cors {
        let path = top.key(name);
        token_name(p, path.clone(), "CORS policy", name);
        let origins = path.key("allow_origins");
        if cors.allow_origins.is_empty() {
            p.at(
                origins.clone(),
                "lists no origin: add at least one, or \"*\"",
            );
        }
        if cors.allow_credentials && cors.allow_origins.contains(&CorsOrigin::Any) {
            p.at(
                origins,
                "\"*\" cannot be used with `allow_credentials`: browsers refuse a credentialed \
                 answer to any origin; list the origins",
            );
        }
        if cors.allow_methods.is_empty() {
            p.at(path.key("allow_methods"), "lists no method");
        }
        for (i, method) in cors.allow_methods.iter().enumerate() {
            let valid = !method.is_empty() && http::Method::from_bytes(method.as_bytes()).is_ok();
            if !valid || method == "*" {
                p.at(
                    path.key("allow_methods").index(i),
                    format!("{method:?} is not a method"),
                );
            }
        }
        for (key, list) in [
            ("allow_headers", &cors.allow_headers),
            ("expose_headers", &cors.expose_headers),
        ] {
            for (i, name) in list.iter().enumerate() {
                let at = path.key(key).index(i);
                if name == "*" {
                    if key == "expose_headers" || cors.allow_credentials {
                        p.at(
                            at,
                            "\"*\" is only for `allow_headers` without `allow_credentials`; \
                             list the headers",
                        );
                    }
                } else {
                    super::header_name(p, at, name);
                }
            }
        }
        duration_in(p, path.key("max_age"), cors.max_age, Duration::ZERO, DAY);
    }
}
