//! One JSON line per request. Lines are formatted on the worker thread and handed to a writer
//! thread through a bounded channel, so a slow disk or a blocked stdout never stalls a request:
//! when the channel is full the line is dropped and counted instead. The writer polls the
//! channel every 20 ms rather than being woken per line.

use prometheus::IntCounter;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::text;

/// Lines buffered between workers and the writer thread.
const QUEUE: usize = 64 * 1024;

/// The fields of one access log line. Never holds the query string, `Authorization` or any
/// other credential: a log line must be safe to ship anywhere.
#[derive(Debug)]
pub struct AccessEntry<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    /// The request's trace id, when `[tracing]` is on (sampled or not).
    pub trace_id: Option<crate::observe::trace::TraceIdText>,
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
    pub duration: Duration,
    pub upstream_duration: Option<Duration>,
    /// Consumer established by the route's authorizer.
    pub consumer: Option<&'a str>,
    /// Auth decision (`allowed` or the refusal reason) on routes with `auth`.
    pub auth: Option<&'a str>,
    /// Firewall decision: `ACTION:RULE` (`deny:sqli`, `log:debug-param`, `count:xss`,
    /// `ban:ip`).
    pub firewall: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl AccessEntry<'_> {
    /// Append the JSON line (without newline). Written by hand: this runs once per request and
    /// a general serializer plus timestamp formatting cost several microseconds.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        write_time(out, self.time);
        out.extend_from_slice(b"\",\"request_id\":");
        json_str(out, self.request_id);
        if let Some(trace_id) = self.trace_id {
            out.extend_from_slice(b",\"trace_id\":\"");
            out.extend_from_slice(&trace_id.bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"client_ip\":");
        match self.client_ip {
            Some(ip) => {
                out.push(b'"');
                text::push_ip(out, ip);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        for (key, value) in [
            ("method", self.method),
            ("host", self.host),
            ("path", self.path),
        ] {
            json_key(out, key);
            json_str(out, value);
        }
        for (key, value) in [
            ("route", self.route),
            ("upstream", self.upstream),
            ("target", self.target),
        ] {
            json_key(out, key);
            json_opt(out, value);
        }
        for (key, value) in [
            ("status", u64::from(self.status)),
            ("bytes_sent", self.bytes_sent as u64),
            ("bytes_received", self.bytes_received as u64),
        ] {
            json_key(out, key);
            text::push_u64(out, value);
        }
        out.extend_from_slice(b",\"duration_ms\":");
        write_millis(out, self.duration);
        out.extend_from_slice(b",\"upstream_duration_ms\":");
        match self.upstream_duration {
            Some(d) => write_millis(out, d),
            None => out.extend_from_slice(b"null"),
        }
        for (key, value) in [
            ("consumer", self.consumer),
            ("auth", self.auth),
            ("firewall", self.firewall),
            ("error", self.error),
        ] {
            if let Some(v) = value {
                json_key(out, key);
                json_str(out, v);
            }
        }
        out.push(b'}');
    }
}

fn json_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// `,"key":`
fn json_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn needs_escape(b: u8) -> bool {
    matches!(b, b'"' | b'\\' | 0..=0x1f | 0x7f)
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Nearly every value (ids, methods, hosts, paths) needs no escaping: copy it whole.
    if !s.bytes().any(needs_escape) {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Milliseconds with microsecond precision, e.g. `1.234`.
fn write_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    text::push_u64(out, micros / 1000);
    out.push(b'.');
    text::push_3_digits(out, micros % 1000);
}

thread_local! {
    /// The formatted `YYYY-MM-DDTHH:MM:SS` of the last second seen by this thread.
    static SECOND: std::cell::RefCell<(u64, [u8; 19])> = const { std::cell::RefCell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 UTC with milliseconds; the date part is formatted once per second per thread.
fn write_time(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = humantime::format_rfc3339_seconds(t).to_string();
            if let Some(prefix) = text.as_bytes().get(..19) {
                cached.1.copy_from_slice(prefix);
                cached.0 = secs;
            }
        }
        out.extend_from_slice(&cached.1);
    });
    out.push(b'.');
    text::push_3_digits(out, u64::from(d.subsec_millis()));
    out.push(b'Z');
}

/// What the writer thread takes over when it starts.
struct WriterParts {
    rx: Receiver<Vec<u8>>,
    out: Box<dyn Write + Send>,
    /// The file, to open again on request; `None` for standard output.
    path: Option<PathBuf>,
    reopen: Arc<AtomicBool>,
}

/// Handle to the writer thread.
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    dropped: IntCounter,
    /// The writer thread starts with the first line, not at construction: with `--daemon`,
    /// Pingora forks after the config is loaded, and a thread started before the fork would
    /// not exist in the daemon.
    writer: OnceLock<()>,
    pending: Mutex<Option<WriterParts>>,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Open the output (appending to `path`, or standard output) so errors show at startup.
    pub fn start(path: Option<&Path>, dropped: IntCounter) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(open_append(p)?),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        Ok(Self {
            tx,
            dropped,
            writer: OnceLock::new(),
            pending: Mutex::new(Some(WriterParts {
                rx,
                out,
                path: path.map(Path::to_path_buf),
                reopen: reopen.clone(),
            })),
            reopen,
        })
    }

    /// Set it (a signal handler can: it is one atomic store) and the writer opens the file
    /// again by its path before its next write, so a log rotated by renaming continues in a
    /// new file. Without a path (standard output) it is ignored.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    fn start_writer(&self) {
        let taken = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some(parts) = taken {
            let spawned = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_lines(parts));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the access log writer");
            }
        }
    }

    /// Queue one entry; never blocks.
    pub fn log(&self, entry: &AccessEntry<'_>) {
        self.writer.get_or_init(|| self.start_writer());
        let mut line = Vec::with_capacity(384);
        entry.write_json(&mut line);
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

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_lines(parts: WriterParts) {
    let WriterParts {
        rx,
        out,
        path,
        reopen,
    } = parts;
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        if reopen.swap(false, Ordering::Relaxed) {
            if let Some(path) = &path {
                // Lines already written belong to the old file; a file that cannot be opened
                // leaves the old one in use.
                let _ = out.flush();
                match open_append(path) {
                    Ok(file) => out = BufWriter::with_capacity(64 * 1024, Box::new(file)),
                    Err(e) => eprintln!(
                        "gatehouse: cannot reopen the access log {}: {e}",
                        path.display()
                    ),
                }
            }
        }
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
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            request_id: "abc",
            trace_id: None,
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
            duration: Duration::from_micros(1_500),
            upstream_duration: None,
            consumer: Some("alice"),
            auth: Some("allowed"),
            firewall: Some("log:debug"),
            error: Some("tab\there \\ \"quoted\""),
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
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_duration_ms"], serde_json::Value::Null);
        assert_eq!(v["error"], "tab\there \\ \"quoted\"");
        assert_eq!(v["time"], "2026-11-18T11:06:40.123Z");
    }
}
