//! Shutdown without dropping requests that are already on their way.
//!
//! Once the listeners stop (SIGTERM, or SIGQUIT handing them to a new process), Pingora's
//! proxy drops every connection that is waiting for its next request. A client that opened a
//! connection, or sent its request, just before the hand-over then gets the connection closed
//! without an answer. [`Draining`] wraps the proxy and holds that clean-up back for the drain
//! period: requests that arrive meanwhile are served, with `Connection: close` (Pingora turns
//! keep-alive off once shutdown has begun), so clients move to the new process.

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

/// An HTTP app whose shutdown clean-up waits `drain` first; everything else is `inner`'s.
pub struct Draining<A> {
    inner: Arc<A>,
    drain: Duration,
}

impl<A> Draining<A> {
    pub fn new(inner: A, drain: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            drain,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for Draining<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.inner.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        tokio::time::sleep(self.drain).await;
        self.inner.http_cleanup().await;
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner
            .clone()
            .process_custom_session(stream, shutdown)
            .await
    }
}
