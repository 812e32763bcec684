//! `[certificates]`, `[tls]` and `[hosts]` policies.

use super::defaults::*;
use super::server::ClientAuth;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[certificates.NAME]`: a certificate chain and its key, in PEM.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The certificate followed by its intermediates.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Names served with it (exact or `*.example.com`); the certificate's DNS names when
    /// empty.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `[tls]`: where else certificates come from, how they are watched, OCSP stapling.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Every `NAME.crt` with a `NAME.key` beside it is loaded as certificate `NAME`.
    #[serde(default)]
    pub certificate_dir: Option<PathBuf>,
    /// Reload when a certificate or key file changes (checked every `server.watch_interval`).
    #[serde(default)]
    pub watch: bool,
    /// Staple OCSP responses for certificates that name a responder (fetched in the
    /// background, refreshed halfway to their `nextUpdate`).
    #[serde(default = "yes")]
    pub ocsp_stapling: bool,
}

fn yes() -> bool {
    true
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certificate_dir: None,
            watch: false,
            ocsp_stapling: true,
        }
    }
}

/// `[hosts."NAME"]`: what a domain requires. NAME is exact or `*.example.com`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Answer plain-HTTP requests with a 308 to the same URL over HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
    /// Port in the redirect target.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// `Strict-Transport-Security` on HTTPS responses.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Refuse (421) HTTPS requests whose Host differs from the TLS SNI (domain fronting).
    #[serde(default)]
    pub strict_sni: bool,
    /// Client certificate needed for this domain: `none`, `optional`, `required` (403 without
    /// a verified one; the listener must ask for certificates).
    #[serde(default)]
    pub client_cert: ClientAuth,
    /// When not empty, only clients in these CIDRs may use this domain (403 otherwise).
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Clients in these CIDRs are refused on this domain (403).
    #[serde(default)]
    pub ip_deny: Vec<String>,
}

/// HSTS header settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    #[serde(default = "default_hsts_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}
