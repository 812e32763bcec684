//! Every way of stopping gatehouse ends the process within a bound, whatever is in flight:
//! SIGINT (fast), SIGTERM (graceful, bounded by the configured waits), SIGQUIT (the upgrade
//! hand-over, here without a new process to take the sockets), in the foreground and as a
//! daemon. Each stop runs under four loops of concurrent requests, repeated enough times to
//! catch a 1-in-7 race in Pingora's fast shutdown.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Short waits, so that a graceful stop is quick and its bound tight.
const FAST_WAITS: &str =
    "shutdown_delay = \"0s\"\ngrace_period = \"1s\"\ngraceful_shutdown_timeout = \"1s\"";

/// How long each kind of stop may take here: the deadline gatehouse sets itself (2 s for a
/// fast stop; the configured waits plus 3 s, 5 s more for a hand-over, for a graceful one),
/// plus slack for a loaded test machine.
const FAST_BOUND: Duration = Duration::from_secs(6);
const GRACEFUL_BOUND: Duration = Duration::from_secs(10);
const UPGRADE_BOUND: Duration = Duration::from_secs(15);

/// Four threads sending requests (kept alive, and reconnecting) until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                        else {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        for _ in 0..20 {
                            if stop.load(Ordering::Relaxed)
                                || s.write_all(b"GET /hi HTTP/1.1\r\nHost: x\r\n\r\n").is_err()
                                || matches!(s.read(&mut buf), Ok(0) | Err(_))
                            {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const BODY: &str = "[[routes]]\nname = \"hi\"\npath = \"/hi\"\nrespond = { body = \"hi\" }\n";

/// Start, load, signal after 100-300 ms, and require the process gone within `bound`, with
/// a log that a spinning loop did not flood.
fn stop_under_load(signal: &str, runs: usize, bound: Duration) {
    for run in 0..runs {
        let mut gw = Gateway::start_with(FAST_WAITS, "", BODY);
        let load = Load::start(gw.addr());
        std::thread::sleep(Duration::from_millis(100 + (run as u64 * 37) % 200));
        gw.signal(signal);
        let signalled = Instant::now();
        while !gw.try_wait() && signalled.elapsed() < bound {
            std::thread::sleep(Duration::from_millis(20));
        }
        let exited = gw.try_wait();
        drop(load);
        let stderr = gw.stderr();
        assert!(
            exited,
            "run {run}: still running {bound:?} after SIG{signal}; last log lines:\n{}",
            tail(&stderr)
        );
        let lines = stderr.lines().count();
        assert!(
            lines < 2000,
            "run {run}: {lines} log lines; a repeating error was not rate-limited:\n{}",
            tail(&stderr)
        );
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[test]
fn sigint_under_load_always_exits_quickly() {
    stop_under_load("INT", 30, FAST_BOUND);
}

#[test]
fn sigterm_under_load_exits_within_the_configured_waits() {
    stop_under_load("TERM", 6, GRACEFUL_BOUND);
}

#[test]
fn sigquit_without_a_new_process_still_exits() {
    stop_under_load("QUIT", 3, UPGRADE_BOUND);
}

/// A daemon, killed when the test ends however it ends.
struct Daemon {
    pid: Option<i32>,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Daemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let path = dir.path().join("g.toml");
        let text = Gateway::config(dir.path(), port, admin, BODY).replacen(
            "[server]\n",
            &format!("[server]\n{FAST_WAITS}\n"),
            1,
        );
        std::fs::write(&path, text).unwrap();
        let status = run_daemon(&path);
        assert!(status.success());
        let pid_file = dir.path().join("gatehouse.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut pid = None;
        while pid.is_none() && Instant::now() < deadline {
            let up = TcpStream::connect(("127.0.0.1", port)).is_ok();
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .filter(|_| up);
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            pid: Some(pid.expect("the daemon did not start")),
            _dir: dir,
            port,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_daemon_stopped_under_load_exits() {
    for signal in ["INT", "INT", "INT", "INT", "TERM"] {
        let mut daemon = Daemon::start();
        let pid = daemon.pid.unwrap();
        let load = Load::start(SocketAddr::from(([127, 0, 0, 1], daemon.port)));
        std::thread::sleep(Duration::from_millis(200));
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let signalled = Instant::now();
        while alive(pid) && signalled.elapsed() < GRACEFUL_BOUND {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(load);
        assert!(!alive(pid), "daemon {pid} still running after SIG{signal}");
        daemon.pid = None;
    }
}
