//! TLS listeners, `[certificates]`, `[tls]` and `[hosts]` policies. What certificate files
//! contain is checked when they are loaded; everything else here.

use super::{display_name, duration_in, Config, KeyPath, Present, Problems, DAY};
use crate::config::{AcmeChallenge, AcmeConfig, ClientAuth, HostConfig, ListenerTlsConfig};
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
        if c.acme {
            let path = hosts.key(name).key("acme");
            if config.acme.is_none() {
                p.at(path, "needs an [acme] section (directory, storage)");
            } else if let Some(problem) = acme_name_problem(name) {
                p.at(path, problem);
            }
        }
    }
    if let Some(a) = &config.acme {
        acme(p, &KeyPath::top("acme"), a, config);
    }
}

/// Why `name` cannot get a certificate through HTTP-01 or TLS-ALPN-01.
fn acme_name_problem(name: &str) -> Option<&'static str> {
    if name.starts_with("*.") {
        return Some(
            "a wildcard name needs the DNS-01 challenge, which gatehouse does not answer; \
             list the exact names",
        );
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some("an IP address, not a DNS name");
    }
    if !name.contains('.') {
        return Some("a CA issues only for a fully qualified name");
    }
    None
}

fn acme(p: &mut Problems, path: &KeyPath, a: &AcmeConfig, config: &Config) {
    match url::Url::parse(&a.directory) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        Ok(_) => p.at(
            path.key("directory"),
            "an ACME directory is an https:// URL (RFC 8555)",
        ),
        Err(e) => p.at(path.key("directory"), format!("not a URL: {e}")),
    }
    if let Some(email) = &a.email {
        let address = email.trim_start_matches("mailto:");
        let well_formed = address
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
            && !address.contains(|c: char| c.is_whitespace() || c == ',');
        if !well_formed {
            p.at(
                path.key("email"),
                "expected one address like ops@example.com",
            );
        }
    }
    if let Some(eab) = &a.external_account {
        if eab.kid.trim().is_empty() {
            p.at(path.key("external_account").key("kid"), "must not be empty");
        }
        if eab.mac_key().is_none() {
            p.at(
                path.key("external_account").key("hmac_key"),
                "expected the base64url MAC key the CA gave",
            );
        }
    }
    if a.storage.as_os_str().is_empty() {
        p.at(path.key("storage"), "must name a directory");
    }
    for (i, host) in a.hosts.iter().enumerate() {
        let at = path.key("hosts").index(i);
        if let Err(e) = HostPattern::parse(host) {
            p.at(at, e);
        } else if let Some(problem) = acme_name_problem(host) {
            p.at(at, problem);
        }
    }
    let managed = !a.hosts.is_empty() || config.hosts.values().any(|h| h.acme);
    if !managed {
        p.at(
            path.key("hosts"),
            "no host gets a certificate: list them here or set `acme = true` in [hosts.\"NAME\"]",
        );
    }
    // The CA connects to port 80 (HTTP-01) or 443 (TLS-ALPN-01) of the name; some listener
    // of the right kind must be there to answer.
    // A CA presents no client certificate: a listener that requires one cannot answer.
    let (kind, answers): (&str, fn(&crate::config::ListenerConfig) -> bool) = match a.challenge {
        AcmeChallenge::Http01 => ("a plain-HTTP listener (port 80)", |l| l.tls.is_none()),
        AcmeChallenge::TlsAlpn01 => (
            "a TLS listener (port 443) that does not require client certificates",
            |l| {
                l.tls
                    .as_ref()
                    .is_some_and(|t| t.client_auth != ClientAuth::Required)
            },
        ),
    };
    if !config.listeners.iter().any(answers) {
        p.at(
            path.key("challenge"),
            format!(
                "{:?} is answered on {kind}, and there is none",
                challenge_name(a.challenge)
            ),
        );
    }
}

fn challenge_name(c: AcmeChallenge) -> &'static str {
    match c {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
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
