//! Test harness: the real `gatehouse` binary on free ports, and real HTTP upstreams on
//! 127.0.0.1 built on hyper.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub type Body = BoxBody<Bytes, Infallible>;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// A running gatehouse process; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Gateway {
    /// Start gatehouse with `body` (routes, upstreams, ...) after generated `[server]`,
    /// `[[listeners]]` and `[admin]` sections, and wait until it serves.
    pub fn start(body: &str) -> Self {
        Self::start_with("", "", body)
    }

    /// Like [`Self::start`], with extra lines for the `[server]` and `[admin]` sections.
    pub fn start_with(server_extra: &str, admin_extra: &str, body: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_port = free_port();
        let config_path = dir.path().join("gatehouse.toml");
        let text = Self::config(dir.path(), port, admin_port, body)
            .replacen("[server]\n", &format!("[server]\n{server_extra}\n"), 1)
            .replacen("[admin]\n", &format!("[admin]\n{admin_extra}\n"), 1);
        std::fs::write(&config_path, text).unwrap();
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&config_path)
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn gatehouse");
        let mut gw = Gateway {
            child,
            port,
            admin_port,
            dir,
            config_path,
        };
        gw.wait_ready();
        gw
    }

    /// Write a new config with `body` in place of the running one (not reloaded yet).
    pub fn rewrite(&self, body: &str) {
        let text = Self::config(self.dir.path(), self.port, self.admin_port, body);
        std::fs::write(&self.config_path, text).unwrap();
    }

    pub fn config(dir: &Path, port: u16, admin_port: u16, body: &str) -> String {
        format!(
            "[server]\nthreads = 2\npid_file = \"{pid}\"\nupgrade_sock = \"{sock}\"\n\
             [[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
             [admin]\naddress = \"127.0.0.1:{admin_port}\"\n{body}",
            pid = dir.join("gatehouse.pid").display(),
            sock = dir.join("upgrade.sock").display(),
        )
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gatehouse exited with {status}: {}", self.stderr());
            }
            let up = |p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.port) && up(self.admin_port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not start: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Access log lines written so far (stdout), parsed.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("stdout.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Access log lines once one satisfies `pred` (the writer flushes every 20 ms).
    pub async fn access_log_once(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = self.access_log();
            if lines.iter().any(&pred) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lines
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /-/reload` on the admin listener (no token).
    pub async fn reload_via_admin(&self) -> reqwest::Response {
        client()
            .post(self.admin_url("/-/reload"))
            .send()
            .await
            .unwrap()
    }

    /// Whether the process has exited.
    pub fn try_wait(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{signal} failed");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real HTTP/1.1 server on 127.0.0.1 with a handler closure.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    /// Answers every request with `name` as the body.
    pub async fn named(name: &'static str) -> Self {
        Self::start(move |_req| async move { Response::new(full(name)) }).await
    }

    /// Answers with a JSON description of the request it received.
    pub async fn echo() -> Self {
        Self::start(|req: Request<Incoming>| async move {
            let mut headers = serde_json::Map::new();
            for (k, v) in req.headers() {
                headers.insert(k.as_str().into(), v.to_str().unwrap_or("").into());
            }
            let info = serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
            });
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut info = info;
            info["body_len"] = body.len().into();
            let mut resp = Response::new(full(info.to_string()));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp.headers_mut()
                .insert("keep-alive", "timeout=5".parse().unwrap());
            resp
        })
        .await
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that accepts connections and never answers.
pub async fn silent_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// Send raw bytes and read until the server closes or `timeout` passes.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Poll `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One task per url, each sending `per_task` GETs in sequence; returns how many got 200.
pub async fn concurrent_ok(urls: Vec<String>, per_task: usize) -> usize {
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            tokio::spawn(async move {
                let c = client();
                let mut ok = 0;
                for _ in 0..per_task {
                    if c.get(&url).send().await.unwrap().status() == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    allowed
}

/// GET `url`: status and body text.
pub async fn body_of(url: String) -> (u16, String) {
    let resp = client().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// GET `url` and parse the body as JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    get_json_auth(url, None).await
}

/// GET `url` with an optional bearer token and parse the body as JSON.
pub async fn get_json_auth(url: String, token: Option<&str>) -> serde_json::Value {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Run `gatehouse check` on `text`; returns success, stdout and stderr with the file's path
/// replaced by `FILE`.
pub fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&path.display().to_string(), "FILE");
    (out.status.success(), clean(&out.stdout), clean(&out.stderr))
}

/// Config body with one pool `p` of `upstream` and a catch-all route `r` to it.
pub fn single_pool(upstream: &Upstream) -> String {
    format!(
        "[upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"p\"\n",
        upstream.address()
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A real `redis-server` on a free port, without persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port and wait until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
