//! `[certificates]`, `[tls]` and `[hosts]` policies.

use super::defaults::*;
use super::server::{ClientAuth, Secret};
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
    /// Get and renew this domain's certificate from `[acme]` (an exact name).
    #[serde(default)]
    pub acme: bool,
}

/// `[acme]`: certificates issued and renewed by an RFC 8555 CA for the listed hosts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's directory URL (Let's Encrypt, its staging, a private CA).
    pub directory: String,
    /// Contact address given to the CA for expiry and policy mail.
    #[serde(default)]
    pub email: Option<String>,
    /// External account binding, for CAs that require one.
    #[serde(default)]
    pub external_account: Option<ExternalAccountConfig>,
    /// Account key and certificates (keys 0600). Instances sharing it share orders.
    pub storage: PathBuf,
    /// Exact names that get a certificate (besides `[hosts."NAME"] acme = true`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How the CA checks control of a name: `http-01` (a plain listener on port 80) or
    /// `tls-alpn-01` (a TLS listener on port 443).
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// The root trusted for the directory's HTTPS (a private CA; the file's first
    /// certificate); the system's roots when unset.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

/// The ACME challenge gatehouse answers.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum AcmeChallenge {
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// RFC 8555 section 7.3.4: the key id and MAC key the CA handed out.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccountConfig {
    pub kid: String,
    /// The MAC key, base64url as CAs print it (`env:NAME` reads it from the environment).
    pub hmac_key: Secret,
}

impl ExternalAccountConfig {
    /// The MAC key's bytes: base64url, with or without padding, as CAs print it.
    pub fn mac_key(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let text = self.hmac_key.expose().trim().trim_end_matches('=');
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .filter(|k| !k.is_empty())
    }
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
