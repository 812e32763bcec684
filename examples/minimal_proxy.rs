//! The framework floor: the smallest Pingora `ProxyHttp` that forwards every request to one
//! upstream, built with gatehouse's release settings (fat LTO, mimalloc, one thread, no work
//! stealing, no compression module). `benches/compare.sh` measures gatehouse against it.
//!
//! `MINIMAL_TIMEOUTS=1` sets gatehouse's per-peer timeouts and `MINIMAL_FORWARDING=1` adds the
//! headers gatehouse adds (`X-Forwarded-For/-Proto/-Host` and a request id both ways) the
//! plain way, through Pingora's `insert_header`: with both, this is a hand-written Pingora
//! proxy with gatehouse's forwarding behaviour and none of its routing or policy machinery.
//!
//!   cargo run --release --example minimal_proxy -- 127.0.0.1:18085 127.0.0.1:18081

use async_trait::async_trait;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Minimal {
    upstream: SocketAddr,
    /// Set the same per-peer timeouts gatehouse sets (MINIMAL_TIMEOUTS=1), to separate what
    /// Pingora's timers cost from what gatehouse's own code costs.
    timeouts: bool,
    forwarding: bool,
}

#[async_trait]
impl ProxyHttp for Minimal {
    /// The request id.
    type CTX = String;

    fn new_ctx(&self) -> String {
        String::new()
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        id: &mut String,
    ) -> Result<()> {
        if self.forwarding {
            if let Some(ip) = session.client_addr().and_then(|a| a.as_inet()) {
                req.insert_header("x-forwarded-for", ip.ip().to_string())?;
            }
            req.insert_header("x-forwarded-proto", "http")?;
            if let Some(host) = session.req_header().headers.get("host").cloned() {
                req.insert_header("x-forwarded-host", host)?;
            }
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            *id = format!("{:016x}{n:016x}", std::process::id());
            req.insert_header("x-request-id", id.as_str())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        id: &mut String,
    ) -> Result<()> {
        if self.forwarding {
            resp.insert_header("x-request-id", id.as_str())?;
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut String,
    ) -> Result<Box<HttpPeer>> {
        let mut peer = Box::new(HttpPeer::new(self.upstream, false, String::new()));
        if self.timeouts {
            let o = &mut peer.options;
            o.connection_timeout = Some(std::time::Duration::from_secs(2));
            o.read_timeout = Some(std::time::Duration::from_secs(30));
            o.write_timeout = Some(std::time::Duration::from_secs(30));
            o.idle_timeout = Some(std::time::Duration::from_secs(60));
        }
        Ok(peer)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: minimal_proxy LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let Ok(upstream) = upstream.parse() else {
        eprintln!("bad upstream address {upstream}");
        std::process::exit(2);
    };
    let dir = std::env::temp_dir();
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        upstream_keepalive_pool_size: 4096,
        pid_file: dir.join("minimal_proxy.pid").display().to_string(),
        upgrade_sock: dir.join("minimal_proxy.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Minimal {
            upstream,
            timeouts: std::env::var_os("MINIMAL_TIMEOUTS").is_some(),
            forwarding: std::env::var_os("MINIMAL_FORWARDING").is_some(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
