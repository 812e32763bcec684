//! The TLS handshake hooks of a listener: pick the certificate for the client's SNI from the
//! current snapshot (so a reload serves new certificates to new handshakes at once), and
//! record the SNI and the verified client certificate for the HTTP layer.

use super::CertEntry;
use async_trait::async_trait;
use openssl::hash::MessageDigest;
use openssl::ssl::NameType;
use openssl::x509::X509VerifyResult;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use std::any::Any;
use std::sync::Arc;

/// A verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Subject as `CN=...,O=...` (RFC 4514 order, most specific first).
    pub subject: String,
    /// Lowercase hex SHA-256 of the DER certificate.
    pub fingerprint: String,
}

/// What the handshake established, stored in Pingora's `SslDigest` extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub client_cert: Option<ClientCert>,
}

/// Where handshakes find certificates. The server passes the snapshot store, so a reload
/// serves new certificates to new handshakes at once; this module does not know snapshots.
pub trait CertificateSource: Send + Sync + 'static {
    /// The certificate for `sni` (exact, then wildcard), else the one named `default`.
    fn certificate(&self, sni: Option<&str>, default: Option<&str>) -> Option<Arc<CertEntry>>;

    /// A fresh OCSP response to staple for `entry`, if one is cached.
    fn staple(&self, _entry: &CertEntry) -> Option<Arc<super::ocsp::Staple>> {
        None
    }

    /// The TLS-ALPN-01 certificate for `sni`, while its validation is open.
    fn acme_challenge(&self, _sni: &str) -> Option<Arc<CertEntry>> {
        None
    }
}

/// Handshake hooks of one TLS listener.
pub struct SniCallbacks<S> {
    pub source: Arc<S>,
    /// `[certificates]` name served when the SNI matches nothing (or is absent).
    pub default_certificate: Option<String>,
}

/// One attribute value escaped as RFC 4514 requires.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// The subject as an RFC 4514 string: last RDN of the certificate first.
fn subject_of(cert: &openssl::x509::X509Ref) -> String {
    subject_text(cert.subject_name())
}

/// A distinguished name as RFC 4514 text (`CN=alice,O=Acme`).
pub fn subject_text(name: &openssl::x509::X509NameRef) -> String {
    let mut parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = e
                .object()
                .nid()
                .short_name()
                .map(str::to_string)
                .unwrap_or_else(|_| e.object().to_string());
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={}", escape_dn_value(&value))
        })
        .collect();
    parts.reverse();
    parts.join(",")
}

#[async_trait]
impl<S: CertificateSource> TlsAccept for SniCallbacks<S> {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let sni = ssl.servername(NameType::HOST_NAME);
        // A TLS-ALPN-01 validation (RFC 8737) gets the challenge certificate or nothing: the
        // ALPN is chosen before this callback in TLS 1.3, which is what validators speak.
        let validation = ssl.selected_alpn_protocol() == Some(super::acme::ALPN_PROTOCOL);
        let entry = if validation {
            sni.and_then(|s| self.source.acme_challenge(s))
        } else {
            self.source
                .certificate(sni, self.default_certificate.as_deref())
        };
        // Without a certificate the handshake fails: the configured refusal for unknown names.
        let Some(entry) = entry else {
            tracing::debug!(
                sni = ?sni,
                validation,
                "no certificate for this name (or no open TLS-ALPN-01 validation); refusing the handshake"
            );
            return;
        };
        let set = (|| {
            let (leaf, chain) = entry.chain.split_first().ok_or("empty chain")?;
            ext::ssl_use_certificate(ssl, leaf).map_err(|_| "certificate")?;
            for c in chain {
                ext::ssl_add_chain_cert(ssl, c).map_err(|_| "chain")?;
            }
            ext::ssl_use_private_key(ssl, &entry.key).map_err(|_| "key")?;
            // Sent only when the client asked for it (the listener's status callback).
            if let Some(staple) = self.source.staple(&entry) {
                ssl.set_ocsp_status(&staple.der)
                    .map_err(|_| "OCSP staple")?;
            }
            Ok::<(), &str>(())
        })();
        if let Err(what) = set {
            tracing::warn!(certificate = %entry.name, what, "cannot use the certificate");
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = ssl
            .servername(NameType::HOST_NAME)
            .map(|s| s.to_ascii_lowercase());
        // With verification on, a certificate that is present passed it; the result is
        // checked anyway so a listener misconfiguration cannot forward an unverified one.
        let client_cert = ssl
            .peer_certificate()
            .filter(|_| ssl.verify_result() == X509VerifyResult::OK)
            .and_then(|cert| {
                let digest = cert.digest(MessageDigest::sha256()).ok()?;
                Some(ClientCert {
                    subject: subject_of(&cert),
                    fingerprint: crate::text::hex(&digest),
                })
            });
        Some(Arc::new(TlsInfo { sni, client_cert }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(
            super::escape_dn_value("Acme, Inc; <x>"),
            "Acme\\, Inc\\; \\<x\\>"
        );
        assert_eq!(super::escape_dn_value("#lead "), "\\#lead\\ ");
        assert_eq!(super::escape_dn_value(" a+b\"c"), "\\ a\\+b\\\"c");
    }
}
