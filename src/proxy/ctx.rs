//! The per-request context: filled by the early phases, read by the later ones.

use super::decide::Host;
use crate::snapshot::{Route, RouteAction, Snapshot};
use crate::upstream::Pool;
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
    /// The TCP peer (or PROXY protocol source); differs from `client_ip` behind a trusted
    /// proxy.
    pub peer_ip: Option<IpAddr>,
    /// Largest body the route accepts, and the body bytes read so far.
    pub body_limit: u64,
    pub body_read: u64,
    /// The host `request_filter` accepted, for every later phase; `None` before that, when
    /// it was refused, or for an HTTP/1.0 request without one.
    pub host: Option<Host>,
    pub route: Option<Arc<Route>>,
    /// Request target to send upstream when it differs from the client's. Boxed: a `Uri` is
    /// 88 bytes and most requests have none, so the context stays within its 448-byte budget.
    pub upstream_uri: Option<Box<http::Uri>>,
    pub upstream: UpstreamInfo,
    /// Concurrency slots held and the `RateLimit` headers to send.
    pub limit: crate::limit::LimitState,
    /// TLS facts of the connection; `None` for plain HTTP.
    pub ssl: Option<Arc<pingora::protocols::tls::SslDigest>>,
    /// `Strict-Transport-Security` for the response, from the host's policy.
    pub hsts: Option<HeaderValue>,
    /// Who the route's authorizer says the client is.
    pub identity: Option<Arc<crate::auth::Identity>>,
    /// The auth decision, for the access log and the trace (its label).
    pub auth: Option<crate::auth::Reason>,
    /// Client-facing reason when the gateway refused or failed the request.
    pub error: Option<&'static str>,
    /// The firewall's decision for the access log (`deny:sqli`, `ban:ip`, ...).
    pub firewall: Option<crate::firewall::Note>,
    /// A firewall rule or protection caught the request: an event for intrusion detection.
    pub firewall_hit: bool,
    /// Refused because of a ban, which is not a new event.
    pub banned: bool,
    /// The firewall read the body before the request went on (and answered
    /// `Expect: 100-continue` itself).
    pub body_read_early: bool,
    /// The request's trace, when `[tracing]` is on.
    pub trace: Option<Box<crate::observe::trace::RequestTrace>>,
    /// The upstream response, kept to be checked against the API operation (`report`).
    pub response_check: Option<Box<crate::contract::check::ResponseCapture>>,
}

/// Which target the request went to, and how long it took.
#[derive(Default)]
pub struct UpstreamInfo {
    /// Index into the route's pool targets; 32 bits keep the context within its budget.
    pub target: Option<u32>,
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

impl UpstreamInfo {
    /// The chosen target's index into the pool's targets.
    pub fn target(&self) -> Option<usize> {
        self.target.map(|i| i as usize)
    }
}

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

    /// The pool of the request's route when the route proxies; `None` before routing and
    /// for fixed-response routes.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        match &self.route.as_ref()?.action {
            RouteAction::Proxy { pool, .. } => Some(pool),
            RouteAction::Respond(_) => None,
        }
    }

    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            snapshot,
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            client_ip: None,
            peer_ip: None,
            body_limit: u64::MAX,
            body_read: 0,
            host: None,
            route: None,
            upstream_uri: None,
            upstream: UpstreamInfo::default(),
            limit: Default::default(),
            ssl: None,
            hsts: None,
            identity: None,
            auth: None,
            error: None,
            firewall: None,
            firewall_hit: false,
            banned: false,
            body_read_early: false,
            response_check: None,
            trace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The context is allocated per request and its fields are moved around by the phases; it
    /// was 448 bytes before the host was kept in it, and should not grow past that unnoticed.
    #[test]
    fn the_request_context_stays_within_448_bytes() {
        let size = std::mem::size_of::<super::RequestCtx>();
        assert!(size <= 448, "RequestCtx is {size} bytes");
    }
}
