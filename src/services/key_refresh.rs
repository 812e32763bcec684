//! Keeps every remote key set (JWKS, OIDC discovery) of the current config fresh: a set that
//! is due is refetched in its own task, so a slow identity provider delays no other.

use crate::auth::jwks::KeySet;
use crate::snapshot::SnapshotStore;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Background service: refreshes every remote key set of the current config when due.
pub struct KeyRefresher {
    store: Arc<SnapshotStore>,
}

impl KeyRefresher {
    pub fn new(store: Arc<SnapshotStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = crate::clock::unix_secs();
            let due: Vec<Arc<KeySet>> = self
                .store
                .load()
                .authorizers
                .iter()
                .filter_map(|a| a.remote_keys())
                .filter(|k| k.due(now))
                .cloned()
                .collect();
            for keys in due {
                tokio::spawn(async move { keys.refresh_scheduled().await });
            }
        }
    }
}
