//! OCSP stapling: every second, each served certificate that names a responder gets its
//! response fetched when due (none yet, or halfway to its `nextUpdate`), checked
//! (`tls::ocsp::verify`) and cached for handshakes. A failure keeps the last good response while
//! it is fresh, retries with backoff (2 s doubling to an hour), is counted, and is logged once
//! per run of failures.

use crate::observe::metrics::Metrics;
use crate::snapshot::SnapshotStore;
use crate::tls::ocsp::{self, Query};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const FIRST_RETRY: i64 = 2;
const LONGEST_RETRY: i64 = 3600;
/// The soonest a good response is fetched again.
const SHORTEST_REFRESH: i64 = 30;

/// Background service fetching the staples of the current snapshot's certificates.
pub struct OcspStapler {
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
}

impl OcspStapler {
    pub fn new(store: Arc<SnapshotStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }
}

/// When a certificate's staple is next fetched, and how its failures are going.
#[derive(Default)]
struct Due {
    at: i64,
    backoff: i64,
    failing: bool,
}

async fn fetch(client: &reqwest::Client, q: &Query) -> Result<Vec<u8>, String> {
    let resp = client
        .post(&q.url)
        .header("content-type", "application/ocsp-request")
        .body(q.request.clone())
        .send()
        .await
        .map_err(|e| format!("responder unreachable: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "responder answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the response: {e}"))?;
    Ok(body.to_vec())
}

#[async_trait]
impl BackgroundService for OcspStapler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "OCSP stapling off: no HTTP client");
                return;
            }
        };
        let mut due: HashMap<[u8; 32], Due> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.store.load();
            let now = crate::clock::unix_secs() as i64;
            // File certificates and the ones issued through `[acme]`.
            let issued = self.store.acme.certificates();
            let certificates: Vec<&Arc<crate::tls::CertEntry>> = if snapshot.ocsp_stapling {
                snapshot.certificates.entries().chain(&issued).collect()
            } else {
                Vec::new()
            };
            let served: HashSet<[u8; 32]> = certificates.iter().map(|e| e.fingerprint).collect();
            self.store
                .staples
                .retain(|k, s| served.contains(k) && s.fresh(now));
            due.retain(|k, _| served.contains(k));
            for entry in certificates {
                let d = due.entry(entry.fingerprint).or_default();
                if d.at > now {
                    continue;
                }
                let q = match ocsp::query(entry) {
                    Ok(Some(q)) => q,
                    Ok(None) => {
                        // No responder named: nothing to staple for this certificate.
                        d.at = i64::MAX;
                        continue;
                    }
                    Err(reason) => {
                        tracing::warn!(certificate = %entry.name, %reason, "cannot staple OCSP");
                        d.at = i64::MAX;
                        continue;
                    }
                };
                let got = match fetch(&client, &q).await {
                    Ok(der) => ocsp::verify(entry, &der, now),
                    Err(e) => Err(e),
                };
                match got {
                    Ok(staple) => {
                        if d.failing {
                            tracing::info!(certificate = %entry.name, "OCSP fetch works again");
                        }
                        *d = Due {
                            at: staple.refresh_at().max(now + SHORTEST_REFRESH),
                            backoff: 0,
                            failing: false,
                        };
                        self.metrics
                            .ocsp_staple_expiry(&entry.name, staple.next_update.unwrap_or(0));
                        self.store.staples.put(entry.fingerprint, staple);
                    }
                    Err(reason) => {
                        self.metrics.ocsp_fetch_failed(&entry.name);
                        let kept = self.store.staples.get(&entry.fingerprint, now);
                        if !d.failing {
                            tracing::warn!(
                                certificate = %entry.name,
                                responder = %q.url,
                                %reason,
                                kept_staple = kept.is_some(),
                                "OCSP fetch failed; retrying with backoff"
                            );
                        }
                        if kept.is_none() {
                            self.metrics.ocsp_staple_expiry(&entry.name, 0);
                        }
                        d.failing = true;
                        d.backoff = (d.backoff * 2).clamp(FIRST_RETRY, LONGEST_RETRY);
                        d.at = now + d.backoff;
                    }
                }
            }
        }
    }
}
