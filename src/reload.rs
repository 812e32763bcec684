//! Reload on SIGHUP: parse, validate, compile, swap. A bad file leaves the running config alone.

use crate::snapshot::{self, Registries, SnapshotStore};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Background service that reloads the config file on SIGHUP.
pub struct ReloadOnSignal {
    pub path: PathBuf,
    pub store: Arc<SnapshotStore>,
    pub registries: Arc<Registries>,
}

#[async_trait]
impl BackgroundService for ReloadOnSignal {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by signal is off");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    // Errors are logged and counted inside `reload`.
                    let _ = snapshot::reload(&self.path, &self.store, &self.registries);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
