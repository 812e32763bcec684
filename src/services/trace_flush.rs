//! The spans of the last requests, exported when the process stops: after the grace period,
//! when Pingora stops its services, the export thread sends what is queued.

use crate::observe::trace::export::ExportHandle;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

/// The background service.
pub struct TraceFlush {
    handle: Arc<ExportHandle>,
}

impl TraceFlush {
    pub fn new(handle: ExportHandle) -> Self {
        Self {
            handle: Arc::new(handle),
        }
    }
}

#[async_trait]
impl BackgroundService for TraceFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        let handle = self.handle.clone();
        // Blocking: it waits for the export thread's last requests.
        let _ = tokio::task::spawn_blocking(move || handle.shutdown()).await;
    }
}
