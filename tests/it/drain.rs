//! Draining without drops: kept-alive HTTP/1.1 connections and multiplexed HTTP/2
//! connections under load, through a binary upgrade (SIGQUIT hands the listeners to a new
//! process) and through a SIGTERM drain behind a TCP load balancer that follows `/-/ready`.
//! Every request sent must get its answer: the old process tells clients to move
//! (`Connection: close`, GOAWAY) instead of closing connections under them.

use crate::common::*;
use crate::pki::Ca;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests the load must reach, over both protocols, before it stops.
const TARGET: usize = 50_000;
/// Concurrent HTTP/1.1 connections, and concurrent HTTP/2 streams on one connection.
const H1_CONNECTIONS: usize = 8;
const H2_STREAMS: usize = 8;

/// What the load saw.
#[derive(Default)]
struct Tally {
    h1_ok: AtomicUsize,
    h2_ok: AtomicUsize,
    /// Responses with `Connection: close`, after which the client connected again.
    h1_closes: AtomicUsize,
    /// HTTP/1.1 connections opened.
    h1_connects: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

impl Tally {
    fn total(&self) -> usize {
        self.h1_ok.load(Ordering::SeqCst) + self.h2_ok.load(Ordering::SeqCst)
    }

    fn fail(&self, what: String) {
        self.failed.lock().unwrap().push(what);
    }
}

/// Kept-alive HTTP/1.1 connections (a raw client that never retries: a request without its
/// response is a failure) and HTTP/2 streams on reqwest's single connection, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `h1`: where to send HTTP/1.1; `h2`: an `https://a.test:PORT/` URL that `ca` signed,
    /// with `a.test` resolving to `h2_addr`.
    fn start(h1: SocketAddr, h2_addr: SocketAddr, ca: &Ca) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut tasks = Vec::new();
        for _ in 0..H1_CONNECTIONS {
            let (stop, tally) = (stop.clone(), tally.clone());
            tasks.push(tokio::spawn(
                async move { h1_worker(h1, &stop, &tally).await },
            ));
        }
        let h2 = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
            .resolve("a.test", h2_addr)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("https://a.test:{}/drain", h2_addr.port());
        for _ in 0..H2_STREAMS {
            let (stop, tally, h2, url) = (stop.clone(), tally.clone(), h2.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match h2.get(&url).send().await {
                        Ok(r) if r.status() == 200 && r.version() == reqwest::Version::HTTP_2 => {
                            match r.text().await {
                                Ok(body) if body == "app" => {
                                    tally.h2_ok.fetch_add(1, Ordering::SeqCst);
                                }
                                other => tally.fail(format!("h2 body {other:?}")),
                            }
                        }
                        Ok(r) => tally.fail(format!("h2 {:?} {}", r.version(), r.status())),
                        Err(e) => tally.fail(format!("h2 {e:?}")),
                    }
                }
            }));
        }
        Self { stop, tally, tasks }
    }

    /// Wait until the load reached `n` requests (bounded).
    async fn until(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(240);
        while self.tally.total() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.tally
    }
}

/// One HTTP/1.1 client: one request at a time on a kept-alive connection, connecting again
/// only after a response that says `Connection: close`.
async fn h1_worker(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    const REQUEST: &[u8] = b"GET /drain HTTP/1.1\r\nHost: a.test\r\n\r\n";
    while !stop.load(Ordering::SeqCst) {
        let stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                tally.fail(format!("h1 connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tally.h1_connects.fetch_add(1, Ordering::SeqCst);
        let mut conn = RawConn::from_stream(stream);
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = conn.send(REQUEST).await {
                tally.fail(format!("h1 send on a kept-alive connection: {e}"));
                break;
            }
            let Some(resp) = conn.response(Duration::from_secs(10)).await else {
                tally.fail("h1: connection closed without a response".into());
                break;
            };
            if resp.status == 200 && resp.body == b"app" {
                tally.h1_ok.fetch_add(1, Ordering::SeqCst);
            } else {
                tally.fail(format!("h1 {} {:?}", resp.status, resp.text()));
            }
            if resp.closes() {
                tally.h1_closes.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
    }
}

/// The config body: a TLS listener on `tls` (the plain one is the harness's), the
/// certificate for `a.test` in `cert_dir`, and one route to `upstream`.
fn body(tls: u16, cert_dir: &std::path::Path, upstream: &Upstream) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:{tls}\"\ntls = {{ }}\n\
         [certificates.a]\ncert = \"{dir}/a.crt\"\nkey = \"{dir}/a.key\"\n\
         [upstreams.app]\ntargets = [{{ address = \"{up}\" }}]\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        dir = cert_dir.display(),
        up = upstream.address(),
    )
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn assert_no_failures(tally: &Tally) {
    eprintln!(
        "h1 {} on {} connections ({} closes), h2 {}",
        tally.h1_ok.load(Ordering::SeqCst),
        tally.h1_connects.load(Ordering::SeqCst),
        tally.h1_closes.load(Ordering::SeqCst),
        tally.h2_ok.load(Ordering::SeqCst)
    );
    let failed = tally.failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {} (h1 {}, h2 {}): {:?}",
        failed.len(),
        tally.total() + failed.len(),
        tally.h1_ok.load(Ordering::SeqCst),
        tally.h2_ok.load(Ordering::SeqCst),
        &failed[..failed.len().min(8)]
    );
    assert!(tally.total() >= TARGET, "only {} requests", tally.total());
    // Both protocols carried a real share of the load.
    assert!(tally.h1_ok.load(Ordering::SeqCst) > TARGET / 10);
    assert!(tally.h2_ok.load(Ordering::SeqCst) > TARGET / 10);
}

/// Connections are kept alive: many requests each (gatehouse closes one after
/// `max_requests_per_connection`, so a few more than the workers may have been opened).
fn assert_kept_alive(tally: &Tally) {
    let connects = tally.h1_connects.load(Ordering::SeqCst);
    let ok = tally.h1_ok.load(Ordering::SeqCst);
    assert!(
        connects >= H1_CONNECTIONS && connects * 100 <= ok,
        "{ok} requests on {connects} connections"
    );
}

async fn wait_exit(gw: &mut Gateway, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if gw.try_wait() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binary_upgrade_under_keep_alive_load_fails_no_request() {
    let ca = Ca::new("drain ca");
    let certs = tempfile::tempdir().unwrap();
    ca.server(&["a.test"], 30).write(certs.path(), "a");
    let upstream = Upstream::named("app").await;
    let tls = free_port();
    let mut old = Gateway::start_with(
        "grace_period = \"2s\"\ngraceful_shutdown_timeout = \"2s\"",
        "",
        &body(tls, certs.path(), &upstream),
    );
    let load = Load::start(old.addr(), local(tls), &ca);
    load.until(TARGET / 5).await;
    let before = load.tally.total();
    assert_kept_alive(&load.tally);
    let closes_before = load.tally.h1_closes.load(Ordering::SeqCst);

    let mut new = old.start_upgrade();
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("QUIT");
    // Pingora shares the listeners for 5 s, then the old process drains for the grace
    // period and stops its runtime.
    let exited = wait_exit(&mut old, Duration::from_secs(30)).await;
    let at_exit = load.tally.total();
    // And some more on the new process alone.
    load.until(TARGET.max(at_exit + 2_000)).await;
    let tally = load.finish().await;
    let new_alive = new.try_wait().unwrap().is_none();
    let new_err = std::fs::read_to_string(old.dir.path().join("new.err")).unwrap_or_default();
    let _ = new.kill();
    let _ = new.wait();
    assert!(exited, "the old process did not exit: {}", old.stderr());
    assert!(new_alive, "the new process died: {new_err}");
    // Waiting for the hand-over is the normal course of an upgrade, not an error.
    assert!(!new_err.contains("ERROR"), "{new_err}");
    assert_no_failures(&tally);
    assert!(at_exit > before, "the load ran through the upgrade");
    // Each kept-alive HTTP/1.1 connection was told to move.
    let closes = tally.h1_closes.load(Ordering::SeqCst) - closes_before;
    assert!(closes >= H1_CONNECTIONS, "closes: {closes}");
}

/// Which backends answered `/-/ready` with 200 on the last poll (every 50 ms).
struct Readiness {
    ready: Vec<AtomicBool>,
}

impl Readiness {
    fn poll(ready_urls: Vec<String>) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let me = Arc::new(Self {
            ready: ready_urls.iter().map(|_| AtomicBool::new(true)).collect(),
        });
        let task = tokio::spawn({
            let me = me.clone();
            async move {
                let c = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_millis(500))
                    .build()
                    .unwrap();
                loop {
                    for (url, ready) in ready_urls.iter().zip(&me.ready) {
                        let ok = matches!(c.get(url).send().await, Ok(r) if r.status() == 200);
                        ready.store(ok, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        (me, task)
    }
}

/// A TCP load balancer, as a cloud network balancer or kube-proxy does it: each new
/// connection goes to the first ready backend (the next one if connecting fails), and stays
/// there until either side closes it.
struct Balancer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>, readiness: Arc<Readiness>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let first = readiness
                    .ready
                    .iter()
                    .position(|r| r.load(Ordering::SeqCst))
                    .unwrap_or(0);
                let order: Vec<SocketAddr> = backends[first..]
                    .iter()
                    .chain(&backends[..first])
                    .copied()
                    .collect();
                tokio::spawn(async move {
                    for backend in order {
                        if let Ok(mut up) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigterm_drain_behind_a_load_balancer_fails_no_request() {
    let ca = Ca::new("drain ca");
    let certs = tempfile::tempdir().unwrap();
    ca.server(&["a.test"], 30).write(certs.path(), "a");
    let upstream = Upstream::named("app").await;
    let (tls_a, tls_b) = (free_port(), free_port());
    let mut a = Gateway::start_with(
        "shutdown_delay = \"1s\"\ngrace_period = \"2s\"\ngraceful_shutdown_timeout = \"2s\"",
        "",
        &body(tls_a, certs.path(), &upstream),
    );
    let b = Gateway::start(&body(tls_b, certs.path(), &upstream));
    let (readiness, poller) =
        Readiness::poll(vec![a.admin_url("/-/ready"), b.admin_url("/-/ready")]);
    let plain = Balancer::start(vec![a.addr(), b.addr()], readiness.clone()).await;
    let tls = Balancer::start(vec![local(tls_a), local(tls_b)], readiness).await;
    let load = Load::start(plain.addr, tls.addr, &ca);
    load.until(TARGET / 5).await;
    let before = load.tally.total();
    assert_kept_alive(&load.tally);
    let closes_before = load.tally.h1_closes.load(Ordering::SeqCst);

    a.signal("TERM");
    let exited = wait_exit(&mut a, Duration::from_secs(30)).await;
    let at_exit = load.tally.total();
    load.until(TARGET.max(at_exit + 2_000)).await;
    let tally = load.finish().await;
    poller.abort();
    assert!(exited, "the draining process did not exit: {}", a.stderr());
    assert_no_failures(&tally);
    assert!(at_exit > before, "the load ran through the drain");
    let closes = tally.h1_closes.load(Ordering::SeqCst) - closes_before;
    assert!(closes >= H1_CONNECTIONS, "closes: {closes}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_idle_at_sigterm_are_served_until_the_drain_period_ends() {
    let upstream = Upstream::named("app").await;
    let mut gw = Gateway::start_with(
        "grace_period = \"3s\"",
        "",
        &format!(
            "[upstreams.app]\ntargets = [{{ address = \"{}\" }}]\n\
             [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
            upstream.address()
        ),
    );
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut late = RawConn::connect(gw.addr()).await;
    let mut idle = RawConn::connect(gw.addr()).await;
    for c in [&mut late, &mut idle] {
        c.send(REQUEST).await.unwrap();
        let r = c.response(Duration::from_secs(5)).await.unwrap();
        assert!(r.status == 200 && !r.closes());
    }
    gw.signal("TERM");
    let term = Instant::now();
    // A request on a kept-alive connection during the drain is answered, and told to move.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    late.send(REQUEST).await.unwrap();
    let r = late.response(Duration::from_secs(5)).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "app"));
    assert!(r.closes(), "{:?}", r.headers);
    assert!(late.closed(Duration::from_secs(2)).await.is_some());
    // One that stays idle is closed once the drain period is over, not before.
    assert!(idle.closed(Duration::from_secs(10)).await.is_some());
    let idle_for = term.elapsed();
    assert!(
        idle_for >= Duration::from_millis(2900),
        "closed {idle_for:?} after SIGTERM"
    );
    assert!(wait_exit(&mut gw, Duration::from_secs(15)).await);
}
