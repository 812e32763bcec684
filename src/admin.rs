//! The admin listener (127.0.0.1:9901 by default): Prometheus metrics, liveness and readiness.

use crate::observe::metrics::Metrics;
use crate::snapshot::SnapshotStore;
use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// Serves `/metrics`, `/-/health` and `/-/ready`.
pub struct AdminApp {
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
}

impl AdminApp {
    pub fn new(store: Arc<SnapshotStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }

    /// The response for a method and path; separate from the session for testing.
    pub fn handle(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed"}"#.into(),
            );
        }
        match path {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/-/health" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
            "/-/ready" => {
                let snapshot = self.store.load();
                let body = serde_json::json!({
                    "ready": true,
                    "config_version": snapshot.version,
                });
                json(StatusCode::OK, body.to_string())
            }
            _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into()),
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<Vec<u8>> {
    reply(status, "application/json", body.into_bytes())
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let len = resp.body().len();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        self.handle(&req.method, req.uri.path())
    }
}
