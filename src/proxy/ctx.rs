//! The per-request context: filled by the early phases, read by the later ones.

use crate::snapshot::{Route, Snapshot};
use http::HeaderValue;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// State of one request. The snapshot is pinned at creation, so a reload mid-request never
/// mixes two configs.
pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: HeaderValue,
    pub client_ip: Option<IpAddr>,
    pub route: Option<Arc<Route>>,
    /// Request target to send upstream when it differs from the client's.
    pub upstream_uri: Option<http::Uri>,
    pub upstream: UpstreamInfo,
    /// Concurrency slots held and the `RateLimit` headers to send.
    pub limit: crate::limit::LimitState,
    /// TLS facts of the connection; `None` for plain HTTP.
    pub ssl: Option<Arc<pingora::protocols::tls::SslDigest>>,
    /// `Strict-Transport-Security` for the response, from the host's policy.
    pub hsts: Option<HeaderValue>,
    /// Who the route's authorizer says the client is.
    pub identity: Option<Arc<crate::auth::Identity>>,
    /// Auth decision label for the access log.
    pub auth: Option<&'static str>,
    /// Client-facing reason when the gateway refused or failed the request.
    pub error: Option<&'static str>,
}

/// Which target the request went to, and how long it took.
#[derive(Default)]
pub struct UpstreamInfo {
    /// Index into the route's pool targets.
    pub target: Option<usize>,
    /// Bit per target index (the first 64) that failed to connect, avoided on retry.
    pub failed: u64,
    pub attempts: u8,
    pub selected_at: Option<Instant>,
    pub header_at: Option<Instant>,
}

static NO_TLS_INFO: crate::tls::accept::TlsInfo = crate::tls::accept::TlsInfo {
    sni: None,
    client_cert: None,
};

impl RequestCtx {
    /// The handshake's facts on a TLS connection, `None` on plain HTTP.
    pub fn tls(&self) -> Option<&crate::tls::accept::TlsInfo> {
        let digest = self.ssl.as_ref()?;
        Some(
            digest
                .extension
                .get::<crate::tls::accept::TlsInfo>()
                .unwrap_or(&NO_TLS_INFO),
        )
    }

    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            snapshot,
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            client_ip: None,
            route: None,
            upstream_uri: None,
            upstream: UpstreamInfo::default(),
            limit: Default::default(),
            ssl: None,
            hsts: None,
            identity: None,
            auth: None,
            error: None,
        }
    }
}
