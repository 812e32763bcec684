//! The client connection as Pingora sees it: exactly the bytes of the current request.
//!
//! Pingora reads request bodies in large buffers. On a kept-alive connection such a read can
//! take in the start of the next, pipelined, request, which Pingora then discards together
//! with the connection: the client gets no answer for it. [`Guarded`] follows the body's
//! framing ([`Framing`]) and stops each read at the end of the body; bytes past it are kept
//! in a stash for `proxy::conn`, which reads the next request head itself. Once the body is
//! complete, reads only watch for the client closing the connection.
//!
//! It also carries the client address of a PROXY protocol header, so that Pingora's
//! `client_addr()` is the client's, not the load balancer's.

use crate::edge::framing::Framing;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use pingora::protocols::{SocketDigest, TimingDigest};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client connection with the framing of its current request.
#[derive(Debug)]
pub struct Guarded {
    pub inner: Stream,
    /// The body still to come of the request Pingora is reading.
    pub framing: Framing,
    /// The connection may be upgraded (WebSocket): no framing applies to what follows.
    pub passthrough: bool,
    /// Bytes read past the current request: the start of the next one.
    pub stash: BytesMut,
    /// Most bytes stashed while the current request is being served.
    pub stash_limit: usize,
    /// The socket digest with the PROXY protocol source as the peer.
    proxied: Option<Arc<SocketDigest>>,
    /// Where reads after the body land before they join the stash; allocated on first use.
    scratch: Vec<u8>,
}

impl Guarded {
    pub fn new(inner: Stream) -> Self {
        Self {
            inner,
            framing: Framing::Done,
            passthrough: false,
            stash: BytesMut::new(),
            stash_limit: 0,
            proxied: None,
            scratch: Vec::new(),
        }
    }

    /// Report `client` as the peer address from now on (PROXY protocol).
    pub fn set_client(&mut self, client: std::net::SocketAddr) {
        let local = self
            .inner
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned());
        let digest = SocketDigest::from_raw_fd(-1);
        let _ = digest
            .peer_addr
            .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(
                client,
            )));
        let _ = digest.local_addr.set(local);
        let _ = digest.original_dst.set(None);
        self.proxied = Some(Arc::new(digest));
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.passthrough {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if !this.framing.is_done() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let new = &buf.filled()[before..];
            let body = this.framing.advance(new).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "malformed chunked request body")
            })?;
            if body < new.len() {
                this.stash.extend_from_slice(&new[body..]);
                buf.set_filled(before + body);
            }
            return Poll::Ready(Ok(()));
        }
        // The request is complete; Pingora reads only to notice the client leaving. Keep
        // anything that arrives for the next request, up to the limit.
        if this.scratch.is_empty() {
            this.scratch = vec![0; 2048];
        }
        loop {
            if this.stash.len() >= this.stash_limit {
                return Poll::Pending;
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // A client that pipelined requests and then closed its side still wants the
                // answers: only a close with nothing pending means it went away.
                if this.stash.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
            this.stash.extend_from_slice(rb.filled());
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        match &self.proxied {
            Some(d) => Some(d.clone()),
            None => self.inner.get_socket_digest(),
        }
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// Peeking would bypass the framing; Pingora only peeks for an h2c preface, which this
/// gateway does not accept.
#[async_trait]
impl Peek for Guarded {}
