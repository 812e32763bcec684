//! Settings of a TLS listener, applied when it starts: protocol floor, ciphers (Mozilla's
//! "intermediate" profile: ECDHE with AES-GCM or ChaCha20 for TLS 1.2, the TLS 1.3 suites),
//! ALPN with HTTP/2, session resumption, client certificate verification.

use super::accept::{CertificateSource, SniCallbacks};
use crate::config::{ClientAuth, ConfigError, KeyPath, ListenerTlsConfig};
use openssl::ssl::{SslSessionCacheMode, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use pingora::listeners::tls::TlsSettings;
use std::sync::Arc;

/// The protocol floor named by `min_version`.
pub fn min_version(v: &str) -> Option<SslVersion> {
    match v {
        "1.2" => Some(SslVersion::TLS1_2),
        "1.3" => Some(SslVersion::TLS1_3),
        _ => None,
    }
}

/// The protocol to answer a client's ALPN list `offered` with (wire format): `acme-tls/1`
/// when it is the only one offered (RFC 8737: what a CA validating TLS-ALPN-01 sends), else
/// the first of `ours` the client offers; none (the client falls back to HTTP/1.1) when
/// nothing matches.
fn select_alpn<'a>(ours: &'a [u8], offered: &'a [u8]) -> Result<&'a [u8], openssl::ssl::AlpnError> {
    if let Some((&len, acme)) = offered.split_first() {
        if usize::from(len) == acme.len() && acme == super::acme::ALPN_PROTOCOL {
            return Ok(acme);
        }
    }
    openssl::ssl::select_next_proto(ours, offered).ok_or(openssl::ssl::AlpnError::NOACK)
}

/// Build a listener's TLS settings; problems (an unreadable CA bundle) are reported under
/// `path`, the listener's `listeners[i].tls`.
pub fn settings<S: CertificateSource>(
    c: &ListenerTlsConfig,
    path: &KeyPath,
    certificates: Arc<S>,
    handshake_threads: usize,
) -> Result<TlsSettings, ConfigError> {
    let bad = |e: &dyn std::fmt::Display| ConfigError::new(path.clone(), e.to_string());
    let callbacks = SniCallbacks {
        source: certificates,
        default_certificate: c.default_certificate.clone(),
    };
    let mut s = TlsSettings::with_callbacks(Box::new(callbacks)).map_err(|e| bad(&e))?;
    // Validation accepted only "1.2" and "1.3".
    let floor = min_version(&c.min_version).unwrap_or(SslVersion::TLS1_2);
    s.set_min_proto_version(Some(floor)).map_err(|e| bad(&e))?;
    // Resumption: the server-side session cache and TLS 1.3 tickets. The context id is needed
    // for resumed sessions once client certificates are verified.
    s.set_session_cache_mode(SslSessionCacheMode::SERVER);
    // Client-initiated renegotiation costs the server a handshake per request of the client's
    // choosing, and would change the peer after the facts were recorded.
    s.set_options(openssl::ssl::SslOptions::NO_RENEGOTIATION);
    s.set_session_id_context(b"gatehouse")
        .map_err(|e| bad(&e))?;
    // OCSP stapling: the certificate callback sets the cached response; this tells OpenSSL to
    // send it to a client that asked for the certificate's status.
    s.set_status_callback(|ssl| Ok(ssl.ocsp_status().is_some()))
        .map_err(|e| bad(&e))?;
    if handshake_threads > 0 {
        s.set_offload_threadpool(1, handshake_threads);
    }
    // HTTP/2 when the listener offers it, else HTTP/1.1; and `acme-tls/1` to a client that
    // asks for nothing else, as an ACME CA validating TLS-ALPN-01 does.
    let ours: &'static [u8] = if c.http2 {
        b"\x02h2\x08http/1.1"
    } else {
        b"\x08http/1.1"
    };
    s.set_alpn_select_callback(move |_, offered| select_alpn(ours, offered));
    let verify = match c.client_auth {
        ClientAuth::None => None,
        ClientAuth::Optional => Some(SslVerifyMode::PEER),
        ClientAuth::Required => Some(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT),
    };
    // Validation made `client_ca` present whenever client certificates are asked for.
    if let (Some(verify), Some(ca_file)) = (verify, &c.client_ca) {
        let ca_key = path.key("client_ca");
        let cas: Vec<X509> = super::read_certificates(ca_file)
            .map_err(|e| ConfigError::new(ca_key.clone(), e.to_string()))?;
        let mut names = openssl::stack::Stack::new().map_err(|e| bad(&e))?;
        for ca in &cas {
            names
                .push(ca.subject_name().to_owned().map_err(|e| bad(&e))?)
                .map_err(|e| bad(&e))?;
        }
        let trust = super::trust_store(&cas)
            .map_err(|e| ConfigError::new(ca_key.clone(), e.to_string()))?;
        s.set_verify_cert_store(trust)
            .map_err(|e| ConfigError::new(ca_key, e.to_string()))?;
        s.set_client_ca_list(names);
        s.set_verify(verify);
    }
    Ok(s)
}

/// A TLS listener's handshake done by gatehouse itself, for listeners whose connections start
/// with a PROXY protocol header: Pingora's TLS listener would take that header for the
/// ClientHello. The same settings and certificate callbacks as [`settings`].
pub struct ProxiedTls {
    acceptor: openssl::ssl::SslAcceptor,
    callbacks: pingora::listeners::TlsAcceptCallbacks,
}

impl ProxiedTls {
    pub fn new<S: CertificateSource>(
        c: &ListenerTlsConfig,
        path: &KeyPath,
        certificates: Arc<S>,
    ) -> Result<Self, ConfigError> {
        let bad = |e: &dyn std::fmt::Display| ConfigError::new(path.clone(), e.to_string());
        let mut s = settings(c, path, certificates.clone(), 0)?;
        // Pingora builds the acceptor only inside its own listener; take the configured
        // builder out of the settings instead.
        let empty =
            openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls())
                .map_err(|e| bad(&e))?;
        let acceptor = std::mem::replace(&mut *s, empty).build();
        Ok(Self {
            acceptor,
            callbacks: Box::new(SniCallbacks {
                source: certificates,
                default_certificate: c.default_certificate.clone(),
            }),
        })
    }

    /// The server side of the handshake on `io`.
    pub async fn handshake<I: pingora::protocols::IO>(
        &self,
        io: I,
    ) -> pingora::Result<pingora::protocols::tls::SslStream<I>> {
        pingora::protocols::tls::server::handshake_with_callback(
            &self.acceptor,
            io,
            self.callbacks.as_ref(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::select_alpn;

    #[test]
    fn alpn_prefers_the_listeners_order_and_answers_acme_validation() {
        let h2h1 = b"\x02h2\x08http/1.1";
        assert_eq!(select_alpn(h2h1, b"\x08http/1.1\x02h2").unwrap(), b"h2");
        assert_eq!(
            select_alpn(b"\x08http/1.1", b"\x02h2\x08http/1.1").unwrap(),
            b"http/1.1"
        );
        assert_eq!(select_alpn(h2h1, b"\x0aacme-tls/1").unwrap(), b"acme-tls/1");
        // Offered beside others it is not a validation.
        assert_eq!(select_alpn(h2h1, b"\x0aacme-tls/1\x02h2").unwrap(), b"h2");
        assert!(select_alpn(h2h1, b"\x0aacme-tls/1\x03foo").is_err());
        assert!(select_alpn(h2h1, b"\x03foo").is_err());
        assert!(select_alpn(h2h1, b"\x09short").is_err());
    }
}
