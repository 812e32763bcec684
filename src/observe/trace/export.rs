//! Finished spans on their way to the collector. Workers hand spans to an export thread
//! through a bounded channel and never wait: when the channel is full the span is dropped and
//! counted. The thread gathers batches (by size, or after `export_interval`) and sends each
//! with a deadline, so a collector that is down or slow costs spans, never request time.
//!
//! Our own queue rather than the SDK's `BatchSpanProcessor`: that one keeps its drop count
//! private, and a gateway's operators need it as a metric.

use super::otlp;
use crate::config::TracingConfig;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the export thread looks at the stop flag while it waits for spans.
const POLL: Duration = Duration::from_millis(100);

/// Counters of what became of finished spans.
#[derive(Clone)]
pub struct SpanCounters {
    pub exported: IntCounter,
    /// Dropped because the queue was full.
    pub dropped_queue_full: IntCounter,
    /// Dropped because their export request failed or timed out.
    pub dropped_export_failed: IntCounter,
}

/// Where the request path puts finished spans.
pub struct SpanSink {
    queue: SyncSender<SpanData>,
    scope: InstrumentationScope,
    dropped: IntCounter,
}

impl SpanSink {
    /// Queue `span` for export, or drop and count it when the queue is full.
    pub fn send(&self, span: SpanData) {
        match self.queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// The instrumentation scope of gatehouse's spans.
    pub fn scope(&self) -> &InstrumentationScope {
        &self.scope
    }
}

/// A sink whose spans arrive at the returned receiver; beyond `capacity` waiting spans, `send`
/// drops and counts in `dropped`.
pub fn queue(capacity: usize, dropped: IntCounter) -> (SpanSink, Receiver<SpanData>) {
    let (queue, spans) = sync_channel(capacity);
    let scope = InstrumentationScope::builder("gatehouse")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let sink = SpanSink {
        queue,
        scope,
        dropped,
    };
    (sink, spans)
}

/// The running export thread.
pub struct ExportHandle {
    stop: Arc<AtomicBool>,
    /// Behind a lock only to be `Sync`: one call waits on it, once.
    done: Mutex<Receiver<()>>,
    timeout: Duration,
}

impl ExportHandle {
    /// Export what is queued and stop; waits at most two export timeouts.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Ok(done) = self.done.lock() {
            let _ = done.recv_timeout(self.timeout * 2);
        }
    }
}

/// Start the export thread for `config`. Fails when the exporter cannot be built (a bad CA
/// file, a TLS setup error), naming the key.
pub fn start(
    config: &TracingConfig,
    counters: SpanCounters,
) -> Result<(SpanSink, ExportHandle), String> {
    let (sink, spans) = queue(config.queue_size, counters.dropped_queue_full.clone());
    let (done_tx, done) = sync_channel(1);
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tracing: cannot start the export runtime: {e}"))?;
    // Built inside the runtime: the gRPC channel needs one to exist.
    let exporter = {
        let _entered = runtime.enter();
        otlp::exporter(config)?
    };
    let batcher = Batcher {
        spans,
        stop: stop.clone(),
        batch_size: config.batch_size,
        interval: config.export_interval,
        timeout: config.export_timeout,
        counters: counters.clone(),
        failing: false,
    };
    std::thread::Builder::new()
        .name("trace-export".into())
        .spawn(move || {
            runtime.block_on(batcher.run(exporter));
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("tracing: cannot start the export thread: {e}"))?;
    let handle = ExportHandle {
        stop,
        done: Mutex::new(done),
        timeout: config.export_timeout,
    };
    Ok((sink, handle))
}

/// The export thread's loop.
struct Batcher {
    spans: Receiver<SpanData>,
    stop: Arc<AtomicBool>,
    batch_size: usize,
    interval: Duration,
    timeout: Duration,
    counters: SpanCounters,
    /// The last export failed: logged once, until one succeeds again.
    failing: bool,
}

impl Batcher {
    async fn run(mut self, exporter: impl SpanExporter) {
        loop {
            let (batch, stopping) = self.gather();
            if !batch.is_empty() {
                self.export(&exporter, batch).await;
            }
            if stopping {
                break;
            }
        }
        // Stopping: what is still queued, in batches, then let the exporter close.
        loop {
            let batch: Vec<SpanData> = self.spans.try_iter().take(self.batch_size).collect();
            if batch.is_empty() {
                break;
            }
            self.export(&exporter, batch).await;
        }
        let _ = exporter.shutdown_with_timeout(self.timeout);
    }

    /// The next batch: up to `batch_size` spans, gathered for at most `interval` after the
    /// first; and whether the process is stopping.
    fn gather(&self) -> (Vec<SpanData>, bool) {
        let mut batch = Vec::new();
        let mut deadline: Option<Instant> = None;
        while batch.len() < self.batch_size {
            if self.stop.load(Ordering::Acquire) {
                return (batch, true);
            }
            let wait = deadline.map_or(POLL, |d| {
                d.saturating_duration_since(Instant::now()).min(POLL)
            });
            match self.spans.recv_timeout(wait) {
                Ok(span) => {
                    if batch.is_empty() {
                        batch.reserve(self.batch_size.min(64));
                        deadline = Some(Instant::now() + self.interval);
                    }
                    batch.push(span);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return (batch, true),
            }
        }
        (batch, false)
    }

    async fn export(&mut self, exporter: &impl SpanExporter, batch: Vec<SpanData>) {
        let n = batch.len() as u64;
        let result = tokio::time::timeout(self.timeout, exporter.export(batch)).await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {:?}", self.timeout)),
        };
        match error {
            None => {
                self.counters.exported.inc_by(n);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("trace export works again");
                }
            }
            Some(e) => {
                self.counters.dropped_export_failed.inc_by(n);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        error = %e,
                        spans = n,
                        "trace export failed; spans are dropped until the collector answers"
                    );
                }
            }
        }
    }
}
