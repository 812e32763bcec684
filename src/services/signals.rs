//! Signals and watches: SIGHUP and the file watch reload the config; SIGTERM turns `/-/ready`
//! false before the listeners close.

use crate::reload::{Reloader, Source};
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Background service: reload on SIGHUP and, when configured, on file changes.
pub struct ReloadTriggers {
    pub reloader: Arc<Reloader>,
    /// How often the watch looks; `None` turns it off.
    pub watch: Option<Duration>,
    /// Reload when the config file's content changes.
    pub watch_config: bool,
    /// Reload when a certificate or key file's content changes.
    pub watch_certificates: bool,
}

#[async_trait]
impl BackgroundService for ReloadTriggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by signal is off");
                None
            }
        };
        let mut tick = tokio::time::interval(self.watch.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup => {
                    // Errors are logged, counted and recorded inside `reload`.
                    let _ = self.reloader.reload(Source::Signal);
                }
                _ = tick.tick(), if self.watch.is_some() => self
                    .reloader
                    .reload_if_changed(self.watch_config, self.watch_certificates),
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Pingora's signal handling with one addition: SIGTERM first turns `/-/ready` false and keeps
/// serving for `delay`, so load balancers stop sending before the listeners close.
pub struct ShutdownSignals {
    pub reloader: Arc<Reloader>,
    pub delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for ShutdownSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                self.reloader.set_draining();
                tracing::info!(delay = ?self.delay, "SIGTERM: reporting not ready, then draining");
                tokio::select! {
                    _ = tokio::time::sleep(self.delay) => ShutdownSignal::GracefulTerminate,
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                }
            }
        }
    }
}
