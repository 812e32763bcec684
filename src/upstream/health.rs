//! Target health: passive ejection after connect failures seen by real traffic, and active HTTP
//! checks run by a background service. State is kept per (pool, address) in a registry that
//! outlives config snapshots, so a reload neither forgets a dead target nor resets a live one.

use super::Pool;
use crate::clock::now_millis;
use crate::config::{HealthCheckConfig, PassiveHealthConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Health of one target. All fields are atomics: the request path only loads them.
#[derive(Debug)]
pub struct TargetState {
    /// Verdict of active checks; targets start healthy so a new config serves at once.
    healthy: AtomicBool,
    check_passes: AtomicU32,
    check_failures: AtomicU32,
    connect_failures: AtomicU32,
    /// Passive ejection deadline in [`now_millis`] time; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Bumped when active results are forgotten, so a check that was already under way then
    /// cannot record its verdict afterwards, when no later check would ever undo it.
    active_epoch: AtomicU64,
}

impl Default for TargetState {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            check_passes: AtomicU32::new(0),
            check_failures: AtomicU32::new(0),
            connect_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active_epoch: AtomicU64::new(0),
        }
    }
}

impl TargetState {
    /// Whether the active checks consider the target healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Whether the target may receive traffic at `now` ([`now_millis`]).
    pub fn is_available(&self, now: u64) -> bool {
        self.healthy.load(Relaxed) && self.ejected_until.load(Relaxed) <= now
    }

    /// Count a connect failure; returns true when this failure ejected the target.
    pub fn record_passive_failure(&self, config: &PassiveHealthConfig) -> bool {
        if config.max_fails == 0 {
            return false;
        }
        let n = self.connect_failures.fetch_add(1, Relaxed) + 1;
        if n < config.max_fails {
            return false;
        }
        self.connect_failures.store(0, Relaxed);
        let until = now_millis() + config.fail_timeout.as_millis() as u64;
        self.ejected_until.store(until, Relaxed);
        true
    }

    /// Reset the connect failure streak. Loads first so the common case does not write a
    /// cache line shared by every worker thread.
    pub fn record_passive_success(&self) {
        if self.connect_failures.load(Relaxed) != 0 {
            self.connect_failures.store(0, Relaxed);
        }
    }

    /// Forget active check results: the pool no longer runs checks.
    pub fn reset_active(&self) {
        self.active_epoch.fetch_add(1, Relaxed);
        self.healthy.store(true, Relaxed);
        self.check_passes.store(0, Relaxed);
        self.check_failures.store(0, Relaxed);
    }

    /// Changes each time active results are forgotten ([`Self::reset_active`]).
    pub fn active_epoch(&self) -> u64 {
        self.active_epoch.load(Relaxed)
    }

    /// Apply one active check result; returns the new verdict when it changed.
    pub fn record_check(&self, passed: bool, config: &HealthCheckConfig) -> Option<bool> {
        if passed {
            self.check_failures.store(0, Relaxed);
            // A passing check proves the target accepts connections again.
            self.ejected_until.store(0, Relaxed);
            let n = self.check_passes.fetch_add(1, Relaxed) + 1;
            if !self.is_healthy() && n >= config.healthy_threshold {
                self.healthy.store(true, Relaxed);
                return Some(true);
            }
        } else {
            self.check_passes.store(0, Relaxed);
            let n = self.check_failures.fetch_add(1, Relaxed) + 1;
            if self.is_healthy() && n >= config.unhealthy_threshold {
                self.healthy.store(false, Relaxed);
                return Some(false);
            }
        }
        None
    }
}

/// Health state by pool name and target address, of the snapshot in use: what the next
/// compiled config starts from, so a reload keeps every target's health.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    states: Mutex<HashMap<(String, SocketAddr), Arc<TargetState>>>,
}

impl HealthRegistry {
    /// The state the config in use has for a target, else a fresh one. Only reads: a compiled
    /// snapshot that is never used leaves nothing here. Called while compiling, never per
    /// request.
    pub fn state(&self, pool: &str, addr: SocketAddr) -> Arc<TargetState> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .get(&(pool.to_string(), addr))
            .cloned()
            .unwrap_or_default()
    }

    /// Make the targets of the snapshot just put in use the ones the next compile starts from;
    /// targets it no longer has are forgotten.
    pub fn adopt<'a>(
        &self,
        targets: impl Iterator<Item = (&'a str, SocketAddr, &'a Arc<TargetState>)>,
    ) {
        let next = targets
            .map(|(pool, addr, state)| ((pool.to_string(), addr), state.clone()))
            .collect();
        *self.states.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }
}

/// Run one active check of `pool.targets[index]` and record the result.
pub async fn run_check(pool: Arc<Pool>, index: usize) {
    let Some(hc) = &pool.health_check else {
        return;
    };
    let target = &pool.targets[index];
    let epoch = target.state.active_epoch();
    let result = tokio::time::timeout(hc.timeout, probe(target.addr, hc, pool.tls.as_ref())).await;
    if target.state.active_epoch() != epoch {
        // A reload took the checks away while this one ran.
        return;
    }
    if let Ok(Err(e)) = &result {
        if out_of_descriptors(e) {
            // Our own shortage, not the target's: no verdict either way.
            tracing::warn!(upstream = %pool.name, target = %target.label, "health check skipped: out of file descriptors");
            return;
        }
    }
    let passed = matches!(result, Ok(Ok(status)) if (200..400).contains(&status));
    if let Some(healthy) = target.state.record_check(passed, hc) {
        pool.metrics.set_healthy(&target.label, healthy);
        let outcome = match result {
            Ok(Ok(status)) => format!("status {status}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", hc.timeout),
        };
        if healthy {
            tracing::info!(upstream = %pool.name, target = %target.label, %outcome, "target healthy");
        } else {
            tracing::warn!(upstream = %pool.name, target = %target.label, %outcome, "target unhealthy");
        }
    }
}

/// Whether an I/O error says this process (EMFILE) or the system (ENFILE) ran out of file
/// descriptors: a failure of the gateway, never evidence against an upstream.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// One HTTP/1.1 GET, over TLS when the pool uses TLS; returns the response status.
async fn probe(
    addr: SocketAddr,
    hc: &HealthCheckConfig,
    tls: Option<&crate::tls::upstream::UpstreamTls>,
) -> std::io::Result<u16> {
    let tcp = TcpStream::connect(addr).await?;
    let host = hc.host.clone().unwrap_or_else(|| match tls {
        Some(t) if !t.sni.is_empty() => t.sni.clone(),
        _ => addr.to_string(),
    });
    match tls {
        Some(t) => exchange(t.connect(tcp).await?, &host, hc).await,
        None => exchange(tcp, &host, hc).await,
    }
}

async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    mut stream: S,
    host: &str,
    hc: &HealthCheckConfig,
) -> std::io::Result<u16> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gatehouse-health-check\r\n\
         Connection: close\r\n\r\n",
        hc.path
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    parse_status(&buf[..len]).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/1.x response")
    })
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hc() -> HealthCheckConfig {
        HealthCheckConfig {
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn thresholds_decide_transitions() {
        let s = TargetState::default();
        let hc = hc();
        assert_eq!(s.record_check(false, &hc), None);
        assert_eq!(s.record_check(false, &hc), None);
        assert_eq!(s.record_check(false, &hc), Some(false));
        assert!(!s.is_available(now_millis()));
        assert_eq!(s.record_check(true, &hc), None);
        assert_eq!(
            s.record_check(false, &hc),
            None,
            "a failure resets the pass streak"
        );
        assert_eq!(s.record_check(true, &hc), None);
        assert_eq!(s.record_check(true, &hc), Some(true));
        assert!(s.is_available(now_millis()));
    }

    #[test]
    fn forgetting_active_results_changes_the_epoch() {
        let s = TargetState::default();
        let hc = hc();
        for _ in 0..3 {
            s.record_check(false, &hc);
        }
        assert!(!s.is_healthy());
        let before = s.active_epoch();
        s.reset_active();
        assert!(s.is_healthy());
        assert_ne!(s.active_epoch(), before);
        assert_eq!(
            s.record_check(false, &hc),
            None,
            "the failure streak starts over"
        );
    }

    #[test]
    fn passive_failures_eject_for_fail_timeout() {
        let s = TargetState::default();
        let cfg = PassiveHealthConfig {
            max_fails: 2,
            fail_timeout: Duration::from_secs(10),
        };
        assert!(!s.record_passive_failure(&cfg));
        s.record_passive_success();
        assert!(!s.record_passive_failure(&cfg), "success resets the streak");
        assert!(s.record_passive_failure(&cfg));
        let now = now_millis();
        assert!(!s.is_available(now));
        assert!(s.is_available(now + 10_001));
    }

    #[test]
    fn passive_ejection_can_be_disabled() {
        let s = TargetState::default();
        let cfg = PassiveHealthConfig {
            max_fails: 0,
            fail_timeout: Duration::from_secs(10),
        };
        for _ in 0..10 {
            assert!(!s.record_passive_failure(&cfg));
        }
        assert!(s.is_available(now_millis()));
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0"), None);
    }

    #[test]
    fn registry_shares_adopted_state_by_pool_and_address() {
        let r = HealthRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = r.state("a", addr);
        // Looking up leaves nothing behind; only adopting remembers.
        assert!(!Arc::ptr_eq(&a, &r.state("a", addr)));
        r.adopt([("a", addr, &a)].into_iter());
        assert!(Arc::ptr_eq(&a, &r.state("a", addr)));
        assert!(!Arc::ptr_eq(&a, &r.state("b", addr)));
        r.adopt(std::iter::empty());
        assert!(!Arc::ptr_eq(&a, &r.state("a", addr)));
    }
}
