//! TLS listeners, `[certificates]`, `[tls]` and `[hosts]` policies. What certificate files
//! contain is checked when they are loaded; everything else here.

use super::{display_name, duration_in, Config, KeyPath, Present, Problems, DAY};
use crate::config::{ClientAuth, HostConfig, ListenerTlsConfig};
use crate::host::HostPattern;
use std::time::Duration;

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    for (i, l) in config.listeners.iter().enumerate() {
        if let Some(tls) = &l.tls {
            listener(
                p,
                &KeyPath::top("listeners").index(i).key("tls"),
                tls,
                config,
                present,
            );
        }
    }
    let certs = KeyPath::top("certificates");
    for name in &present.certificates {
        display_name(p, certs.key(name), "certificate", name);
    }
    for (name, c) in &config.certificates {
        for (i, host) in c.hosts.iter().enumerate() {
            if let Err(e) = HostPattern::parse(host) {
                p.at(certs.key(name).key("hosts").index(i), e);
            }
        }
    }
    let hosts = KeyPath::top("hosts");
    for (name, c) in &config.hosts {
        host(p, &hosts.key(name), name, c);
    }
}

fn listener(
    p: &mut Problems,
    path: &KeyPath,
    c: &ListenerTlsConfig,
    config: &Config,
    present: &Present,
) {
    if !matches!(c.min_version.as_str(), "1.2" | "1.3") {
        p.at(path.key("min_version"), "expected \"1.2\" or \"1.3\"");
    }
    if c.client_auth != ClientAuth::None && c.client_ca.is_none() {
        p.at(
            path.key("client_ca"),
            "client certificates need the CA bundle they must chain to",
        );
    }
    // Certificates from `[tls] certificate_dir` are only known once the directory is read.
    if let Some(name) = &c.default_certificate {
        if config.tls.certificate_dir.is_none() && !present.certificates.contains(name) {
            p.at(
                path.key("default_certificate"),
                format!("unknown certificate {name:?}"),
            );
        }
    }
}

/// A year, the least max-age that HSTS preload lists accept.
const YEAR: Duration = Duration::from_secs(31_536_000);

fn host(p: &mut Problems, path: &KeyPath, name: &str, c: &HostConfig) {
    // The same rules as route hosts, so a policy cannot be written that never matches.
    if let Err(e) = HostPattern::parse(name) {
        p.at(path.clone(), e);
    }
    if c.https_redirect && c.https_port == 0 {
        p.at(path.key("https_port"), "must be between 1 and 65535");
    }
    if let Some(h) = &c.hsts {
        duration_in(
            p,
            path.key("hsts").key("max_age"),
            h.max_age,
            Duration::ZERO,
            // Any real max-age fits; the bound only keeps the header's number sane.
            3660 * DAY,
        );
        if h.preload && (!h.include_subdomains || h.max_age < YEAR) {
            p.at(
                path.key("hsts").key("preload"),
                "preload needs include_subdomains and a max_age of a year or more",
            );
        }
    }
}
