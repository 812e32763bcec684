//! Settings of a TLS listener, applied when it starts: protocol floor, ciphers (Mozilla's
//! "intermediate" profile: ECDHE with AES-GCM or ChaCha20 for TLS 1.2, the TLS 1.3 suites),
//! ALPN with HTTP/2, session resumption, client certificate verification.

use super::accept::{CertificateSource, SniCallbacks};
use crate::config::{ClientAuth, ListenerTlsConfig};
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

/// Build a listener's TLS settings. Errors name the key under `listeners[i].tls`.
pub fn settings<S: CertificateSource>(
    c: &ListenerTlsConfig,
    certificates: Arc<S>,
    handshake_threads: usize,
) -> Result<TlsSettings, (String, String)> {
    let bad = |key: &str, e: &dyn std::fmt::Display| (key.to_string(), e.to_string());
    let callbacks = SniCallbacks {
        source: certificates,
        default_certificate: c.default_certificate.clone(),
    };
    let mut s = TlsSettings::with_callbacks(Box::new(callbacks)).map_err(|e| bad("", &e))?;
    let floor = min_version(&c.min_version)
        .ok_or_else(|| bad(".min_version", &"expected \"1.2\" or \"1.3\""))?;
    s.set_min_proto_version(Some(floor))
        .map_err(|e| bad(".min_version", &e))?;
    // Resumption: the server-side session cache and TLS 1.3 tickets. The context id is needed
    // for resumed sessions once client certificates are verified.
    s.set_session_cache_mode(SslSessionCacheMode::SERVER);
    // Client-initiated renegotiation costs the server a handshake per request of the client's
    // choosing, and would change the peer after the facts were recorded.
    s.set_options(openssl::ssl::SslOptions::NO_RENEGOTIATION);
    s.set_session_id_context(b"gatehouse")
        .map_err(|e| bad("", &e))?;
    if handshake_threads > 0 {
        s.set_offload_threadpool(1, handshake_threads);
    }
    if c.http2 {
        s.enable_h2();
    } else {
        s.set_alpn(pingora::protocols::ALPN::H1);
    }
    if let Some((cas, verify)) = client_cas(c)? {
        let mut names = openssl::stack::Stack::new().map_err(|e| bad("", &e))?;
        for ca in &cas {
            names
                .push(ca.subject_name().to_owned().map_err(|e| bad("", &e))?)
                .map_err(|e| bad("", &e))?;
        }
        let trust = super::trust_store(&cas).map_err(|e| bad(".client_ca", &e))?;
        s.set_verify_cert_store(trust)
            .map_err(|e| bad(".client_ca", &e))?;
        s.set_client_ca_list(names);
        s.set_verify(verify);
    }
    Ok(s)
}

/// The client CA bundle and verify mode, when the listener asks for client certificates.
type ClientCas = Option<(Vec<X509>, SslVerifyMode)>;

fn client_cas(c: &ListenerTlsConfig) -> Result<ClientCas, (String, String)> {
    match (c.client_auth, &c.client_ca) {
        (ClientAuth::None, _) => Ok(None),
        (_, None) => Err((
            ".client_ca".into(),
            "client certificates need the CA bundle they must chain to".into(),
        )),
        (mode, Some(path)) => {
            let cas = super::read_certificates(".client_ca", path)?;
            let verify = match mode {
                ClientAuth::Required => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                _ => SslVerifyMode::PEER,
            };
            Ok(Some((cas, verify)))
        }
    }
}

/// Check what `settings` would refuse, for `gatehouse check` and reloads.
pub fn check(c: &ListenerTlsConfig) -> Result<(), (String, String)> {
    if min_version(&c.min_version).is_none() {
        return Err((".min_version".into(), "expected \"1.2\" or \"1.3\"".into()));
    }
    client_cas(c).map(|_| ())
}
