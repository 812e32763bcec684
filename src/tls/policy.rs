//! Per-domain HTTPS policy: redirect plain HTTP, HSTS, Host/SNI agreement, client
//! certificates. Plain functions over the request's host and its TLS facts.

use super::accept::TlsInfo;
use crate::config::{ClientAuth, HostConfig};
use http::HeaderValue;
use std::collections::{BTreeMap, HashMap};

/// A compiled `[hosts."NAME"]`.
#[derive(Debug)]
pub struct HostPolicy {
    /// Port of the HTTPS redirect target, when plain HTTP is redirected.
    pub redirect_port: Option<u16>,
    /// `Strict-Transport-Security` value.
    pub hsts: Option<HeaderValue>,
    pub strict_sni: bool,
    pub client_cert_required: bool,
    /// Who may use the domain (`ip_allow`, `ip_deny`).
    pub ips: crate::edge::settings::IpRules,
}

/// Policies by exact host and by wildcard suffix.
#[derive(Debug, Default)]
pub struct HostPolicies {
    exact: HashMap<String, HostPolicy>,
    wildcard: HashMap<String, HostPolicy>,
}

use crate::host::{host_key, wildcard_lookup, HostPattern};

impl HostPolicies {
    /// Compile `[hosts]`; names and HSTS settings were checked by config validation.
    pub fn compile(hosts: &BTreeMap<String, HostConfig>) -> Self {
        let mut out = Self::default();
        for (name, c) in hosts {
            let Ok(pattern) = HostPattern::parse(name) else {
                continue;
            };
            let hsts = c.hsts.as_ref().and_then(|h| {
                let mut v = format!("max-age={}", h.max_age.as_secs());
                if h.include_subdomains {
                    v.push_str("; includeSubDomains");
                }
                if h.preload {
                    v.push_str("; preload");
                }
                HeaderValue::from_str(&v).ok()
            });
            let policy = HostPolicy {
                redirect_port: c.https_redirect.then_some(c.https_port),
                hsts,
                strict_sni: c.strict_sni,
                client_cert_required: c.client_cert == ClientAuth::Required,
                ips: crate::edge::settings::IpRules::compile(&c.ip_allow, &c.ip_deny),
            };
            match pattern {
                HostPattern::Wildcard(suffix) => out.wildcard.insert(suffix, policy),
                HostPattern::Exact(host) => out.exact.insert(host, policy),
            };
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The policy of a request host (`Host` or authority, any case, with or without port),
    /// found the way routes are: exact, then the longest wildcard suffix at any depth.
    pub fn lookup(&self, host: &str) -> Option<&HostPolicy> {
        if self.is_empty() {
            return None;
        }
        let host = host_key(host);
        self.exact
            .get(host.as_ref())
            .or_else(|| wildcard_lookup(&self.wildcard, &host))
    }
}

/// What the policy says about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// 308 to this HTTPS URL.
    Redirect(String),
    /// 421: the Host is not the name the TLS connection was made for.
    Misdirected,
    /// 403: no verified client certificate.
    ClientCertRequired,
}

/// Apply `policy` to a request for `host` with `path_and_query`; `tls` is `None` for plain
/// HTTP.
pub fn check(
    policy: &HostPolicy,
    tls: Option<&TlsInfo>,
    host: &str,
    path_and_query: &str,
) -> Verdict {
    // The caller has checked `host` with `host::valid_host`, so it cannot smuggle another
    // host into the redirect target.
    let name = host_key(host);
    let Some(tls) = tls else {
        return match policy.redirect_port {
            Some(port) => {
                let h = if name.contains(':') {
                    format!("[{name}]")
                } else {
                    name.to_string()
                };
                let port = if port == 443 {
                    String::new()
                } else {
                    format!(":{port}")
                };
                Verdict::Redirect(format!("https://{h}{port}{path_and_query}"))
            }
            // Without TLS there is no SNI to agree with and no client certificate: a domain
            // that requires either is not served over plain HTTP.
            None if policy.strict_sni => Verdict::Misdirected,
            None if policy.client_cert_required => Verdict::ClientCertRequired,
            None => Verdict::Pass,
        };
    };
    let sni_agrees = tls
        .sni
        .as_deref()
        .is_some_and(|sni| sni.eq_ignore_ascii_case(&name));
    if policy.strict_sni && !sni_agrees {
        return Verdict::Misdirected;
    }
    if policy.client_cert_required && tls.client_cert.is_none() {
        // An HTTP/2 connection made for another name may carry this host's requests: 421
        // lets the client retry on a connection of its own (where it can send a certificate).
        return if tls.sni.is_some() && !sni_agrees {
            Verdict::Misdirected
        } else {
            Verdict::ClientCertRequired
        };
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HstsConfig;
    use std::time::Duration;

    fn policies() -> HostPolicies {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "api.example.com".to_string(),
            HostConfig {
                https_redirect: true,
                https_port: 443,
                strict_sni: true,
                hsts: Some(HstsConfig {
                    max_age: Duration::from_secs(600),
                    include_subdomains: true,
                    preload: false,
                }),
                ..HostConfig::default()
            },
        );
        hosts.insert(
            "*.example.org".to_string(),
            HostConfig {
                https_redirect: true,
                https_port: 8443,
                client_cert: ClientAuth::Required,
                ..HostConfig::default()
            },
        );
        HostPolicies::compile(&hosts)
    }

    #[test]
    fn lookup_ignores_case_and_port_and_wildcards_cover_one_label() {
        let p = policies();
        assert!(p.lookup("API.example.com:8080").is_some());
        assert!(p.lookup("a.example.org").is_some());
        assert!(
            p.lookup("a.b.example.org").is_some(),
            "any depth, like route hosts"
        );
        assert!(p.lookup("example.org").is_none());
        assert_eq!(
            p.lookup("api.example.com").unwrap().hsts.as_ref().unwrap(),
            "max-age=600; includeSubDomains"
        );
    }

    #[test]
    fn plain_http_is_redirected_with_the_path_and_port() {
        let p = policies();
        let api = p.lookup("api.example.com").unwrap();
        assert_eq!(
            check(api, None, "api.example.com:80", "/a?b=1"),
            Verdict::Redirect("https://api.example.com/a?b=1".into())
        );
        let org = p.lookup("x.example.org").unwrap();
        assert_eq!(
            check(org, None, "x.example.org", "/"),
            Verdict::Redirect("https://x.example.org:8443/".into())
        );
    }

    #[test]
    fn sni_must_match_host_and_client_certs_are_enforced() {
        let p = policies();
        let api = p.lookup("api.example.com").unwrap();
        let tls = |sni: Option<&str>| TlsInfo {
            sni: sni.map(str::to_string),
            client_cert: None,
        };
        assert_eq!(
            check(
                api,
                Some(&tls(Some("api.example.com"))),
                "API.example.com:443",
                "/"
            ),
            Verdict::Pass
        );
        assert_eq!(
            check(
                api,
                Some(&tls(Some("other.example.com"))),
                "api.example.com",
                "/"
            ),
            Verdict::Misdirected
        );
        assert_eq!(
            check(api, Some(&tls(None)), "api.example.com", "/"),
            Verdict::Misdirected
        );
        let org = p.lookup("x.example.org").unwrap();
        assert_eq!(
            check(org, Some(&tls(Some("x.example.org"))), "x.example.org", "/"),
            Verdict::ClientCertRequired
        );
        // A connection made for another name (HTTP/2 coalescing): 421, so the client retries.
        assert_eq!(
            check(org, Some(&tls(Some("y.example.org"))), "x.example.org", "/"),
            Verdict::Misdirected
        );
        // Over plain HTTP a domain that needs TLS facts is refused, not served.
        let mut plain = HostPolicy {
            redirect_port: None,
            hsts: None,
            strict_sni: false,
            client_cert_required: true,
            ips: Default::default(),
        };
        assert_eq!(
            check(&plain, None, "x.example.org", "/"),
            Verdict::ClientCertRequired
        );
        plain.strict_sni = true;
        assert_eq!(
            check(&plain, None, "x.example.org", "/"),
            Verdict::Misdirected
        );
    }

    #[test]
    fn preload_needs_the_preload_list_requirements() {
        let errors = crate::config::parse(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n[hosts.\"a.com\"]\n\
             hsts = { max_age = \"10m\", include_subdomains = true, preload = true }\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path.as_str(), "hosts.\"a.com\".hsts.preload");
    }
}
