//! One JSON line per request. Lines are formatted on the worker thread and handed to a writer
//! thread through a bounded channel, so a slow disk or a blocked stdout never stalls a request:
//! when the channel is full the line is dropped and counted instead. The writer polls the
//! channel every 20 ms rather than being woken per line.

use prometheus::IntCounter;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Lines buffered between workers and the writer thread.
const QUEUE: usize = 64 * 1024;

/// The fields of one access log line. Never holds the query string, `Authorization` or any
/// other credential: a log line must be safe to ship anywhere.
#[derive(Debug, Serialize)]
pub struct AccessEntry<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub target: Option<&'a str>,
    pub status: u16,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    pub duration_ms: f64,
    pub upstream_duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// What the writer thread takes over when it starts.
type WriterParts = (Receiver<Vec<u8>>, Box<dyn Write + Send>);

/// Handle to the writer thread.
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    dropped: IntCounter,
    /// The writer thread starts with the first line, not at construction: with `--daemon`,
    /// Pingora forks after the config is loaded, and a thread started before the fork would
    /// not exist in the daemon.
    writer: OnceLock<()>,
    pending: Mutex<Option<WriterParts>>,
}

impl AccessLog {
    /// Open the output (appending to `path`, or standard output) so errors show at startup.
    pub fn start(path: Option<&Path>, dropped: IntCounter) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = sync_channel(QUEUE);
        Ok(Self {
            tx,
            dropped,
            writer: OnceLock::new(),
            pending: Mutex::new(Some((rx, out))),
        })
    }

    fn start_writer(&self) {
        let taken = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some((rx, out)) = taken {
            let spawned = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_lines(rx, out));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the access log writer");
            }
        }
    }

    /// Queue one entry; never blocks.
    pub fn log(&self, entry: &AccessEntry<'_>) {
        self.writer.get_or_init(|| self.start_writer());
        let mut line = Vec::with_capacity(384);
        if serde_json::to_writer(&mut line, entry).is_err() {
            return;
        }
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.inc();
        }
    }
}

/// How often the writer wakes up to drain the queue. Polling instead of blocking in `recv`
/// means a worker never has to wake the writer thread (a futex call and a context switch per
/// request, measured at about 15 µs of CPU per request); lines reach the file within this delay.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

fn write_lines(rx: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        let mut wrote = false;
        let mut ok = true;
        let closed = loop {
            match rx.try_recv() {
                Ok(line) => {
                    ok &= out.write_all(&line).is_ok();
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if wrote && (!ok || out.flush().is_err()) {
            eprintln!("gatehouse: cannot write access log");
        }
        if closed {
            return;
        }
        std::thread::sleep(DRAIN_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(Some(&path), IntCounter::new("x", "x").unwrap()).unwrap();
        log.log(&AccessEntry {
            time: "2026-01-01T00:00:00.000Z".into(),
            request_id: "abc",
            client_ip: "127.0.0.1".parse().ok(),
            method: "GET",
            host: "h\"ost",
            path: "/x",
            route: Some("r"),
            upstream: None,
            target: None,
            status: 200,
            bytes_sent: 2,
            bytes_received: 0,
            duration_ms: 0.5,
            upstream_duration_ms: None,
            error: None,
        });
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["host"], "h\"ost");
        assert_eq!(v["status"], 200);
        assert!(v.get("error").is_none());
    }
}
