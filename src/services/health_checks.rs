//! Active health checks: every tick, the pools of the current snapshot whose interval is due
//! get one check per target (`upstream::health::run_check`).

use crate::snapshot::SnapshotStore;
use crate::upstream::health::run_check;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Background service running the active checks of the current snapshot's pools.
pub struct HealthChecker {
    store: Arc<SnapshotStore>,
}

impl HealthChecker {
    pub fn new(store: Arc<SnapshotStore>) -> Self {
        Self { store }
    }
}

/// Resolution of the check scheduler; intervals shorter than this are rounded up to it.
const TICK: Duration = Duration::from_millis(50);

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_due: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.store.load();
            let now = Instant::now();
            for pool in &snapshot.pools {
                let Some(hc) = &pool.health_check else {
                    continue;
                };
                let due = next_due.entry(pool.name.clone()).or_insert(now);
                if *due > now {
                    continue;
                }
                *due = now + hc.interval;
                for index in 0..pool.targets.len() {
                    tokio::spawn(run_check(pool.clone(), index));
                }
            }
        }
    }
}
