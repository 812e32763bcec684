//! Ban upkeep, once a second: expired bans are dropped, `gatehouse_bans_active` is set, and
//! when `[firewall.bans] shared = true` the table follows the Redis hash every instance writes:
//! bans decided elsewhere are added, bans lifted elsewhere are removed, and bans decided here
//! that did not reach Redis yet are written again.

use crate::firewall::bans::{parse_ban, share};
use crate::firewall::{BanKey, BanTable};
use crate::limit::redis::RedisLimiter;
use crate::snapshot::{Registries, SnapshotStore};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(1);

/// The background service.
pub struct BanSync {
    store: Arc<SnapshotStore>,
    registries: Arc<Registries>,
}

impl BanSync {
    pub fn new(store: Arc<SnapshotStore>, registries: Arc<Registries>) -> Self {
        Self { store, registries }
    }
}

/// One round with Redis: read every shared ban, drop the expired ones there, merge the rest
/// into `table`, and write local bans Redis does not have yet.
async fn sync(table: &BanTable, redis: &RedisLimiter, now_ms: u64) {
    let remote = match redis.bans().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read shared bans");
            return;
        }
    };
    let mut expired = Vec::new();
    let mut live = Vec::new();
    for (field, value) in remote {
        match (BanKey::parse(&field), parse_ban(&value)) {
            (Some(key), Some(ban)) if ban.until_ms > now_ms => live.push((key, ban)),
            _ => expired.push(field),
        }
    }
    if let Err(e) = redis.remove_bans(&expired).await {
        tracing::debug!(error = %e, "cannot drop expired shared bans");
    }
    let (added, removed) = table.merge_shared(live);
    for key in added {
        tracing::info!(ban = %key.to_text(), "ban learnt from another instance");
    }
    for key in removed {
        tracing::info!(ban = %key.to_text(), "ban lifted by another instance");
    }
    for (key, ban) in table.list(now_ms) {
        if !ban.shared {
            share(redis, &key, &ban).await;
        }
    }
}

#[async_trait]
impl BackgroundService for BanSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let table = self.registries.firewall.bans.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now_ms = crate::clock::now_millis();
            if let Some(redis) = self.store.load().shared_bans() {
                sync(&table, &redis, now_ms).await;
            }
            let active = table.purge(now_ms);
            self.registries.metrics.bans_active.set(active as i64);
        }
    }
}
