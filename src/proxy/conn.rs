//! Client connections, from accept to close: connection limits, the PROXY protocol header,
//! and every HTTP/1 request head read and checked here before Pingora parses it.
//!
//! Pingora's HTTP/1 reader gives each read of a request head the full keep-alive timeout (a
//! client sending one byte every few seconds is never cut off), buffers heads up to 1 MiB,
//! and answers what it cannot parse with a bare 400 that no hook sees. So [`EdgeApp`] reads
//! each head itself ([`read_head`]), against one deadline for the whole head and the
//! listener's size limits, checks it with [`head::scan`], and answers refusals itself: a JSON
//! body with a request id, a line in the access log, and `gatehouse_edge_refusals_total`. An
//! accepted head is handed to Pingora as a "pipelined prefix", so Pingora parses it from
//! memory and never waits on the socket for a head. HTTP/2 (over TLS) goes straight to
//! Pingora; its limits are Pingora's HTTP/2 settings and the proxy steps.

use super::guarded::Guarded;
use super::{request_id, respond};
use crate::edge::connections::{ConnectionGuard, Connections};
use crate::edge::framing::Framing;
use crate::edge::head::{self, Body, HeadLimits, Scan};
use crate::edge::proxy_protocol::{self, Parsed};
use crate::edge::settings::ListenerEdge;
use crate::edge::Reason;
use crate::observe::access_log::{AccessEntry, AccessLog};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::tls::listener::ProxiedTls;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long writing a refusal may take before the connection is dropped anyway.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy service's app: admits connections and reads request heads, then hands each
/// request to `inner` (Pingora's HTTP proxy).
pub struct EdgeApp<A> {
    inner: Arc<A>,
    /// How long requests already on their way get to arrive once the listeners stop.
    drain: Duration,
    store: Arc<SnapshotStore>,
    connections: Arc<Connections>,
    /// Connections the process can hold, from the open-file limit.
    fd_budget: usize,
    access_log: Option<Arc<AccessLog>>,
    /// TLS listeners behind a PROXY protocol header, by address: their handshake is done
    /// here, after the header.
    proxied_tls: Vec<(SocketAddr, Arc<ProxiedTls>)>,
}

impl<A> EdgeApp<A> {
    pub fn new(
        inner: A,
        drain: Duration,
        store: Arc<SnapshotStore>,
        connections: Arc<Connections>,
        fd_budget: usize,
        access_log: Option<Arc<AccessLog>>,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            drain,
            store,
            connections,
            fd_budget,
            access_log,
            proxied_tls: Vec::new(),
        }
    }

    /// Do the TLS handshake of the listener on `address` here, after its PROXY header.
    pub fn add_proxied_tls(&mut self, address: SocketAddr, tls: ProxiedTls) {
        self.proxied_tls.push((address, Arc::new(tls)));
    }

    fn proxied_tls(&self, local: Option<SocketAddr>) -> Option<&ProxiedTls> {
        crate::edge::listener_for(&self.proxied_tls, |(a, _)| Some(*a), local)
            .map(|(_, t)| t.as_ref())
    }
}

/// Where a connection came from and where it arrived.
struct Peer {
    local: Option<SocketAddr>,
    /// The TCP peer, or the client named by a PROXY protocol header.
    client: Option<SocketAddr>,
}

/// The outcome of reading one request head.
enum HeadRead {
    /// The client went away, or stayed idle past its time, before a head began.
    Closed,
    Refused(Reason),
    Ready {
        len: usize,
        body: Body,
        upgrade: bool,
    },
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for EdgeApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let snapshot = self.store.load_full();
        let digest = stream.get_socket_digest();
        let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        let mut peer = Peer {
            local: digest.as_ref().and_then(|d| inet(d.local_addr())),
            client: digest.as_ref().and_then(|d| inet(d.peer_addr())),
        };
        let listener = snapshot.edge.listener(peer.local);
        let max = match listener.limits.max_connections {
            0 => self.fd_budget,
            n => n.min(self.fd_budget),
        };
        // Counted on the listener before anything is read, so a flood of connections that
        // never send a byte is bounded too.
        let _listener_guard = match self.connections.admit_listener(peer.local, max) {
            Ok(g) => g,
            Err(_) => {
                self.refuse_connection(stream, &snapshot, &peer).await;
                return None;
            }
        };
        let mut stream = stream;
        let mut buf = BytesMut::with_capacity(4096);
        let mut proxied = None;
        // A TLS listener set up for PROXY at startup keeps expecting it until a restart, even
        // if a reload turned the setting off (that change is reported as pending a restart).
        let proxied_tls = self.proxied_tls(peer.local);
        if listener.proxy_protocol || proxied_tls.is_some() {
            let timeout = listener.limits.header_timeout;
            match read_proxy_header(&mut stream, &mut buf, timeout).await {
                Ok(source) => proxied = source,
                Err(()) => {
                    self.count(Reason::ProxyProtocol, &snapshot, &peer, b"", Instant::now());
                    return None;
                }
            }
            if let Some(tls) = proxied_tls {
                // The TLS handshake starts right after the PROXY header, possibly in bytes
                // already read with it.
                let l4 = stream.into_any().downcast::<L4Stream>().ok()?;
                let mut l4 = *l4;
                l4.rewind(&buf);
                buf.clear();
                let handshake = tokio::time::timeout(timeout, tls.handshake(l4)).await;
                let Ok(Ok(tls_stream)) = handshake else {
                    return None;
                };
                stream = Box::new(tls_stream);
            }
        }
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let mut guarded = Box::new(Guarded::new(stream));
        if let Some(source) = proxied {
            guarded.set_client(source);
            peer.client = Some(source);
        }
        let Some(_ip_guard) = self.admit_client(&peer, listener) else {
            self.refuse_connection(guarded, &snapshot, &peer).await;
            return None;
        };
        drop(snapshot);
        if h2 {
            // HTTP/2 frames its own streams: the wrapper only carries the client address.
            guarded.passthrough = true;
            return self.inner.process_new(guarded, shutdown).await;
        }
        self.serve_http1(guarded, buf, &peer, shutdown).await;
        None
    }

    /// Once the listeners stop (SIGTERM, or SIGQUIT handing them to a new process), Pingora's
    /// clean-up drops every connection waiting for its next request, so a client that sent
    /// its request just before the hand-over would get the connection closed without an
    /// answer. The clean-up waits the drain period first: requests that arrive meanwhile are
    /// served with `Connection: close`, so clients move to the new process.
    async fn cleanup(&self) {
        tokio::time::sleep(self.drain).await;
        self.inner.http_cleanup().await
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> EdgeApp<A> {
    fn admit_client(&self, peer: &Peer, listener: &ListenerEdge) -> Option<ConnectionGuard> {
        let per_ip = listener.limits.max_connections_per_ip;
        let ip = peer.client.map(|a| a.ip());
        self.connections.admit_address(ip, per_ip).ok()
    }

    /// Serve requests on an HTTP/1 connection until it closes.
    async fn serve_http1(
        self: &Arc<Self>,
        mut guarded: Box<Guarded>,
        mut buf: BytesMut,
        peer: &Peer,
        shutdown: &ShutdownWatch,
    ) {
        let mut served: u32 = 0;
        loop {
            let snapshot = self.store.load_full();
            let listener = snapshot.edge.listener(peer.local);
            let limits = listener.limits;
            let head_limits = HeadLimits {
                max_header_bytes: limits.max_header_bytes,
                max_headers: limits.max_headers,
                max_uri_bytes: limits.max_uri_bytes,
            };
            let idle = if served == 0 {
                limits.header_timeout
            } else {
                limits.keepalive_timeout
            };
            let started = Instant::now();
            let (len, body, upgrade) = match read_head(
                &mut guarded,
                &mut buf,
                &head_limits,
                idle,
                limits.header_timeout,
            )
            .await
            {
                HeadRead::Closed => return,
                HeadRead::Refused(reason) => {
                    self.refuse(&mut guarded, reason, &snapshot, peer, &buf, started)
                        .await;
                    return;
                }
                HeadRead::Ready { len, body, upgrade } => (len, body, upgrade),
            };
            served += 1;
            let mut framing = match body {
                Body::None => Framing::Done,
                Body::Length(n) => Framing::length(n),
                Body::Chunked => Framing::chunked(),
            };
            let Ok(in_buffer) = framing.advance(&buf[len..]) else {
                self.refuse(
                    &mut guarded,
                    Reason::InvalidChunked,
                    &snapshot,
                    peer,
                    &buf,
                    started,
                )
                .await;
                return;
            };
            guarded.passthrough = upgrade;
            guarded.framing = framing;
            guarded.stash_limit = limits.max_header_bytes;
            let prefix = buf.split_to(len + in_buffer);
            drop(snapshot);

            let last = served >= limits.max_requests_per_connection || *shutdown.borrow();
            let mut session = ServerSession::new_http1(guarded);
            let keepalive = limits.keepalive_timeout.as_secs().max(1);
            session.set_keepalive((!limits.keepalive_timeout.is_zero()).then_some(keepalive));
            if last || limits.keepalive_timeout.is_zero() {
                // Pingora re-reads the client's keep-alive wish when it parses the head; a
                // session with no reuses left answers `Connection: close` whatever it asked.
                session.set_keepalive_reuses_remaining(Some(0));
            }
            session.set_pipelined_prefix(prefix);
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, _) = reused.consume();
            guarded = match stream.into_any().downcast::<Guarded>() {
                Ok(g) => g,
                Err(_) => return,
            };
            if last {
                return;
            }
            // Bytes read past the request: first what was already buffered, then the stash.
            let stash = std::mem::take(&mut guarded.stash);
            buf.extend_from_slice(&stash);
        }
    }

    /// Answer a refused request head and close the connection.
    async fn refuse(
        &self,
        guarded: &mut Guarded,
        reason: Reason,
        snapshot: &Snapshot,
        peer: &Peer,
        head: &[u8],
        started: Instant,
    ) {
        let id = self.count(reason, snapshot, peer, head, started);
        let response = respond::raw_error(reason.status(), reason.message(), &id);
        let write = async {
            guarded.inner.write_all(&response).await?;
            guarded.inner.flush().await
        };
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
        let _ = guarded.inner.shutdown().await;
    }

    /// Refuse a connection the listener or the client's address has no room for: a 503 on a
    /// best-effort write, without reading anything.
    async fn refuse_connection<S>(&self, mut stream: S, snapshot: &Snapshot, peer: &Peer)
    where
        S: tokio::io::AsyncWrite + Unpin,
    {
        let id = self.count(
            Reason::TooManyConnections,
            snapshot,
            peer,
            b"",
            Instant::now(),
        );
        let response = respond::raw_error(503, Reason::TooManyConnections.message(), &id);
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(&response)).await;
    }

    /// Count a refusal and write its access log line; returns the request id.
    fn count(
        &self,
        reason: Reason,
        snapshot: &Snapshot,
        peer: &Peer,
        head: &[u8],
        started: Instant,
    ) -> http::HeaderValue {
        let id = request_id::generate();
        snapshot.edge_refusals.count(reason);
        let (method, path) = request_line(head);
        let wall = SystemTime::now();
        let elapsed = started.elapsed();
        let method_value = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
        snapshot
            .unrouted
            .observe(&method_value, reason.status(), elapsed, wall);
        if let Some(log) = self.access_log.as_ref().filter(|_| snapshot.access_log) {
            log.log(&AccessEntry {
                time: wall,
                request_id: id.to_str().unwrap_or(""),
                trace_id: None,
                client_ip: peer.client.map(|a| a.ip()),
                method: &method,
                host: "",
                path: &path,
                route: None,
                upstream: None,
                target: None,
                status: reason.status(),
                bytes_sent: 0,
                bytes_received: head.len(),
                duration: elapsed,
                upstream_duration: None,
                consumer: None,
                auth: None,
                firewall: None,
                error: Some(reason.message()),
            });
        }
        id
    }
}

/// Read a request head into `buf` (which may already hold the start of it). Waits `idle` for
/// the first byte, then at most `header_timeout` for the rest.
async fn read_head(
    guarded: &mut Guarded,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    idle: Duration,
    header_timeout: Duration,
) -> HeadRead {
    let start = Instant::now();
    let mut deadline = (!buf.is_empty()).then(|| start + header_timeout);
    loop {
        if !buf.is_empty() {
            match head::scan(buf, limits) {
                Scan::Partial => {}
                Scan::Complete { len, body, upgrade } => {
                    return HeadRead::Ready { len, body, upgrade }
                }
                Scan::Refused(reason) => return HeadRead::Refused(reason),
            }
        }
        buf.reserve(4096);
        let until = deadline.unwrap_or(start + idle);
        // A tokio timer: Pingora's timer wheel would be cheaper per read, but its clock thread
        // ticks every millisecond while any timer is pending, and every idle kept-alive
        // connection has one here.
        match tokio::time::timeout_at(until.into(), guarded.inner.read_buf(buf)).await {
            Err(_) if deadline.is_some() => return HeadRead::Refused(Reason::HeaderTimeout),
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
            Ok(Ok(_)) => {
                if deadline.is_none() {
                    deadline = Some(Instant::now() + header_timeout);
                }
            }
        }
    }
}

/// Read and remove the PROXY protocol header; `Ok(None)` when it names no client (LOCAL).
async fn read_proxy_header(
    stream: &mut Stream,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match proxy_protocol::parse(buf) {
            Parsed::Complete { len, source } => {
                let _ = buf.split_to(len);
                return Ok(source);
            }
            Parsed::Invalid => return Err(()),
            Parsed::Partial => {}
        }
        if buf.len() > proxy_protocol::MAX_LEN {
            return Err(());
        }
        buf.reserve(512);
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(()),
        }
    }
}

/// The method and path (no query) of a head's request line, for the access log; bounded and
/// lossy, since the head was refused and may be anything.
fn request_line(head: &[u8]) -> (String, String) {
    const MAX: usize = 256;
    let line = head
        .split(|&b| b == b'\n')
        .find(|l| !l.is_empty() && *l != b"\r")
        .unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let lossy = |b: &[u8]| {
        String::from_utf8_lossy(&b[..b.len().min(MAX)])
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
    };
    (lossy(method), lossy(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_for_the_log_drops_the_query_and_controls() {
        let (m, p) = request_line(b"\r\nGET /a/b?token=secret HTTP/1.1\r\nHost: x\r\n");
        assert_eq!((m.as_str(), p.as_str()), ("GET", "/a/b"));
        let (m, p) = request_line(b"");
        assert_eq!((m.as_str(), p.as_str()), ("", ""));
        let (_, p) = request_line(b"GET /\x1b[31mred HTTP/1.1\r\n");
        assert_eq!(p, "/[31mred");
    }
}
