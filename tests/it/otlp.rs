//! A real OTLP trace receiver for the tests: the protocol's generated gRPC service (tonic) and
//! its HTTP/protobuf endpoint (`POST /v1/traces`, hyper), both decoding what gatehouse sends
//! with the protocol's own message types.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One span as the collector received it.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// 2 = server, 3 = client (OTLP `SpanKind`).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    /// `service.name` of the resource it came with.
    pub service: String,
    pub resource: BTreeMap<String, String>,
    pub scope: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    /// Request headers (gRPC metadata) of each export call.
    headers: Vec<BTreeMap<String, String>>,
}

/// A receiver on 127.0.0.1.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    /// How long each export waits for its answer (after its spans are recorded).
    delay: Duration,
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            received: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    fn record(&self, request: ExportTraceServiceRequest, headers: BTreeMap<String, String>) {
        let mut received = self.received.lock().unwrap();
        received.headers.push(headers);
        for rs in request.resource_spans {
            let resource: BTreeMap<String, String> = rs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .map(|kv| (kv.key, text(&kv.value)))
                .collect();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                for span in ss.spans {
                    let status = span.status.unwrap_or_default();
                    received.spans.push(Span {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .into_iter()
                            .map(|kv| (kv.key, text(&kv.value)))
                            .collect(),
                        status_code: status.code,
                        status_message: status.message,
                        service: service.clone(),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        start_ns: span.start_time_unix_nano,
                        end_ns: span.end_time_unix_nano,
                    });
                }
            }
        }
    }

    /// Spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Headers of the export requests received so far.
    pub fn headers(&self) -> Vec<BTreeMap<String, String>> {
        self.received.lock().unwrap().headers.clone()
    }

    /// The spans of `trace_id`, once at least `n` arrived (or after `timeout`).
    pub async fn trace(&self, trace_id: &str, n: usize, timeout: Duration) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.len() >= n || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// OTLP/HTTP with protobuf bodies on `POST /v1/traces`.
    pub async fn http() -> Self {
        Self::http_answering_after(Duration::ZERO).await
    }

    /// [`Self::http`], answering each export only after `delay`.
    pub async fn http_answering_after(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Self::new(listener.local_addr().unwrap());
        receiver.delay = delay;
        let this = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(this.clone().serve_http(stream));
            }
        });
        receiver
    }

    /// OTLP/HTTP on one connection.
    async fn serve_http<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.http_export(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .await;
    }

    async fn http_export(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let status = |code: u16| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
            r
        };
        if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
            return status(404);
        }
        if req.headers().get("content-type").map(|v| v.as_bytes())
            != Some(b"application/x-protobuf")
        {
            return status(415);
        }
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return status(400);
        };
        self.record(request, headers);
        tokio::time::sleep(self.delay).await;
        let mut r = Response::new(Full::new(Bytes::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        )));
        r.headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        r
    }

    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    pub async fn grpc() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self::new(listener.local_addr().unwrap());
        let service = TraceServiceServer::new(Grpc(receiver.clone()));
        tokio::spawn(async move {
            let incoming = tonic_incoming(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        receiver
    }
}

/// The accepted connections of `listener`, as tonic's server takes them.
fn tonic_incoming(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(s, _)| s);
        Some((accepted, listener))
    })
}

struct Grpc(Receiver);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        self.0.record(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A collector that accepts connections and never answers.
pub async fn silent() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

/// A TLS acceptor for `server`'s certificate, offering HTTP/2 by ALPN when `h2` (gRPC).
fn acceptor(server: &crate::pki::Issued, h2: bool) -> Arc<openssl::ssl::SslAcceptor> {
    use openssl::ssl::{AlpnError, SslAcceptor, SslMethod};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate(&openssl::x509::X509::from_pem(server.cert.as_bytes()).unwrap())
        .unwrap();
    b.set_private_key(&openssl::pkey::PKey::private_key_from_pem(server.key.as_bytes()).unwrap())
        .unwrap();
    if h2 {
        b.set_alpn_select_callback(|_, client| {
            openssl::ssl::select_next_proto(b"\x02h2", client).ok_or(AlpnError::NOACK)
        });
    }
    Arc::new(b.build())
}

/// The TLS handshake with a client on `tcp`; `None` when it fails.
async fn handshake(
    acceptor: &openssl::ssl::SslAcceptor,
    tcp: tokio::net::TcpStream,
) -> Option<tokio_openssl::SslStream<tokio::net::TcpStream>> {
    let ssl = openssl::ssl::Ssl::new(acceptor.context()).ok()?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).ok()?;
    std::pin::Pin::new(&mut stream).accept().await.ok()?;
    Some(stream)
}

impl Receiver {
    /// [`Self::http`] over TLS with `server`'s certificate.
    pub async fn https(server: &crate::pki::Issued) -> Self {
        let acceptor = acceptor(server, false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self::new(listener.local_addr().unwrap());
        let this = receiver.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (this, acceptor) = (this.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Some(stream) = handshake(&acceptor, tcp).await {
                        this.serve_http(stream).await;
                    }
                });
            }
        });
        receiver
    }

    /// [`Self::grpc`] over TLS with `server`'s certificate.
    pub async fn grpc_tls(server: &crate::pki::Issued) -> Self {
        let acceptor = acceptor(server, true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self::new(listener.local_addr().unwrap());
        let service = TraceServiceServer::new(Grpc(receiver.clone()));
        let incoming = futures_util::stream::unfold(listener, move |listener| {
            let acceptor = acceptor.clone();
            async move {
                loop {
                    let (tcp, _) = listener.accept().await.ok()?;
                    if let Some(stream) = handshake(&acceptor, tcp).await {
                        return Some((Ok::<_, std::io::Error>(TlsIo(stream)), listener));
                    }
                }
            }
        });
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        receiver
    }
}

/// A TLS connection as tonic's server takes one.
struct TlsIo(tokio_openssl::SslStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
