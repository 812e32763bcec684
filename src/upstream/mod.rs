//! Upstream pools: targets, load balancing that skips unhealthy targets, and the peer a request
//! is sent to. Health state lives in [`health::HealthRegistry`] so it survives config reloads.

pub mod health;

pub use crate::config::HashKey;
use crate::config::{Balance, ConfigError, KeyPath, PassiveHealthConfig, UpstreamConfig};
use crate::observe::metrics::UpstreamMetrics;
use health::{HealthRegistry, TargetState};
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection, RoundRobin};
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::upstreams::peer::HttpPeer;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// One upstream server of a pool.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `ip:port` as text, for logs and metric labels.
    pub label: String,
    pub weight: u32,
    pub state: Arc<TargetState>,
}

enum Selector {
    RoundRobin(Arc<RoundRobin>),
    Hash(Arc<KetamaHashing>, HashKey),
}

/// A compiled `[upstreams.NAME]`.
pub struct Pool {
    pub name: String,
    pub targets: Vec<Target>,
    selector: Selector,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_retries: u8,
    pub passive: PassiveHealthConfig,
    pub health_check: Option<crate::config::HealthCheckConfig>,
    /// TLS to the targets, when configured.
    pub tls: Option<crate::tls::upstream::UpstreamTls>,
    /// Send the RFC 7239 `Forwarded` header too.
    pub forwarded_header: bool,
    /// Response headers removed before the client sees them (`hide_headers`).
    pub hide_headers: Vec<http::HeaderName>,
    /// Header names keep their spelling (see `UpstreamConfig::preserve_header_case`).
    pub preserve_header_case: bool,
    pub metrics: UpstreamMetrics,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

/// Inputs a selection may hash on.
pub struct SelectInput<'a> {
    pub client_ip: Option<IpAddr>,
    pub path: &'a [u8],
    pub headers: &'a http::HeaderMap,
}

impl Pool {
    /// Build a pool; target names are resolved here, once, never per request. Shares the
    /// targets' health state but changes nothing in it (see [`Pool::activate`]).
    /// Errors (a name that does not resolve, two names for one address, unreadable TLS
    /// files) are reported under `path`, the pool's `upstreams.NAME`.
    pub fn compile(
        name: &str,
        path: &KeyPath,
        config: &UpstreamConfig,
        health: &HealthRegistry,
        metrics: UpstreamMetrics,
    ) -> Result<Self, ConfigError> {
        let at = |i: usize| path.key("targets").index(i).key("address");
        let mut targets = Vec::with_capacity(config.targets.len());
        let mut backends = BTreeSet::new();
        for (i, t) in config.targets.iter().enumerate() {
            let addr = t
                .address
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    ConfigError::new(at(i), format!("cannot resolve {:?}", t.address))
                })?;
            if targets.iter().any(|x: &Target| x.addr == addr) {
                return Err(ConfigError::new(at(i), format!("{addr} is listed twice")));
            }
            let mut backend = Backend {
                addr: PeerAddr::Inet(addr),
                weight: t.weight as usize,
                ext: http::Extensions::new(),
            };
            backend.ext.insert(i);
            backends.insert(backend);
            let label = addr.to_string();
            targets.push(Target {
                state: health.state(name, addr),
                addr,
                label,
                weight: t.weight,
            });
        }
        let selector = match config.balance {
            Balance::RoundRobin => Selector::RoundRobin(Arc::new(RoundRobin::build(&backends))),
            Balance::ConsistentHash => {
                let key = config.hash_key.clone().unwrap_or(HashKey::ClientIp);
                Selector::Hash(Arc::new(KetamaHashing::build(&backends)), key)
            }
        };
        let first = config.targets.first().map_or("", |t| t.address.as_str());
        let tls = config
            .tls
            .as_ref()
            .map(|t| crate::tls::upstream::UpstreamTls::compile(t, first, &path.key("tls")))
            .transpose()?;
        Ok(Self {
            name: name.to_string(),
            targets,
            selector,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            idle_timeout: config.idle_timeout,
            connect_retries: config.connect_retries,
            passive: config.passive.clone(),
            health_check: config.health_check.clone(),
            tls,
            forwarded_header: config.forwarded_header,
            hide_headers: (config.hide_headers.iter())
                .filter_map(|h| {
                    http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok()
                })
                .collect(),
            preserve_header_case: config.preserve_header_case,
            metrics,
        })
    }

    /// Bring the shared health state and gauges in line with this pool. Runs only once the
    /// pool's snapshot is the one in use: compiling a config that is then refused must leave
    /// the running config's targets as they are.
    pub fn activate(&self) {
        for t in &self.targets {
            if self.health_check.is_none() {
                // Nothing would ever bring back a target that failed checks a previous
                // config ran.
                t.state.reset_active();
            }
            self.metrics.set_healthy(&t.label, t.state.is_healthy());
        }
    }

    /// Pick an available target, skipping those in `exclude` (a bit per target index that
    /// already failed for this request) while another one is available. Returns the index into
    /// `targets`, or `None` when no target is healthy.
    pub fn select(&self, input: &SelectInput<'_>, exclude: u64) -> Option<usize> {
        let now = crate::clock::now_millis();
        let excluded = |i: usize| exclude & 1u64.checked_shl(i as u32).unwrap_or(0) != 0;
        let available = |i: usize| self.targets[i].state.is_available(now);
        let usable = |i: usize| !excluded(i) && available(i);
        let max_steps = self.targets.len() * 2;
        let first = match &self.selector {
            Selector::RoundRobin(sel) => first_usable(sel.iter(b""), max_steps, &usable),
            Selector::Hash(sel, key) => {
                let mut ip_buf = [0u8; 16];
                let bytes: &[u8] = match key {
                    HashKey::ClientIp => match input.client_ip {
                        Some(IpAddr::V4(ip)) => {
                            ip_buf[..4].copy_from_slice(&ip.octets());
                            &ip_buf[..4]
                        }
                        Some(IpAddr::V6(ip)) => {
                            ip_buf = ip.octets();
                            &ip_buf
                        }
                        None => b"",
                    },
                    HashKey::Path => input.path,
                    HashKey::Header(name) => {
                        input.headers.get(name).map_or(&b""[..], |v| v.as_bytes())
                    }
                };
                first_usable(sel.iter(bytes), max_steps, &usable)
            }
        };
        // Selection iterators fall back to pseudo-random picks; a linear pass guarantees that a
        // healthy target is found whenever one exists.
        first
            .or_else(|| (0..self.targets.len()).find(|&i| usable(i)))
            .or_else(|| (0..self.targets.len()).find(|&i| available(i)))
    }

    /// The Pingora peer for a target, with this pool's timeouts.
    pub fn peer(&self, index: usize) -> Box<HttpPeer> {
        let mut peer = Box::new(HttpPeer::new(
            self.targets[index].addr,
            false,
            String::new(),
        ));
        let o = &mut peer.options;
        o.connection_timeout = Some(self.connect_timeout);
        o.read_timeout = Some(self.read_timeout);
        o.write_timeout = Some(self.write_timeout);
        o.idle_timeout = Some(self.idle_timeout);
        if let Some(tls) = &self.tls {
            tls.apply(&mut peer);
        }
        peer
    }

    /// Record a failed connection attempt (passive health).
    pub fn report_connect_failure(&self, index: usize) {
        let target = &self.targets[index];
        if target.state.record_passive_failure(&self.passive) {
            tracing::warn!(
                upstream = %self.name,
                target = %target.label,
                ejected_for = ?self.passive.fail_timeout,
                "target ejected after consecutive connect failures"
            );
        }
    }

    /// Record a successful connection (passive health).
    pub fn report_connect_success(&self, index: usize) {
        self.targets[index].state.record_passive_success();
    }
}

fn first_usable<I: BackendIter>(
    mut iter: I,
    max_steps: usize,
    usable: &impl Fn(usize) -> bool,
) -> Option<usize> {
    for _ in 0..max_steps {
        let index = *iter.next()?.ext.get::<usize>()?;
        if usable(index) {
            return Some(index);
        }
    }
    None
}

#[cfg(test)]
mod tests;
