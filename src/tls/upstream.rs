//! TLS to upstream targets: certificate and name verification (system CAs or a configured
//! bundle), SNI, an optional client certificate. The same settings serve proxied requests
//! (through Pingora's connector) and active health checks (through `tokio-openssl`).

use crate::config::{ConfigError, KeyPath, UpstreamTlsConfig};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::CertKey;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Compiled `[upstreams.NAME.tls]`.
pub struct UpstreamTls {
    pub sni: String,
    pub verify: bool,
    ca: Option<Arc<Box<[X509]>>>,
    client: Option<Arc<CertKey>>,
    /// Separates pooled connections by trust anchors: Pingora's reuse hash covers SNI, client
    /// certificate and verify flags but not the CA, so without it a pool trusting CA B could
    /// reuse a connection another pool verified against CA A.
    group_key: u64,
    /// For health checks, configured like the proxy's connections.
    connector: SslConnector,
}

impl UpstreamTls {
    /// `first_target` is the first target's configured address: its host is the default SNI
    /// when it is a name.
    pub fn compile(
        c: &UpstreamTlsConfig,
        first_target: &str,
        path: &KeyPath,
    ) -> Result<Self, ConfigError> {
        let host = crate::host::target_host(first_target);
        // Validation refused an empty SNI with verification and IP targets without `sni`.
        let sni = match &c.sni {
            Some(s) => s.clone(),
            None if host.parse::<IpAddr>().is_err() => host.to_string(),
            None => String::new(),
        };
        let ca =
            c.ca.as_ref()
                .map(|p| {
                    super::read_certificates(p)
                        .map_err(|e| ConfigError::new(path.key("ca"), e.to_string()))
                })
                .transpose()?;
        let client = match (&c.client_cert, &c.client_key) {
            (Some(cert), Some(key)) => {
                let entry = super::load_pair("upstream", cert, key)
                    .map_err(|e| ConfigError::new(path.key("client_cert"), e.to_string()))?;
                Some(Arc::new(CertKey::new(entry.chain, entry.key)))
            }
            _ => None,
        };
        let bad = |e: openssl::error::ErrorStack| ConfigError::new(path.clone(), e.to_string());
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(bad)?;
        if let Some(ca) = &ca {
            builder.set_cert_store(super::trust_store(ca).map_err(bad)?);
        }
        if let Some(client) = &client {
            builder.set_certificate(client.leaf()).map_err(bad)?;
            for intermediate in client.intermediates() {
                builder
                    .add_extra_chain_cert(intermediate.clone())
                    .map_err(bad)?;
            }
            builder.set_private_key(client.key()).map_err(bad)?;
        }
        if !c.verify {
            builder.set_verify(SslVerifyMode::NONE);
        }
        // Trust anchors and client identity (Pingora hashes a client certificate by serial
        // number only, which two CAs can both issue).
        let group_key = ca
            .iter()
            .flatten()
            .chain(client.iter().map(|c| c.leaf()))
            .filter_map(|c| c.to_der().ok())
            .fold(1u64, |h, der| crate::hash::fold_hash(h, &der));
        Ok(Self {
            sni,
            verify: c.verify,
            group_key,
            ca: ca.map(|v| Arc::new(v.into_boxed_slice())),
            client,
            connector: builder.build(),
        })
    }

    /// Turn a plain peer into a TLS one with these settings.
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        peer.sni.clone_from(&self.sni);
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca.clone_from(&self.ca);
        peer.client_cert_key.clone_from(&self.client);
        peer.group_key = self.group_key;
    }

    /// A TLS connection for a health check.
    pub async fn connect(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_openssl::SslStream<TcpStream>> {
        let io = |e: openssl::error::ErrorStack| std::io::Error::other(e.to_string());
        let mut config = self.connector.configure().map_err(io)?;
        config.set_verify_hostname(self.verify);
        if self.sni.is_empty() {
            config.set_use_server_name_indication(false);
        }
        let ssl = config.into_ssl(&self.sni).map_err(io)?;
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(io)?;
        std::pin::Pin::new(&mut stream)
            .connect()
            .await
            .map_err(|e| std::io::Error::other(format!("TLS handshake: {e}")))?;
        Ok(stream)
    }
}
