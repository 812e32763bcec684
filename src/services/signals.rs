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

/// Pingora's signal handling with two additions: SIGTERM first turns `/-/ready` false and
/// keeps serving for `delay`, so load balancers stop sending before the listeners close; and
/// every stop has a deadline ([`exit_after`]), so the process ends even when Pingora's
/// shutdown does not.
pub struct ShutdownSignals {
    pub reloader: Arc<Reloader>,
    pub delay: Duration,
    /// `server.grace_period` and `server.graceful_shutdown_timeout`: what Pingora waits after
    /// a graceful stop.
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
}

/// How long a fast stop (SIGINT) may take: Pingora does not wait for anything on this path.
pub const FAST_STOP: Duration = Duration::from_secs(2);
/// Slack on top of the configured waits of a graceful stop.
const GRACEFUL_SLACK: Duration = Duration::from_secs(3);
const UPGRADE_SLACK: Duration = Duration::from_secs(5);

impl ShutdownSignals {
    /// The deadline for a stop of kind `signal`, from the moment Pingora is told to stop.
    pub fn bound(&self, signal: &ShutdownSignal) -> Duration {
        // Pingora rounds the grace period up to whole seconds.
        let graceful = Duration::from_secs(self.grace_period.as_secs_f64().ceil() as u64)
            + self.graceful_shutdown_timeout
            + GRACEFUL_SLACK;
        match signal {
            ShutdownSignal::FastShutdown => FAST_STOP,
            ShutdownSignal::GracefulTerminate => graceful,
            // Handing the sockets over retries for a few seconds when the new process is slow
            // to take them.
            ShutdownSignal::GracefulUpgrade => graceful + UPGRADE_SLACK,
        }
    }
}

/// End the process after `bound`, whatever Pingora's shutdown is doing by then.
///
/// Pingora 0.9 can leave a listener task spinning after a fast shutdown: the stop is not
/// broadcast to the accept loops on SIGINT, a loop whose socket belongs to a runtime thread
/// that has already shut down gets "A Tokio 1.x context was found, but it is being shutdown"
/// from every `accept()` without waiting, and retries at once (only EMFILE gets a pause). Its
/// thread then never takes its own shutdown message, and `Server::run` waits for it forever.
/// What Pingora would need: the shutdown watch sent on every stop, and the accept loop ending
/// (or at least pausing) on errors that will not go away.
pub fn exit_after(bound: Duration, what: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("stop deadline".into())
        .spawn(move || {
            std::thread::sleep(bound);
            tracing::error!(
                ?bound,
                "{what}: shutdown did not finish in time; exiting now"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the shutdown deadline");
    }
}

#[async_trait]
impl ShutdownSignalWatch for ShutdownSignals {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.wait().await;
        let what = match signal {
            ShutdownSignal::FastShutdown => "fast stop",
            ShutdownSignal::GracefulUpgrade => "upgrade hand-over",
            ShutdownSignal::GracefulTerminate => "graceful stop",
        };
        exit_after(self.bound(&signal), what);
        signal
    }
}

impl ShutdownSignals {
    /// The first stop signal, as the kind of stop it asks for.
    async fn wait(&self) -> ShutdownSignal {
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
