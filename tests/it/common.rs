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
    ///
    /// A port `free_port` chose can be taken by another test (an upstream binding port 0)
    /// before gatehouse binds it; gatehouse then refuses to start, and this tries again with
    /// other ports.
    pub fn start_with(server_extra: &str, admin_extra: &str, body: &str) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let admin_port = free_port();
            let config_path = dir.path().join("gatehouse.toml");
            let text = Self::config(dir.path(), port, admin_port, body)
                .replacen("[server]\n", &format!("[server]\n{server_extra}\n"), 1)
                .replacen("[admin]\n", &format!("[admin]\n{admin_extra}\n"), 1);
            std::fs::write(&config_path, text).unwrap();
            let mut cmd = Command::new(BIN);
            cmd.args(["run", "-c"]).arg(&config_path);
            let mut gw = Self::spawn_only(cmd, dir, port, admin_port, config_path);
            match gw.ready() {
                Ok(()) => return gw,
                Err(stderr) if attempt < 3 && stderr.contains("cannot listen on") => continue,
                Err(stderr) => panic!("gatehouse did not start: {stderr}"),
            }
        }
    }

    /// Run `cmd` (gatehouse on `config_path`) with its output in `dir`, and wait until it serves.
    fn spawn(
        cmd: Command,
        dir: tempfile::TempDir,
        port: u16,
        admin_port: u16,
        config_path: PathBuf,
    ) -> Self {
        let mut gw = Self::spawn_only(cmd, dir, port, admin_port, config_path);
        gw.wait_ready();
        gw
    }

    /// Run `cmd` (gatehouse on `config_path`) with its output in `dir`.
    fn spawn_only(
        mut cmd: Command,
        dir: tempfile::TempDir,
        port: u16,
        admin_port: u16,
        config_path: PathBuf,
    ) -> Self {
        let child = cmd
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn gatehouse");
        Gateway {
            child,
            port,
            admin_port,
            dir,
            config_path,
        }
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
        if let Err(stderr) = self.ready() {
            panic!("gatehouse did not start: {stderr}");
        }
    }

    /// Wait until both listeners accept; `Err` with standard error when the process exited
    /// or did not get there within 20 s.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.stderr()));
            }
            let up = |p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.port) && up(self.admin_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not serving after 20 s: {}", self.stderr()));
            }
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

    /// A second gatehouse on the same config with `--upgrade`: it waits for this one to
    /// hand its listeners over (on SIGQUIT). Its standard error goes to `new.err` in `dir`.
    pub fn start_upgrade(&self) -> Child {
        Command::new(BIN)
            .args(["run", "--upgrade", "-c"])
            .arg(&self.config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("new.err")).unwrap())
            .spawn()
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
            let body = request_body(req).await;
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

/// The whole body of a request an upstream received (empty if it broke off).
pub async fn request_body(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
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
        Self::start_with(&[])
    }

    /// [`Self::start`] with more redis-server options.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart_with(extra);
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port and wait until it accepts connections.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// [`Self::restart`] with more redis-server options.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.launch(None, extra);
    }

    /// redis-server with `config_file` (which must come first) and `extra` options.
    fn launch(&mut self, config_file: Option<&Path>, extra: &[&str]) {
        let child = Command::new("redis-server")
            .args(config_file)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
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

/// The name the sentinels of [`RedisSentinel`] watch the primary under.
pub const SENTINEL_MASTER: &str = "gatehouse";

/// A primary, one replica and three sentinels watching them (quorum 2, a primary is down after
/// 1 s), each a real redis-server on a free port.
pub struct RedisSentinel {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        let sentinels = (0..3)
            .map(|_| {
                let mut s = RedisServer {
                    port: free_port(),
                    child: None,
                    dir: tempfile::tempdir().unwrap(),
                };
                // Sentinel rewrites its config file, so each gets its own.
                let conf = s.dir.path().join("sentinel.conf");
                let m = SENTINEL_MASTER;
                std::fs::write(
                    &conf,
                    format!(
                        "sentinel monitor {m} 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds {m} 1000\n\
                         sentinel failover-timeout {m} 3000\n",
                        primary.port
                    ),
                )
                .unwrap();
                s.launch(Some(&conf), &["--sentinel"]);
                s
            })
            .collect();
        let me = Self {
            primary,
            replica,
            sentinels,
        };
        // A failover needs the replica synced, and every sentinel to know it and the others.
        let deadline = Instant::now() + Duration::from_secs(30);
        let replica_port = me.replica.port.to_string();
        let ready = || {
            me.replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
                && me.sentinels.iter().all(|s| {
                    s.cli(&["sentinel", "replicas", SENTINEL_MASTER])
                        .contains(&replica_port)
                        && s.cli(&["sentinel", "sentinels", SENTINEL_MASTER])
                            .matches("\nport\n")
                            .count()
                            >= 2
                })
        };
        while !ready() {
            assert!(Instant::now() < deadline, "the sentinels did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// The sentinels' URLs, for `[redis.sentinel] nodes = [...]`.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The port of the node the sentinels name as the primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let out = self.sentinels[0].cli(&["sentinel", "get-master-addr-by-name", SENTINEL_MASTER]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}

/// A real Redis Cluster on 127.0.0.1: `masters` masters with `replicas` replicas each, one
/// redis-server per node on a free port, joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ])
            })
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Up, and every replica synced with its master (a replica that never synced cannot
        // take over).
        let ready = |n: &RedisServer| {
            let replication = n.cli(&["info", "replication"]);
            n.cli(&["cluster", "info"]).contains("cluster_state:ok")
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
        };
        while !cluster.nodes.iter().all(ready) {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// The nodes' URLs, for `[redis] cluster = [...]`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl RedisServer {
    /// `redis-cli -p PORT ARGS...`: its output, or empty when the node does not answer.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Edge hardening helpers: listener settings, a low open-file limit, raw HTTP/1 on sockets.

impl Gateway {
    /// Like [`Self::start`], with `listener_extra` inserted right after the generated
    /// `[[listeners]]` / `address = ...` lines (e.g. `proxy_protocol = true` or a
    /// `[listeners.edge]` table).
    pub fn start_listener(listener_extra: &str, body: &str) -> Self {
        Self::start_custom(listener_extra, body, None)
    }

    /// Like [`Self::start`], with the gateway under an open-file limit of `nofile` (soft and
    /// hard), set by the shell before it execs the binary (so `pid()` is the gateway's).
    pub fn start_with_nofile(nofile: u64, body: &str) -> Self {
        Self::start_custom("", body, Some(nofile))
    }

    fn start_custom(listener_extra: &str, body: &str, nofile: Option<u64>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_port = free_port();
        let config_path = dir.path().join("gatehouse.toml");
        let listener_line = format!("address = \"127.0.0.1:{port}\"\n");
        let text = Self::config(dir.path(), port, admin_port, body).replacen(
            &listener_line,
            &format!("{listener_line}{listener_extra}\n"),
            1,
        );
        std::fs::write(&config_path, text).unwrap();
        let cmd = match nofile {
            None => {
                let mut c = Command::new(BIN);
                c.args(["run", "-c"]).arg(&config_path);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" run -c \"$1\""))
                    .arg(BIN)
                    .arg(&config_path);
                c
            }
        };
        Self::spawn(cmd, dir, port, admin_port, config_path)
    }

    /// The access log line of the request with this id, waiting for the writer to flush it.
    pub async fn log_line(&self, request_id: &str) -> Option<serde_json::Value> {
        self.access_log_once(|l| l["request_id"] == request_id)
            .await
            .into_iter()
            .find(|l| l["request_id"] == request_id)
    }

    /// Resident memory of the gateway process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024
    }
}

/// The value of a counter or gauge in a Prometheus exposition: the sum over the series named
/// `name` whose labels contain every `key="value"` in `labels` (0 when there is none).
pub fn metric_value(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            if !(series.is_empty() || series.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .fold(0.0, |sum, v| sum + v)
}

/// One HTTP/1 response read off a raw socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 400 Bad Request`.
    pub status_line: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the response says the connection ends after it.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// A client connection driven byte by byte: write anything, read responses one at a time
/// (pipelined answers stay buffered for the next read), and notice when the server closes.
pub struct RawConn {
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    pub fn from_stream(stream: tokio::net::TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Write all of `bytes`; an error means the server closed (or reset) the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    /// Read more bytes into the buffer; false on close, reset or the deadline.
    async fn fill(&mut self, deadline: Instant) -> bool {
        use tokio::io::AsyncReadExt;
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Read one complete response; `None` when the connection closed, or `timeout` passed,
    /// before one was complete.
    pub async fn response(&mut self, timeout: Duration) -> Option<RawResponse> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill(deadline).await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = RawResponse {
            status,
            status_line,
            headers,
            body: Vec::new(),
        };
        let mut at = head_end + 4;
        let no_body = (100..200).contains(&status) || status == 204 || status == 304;
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
        if no_body {
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf[at..].windows(2).position(|w| w == b"\r\n") {
                        break at + i;
                    }
                    if !self.fill(deadline).await {
                        return None;
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[at..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                let data = line_end + 2;
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    loop {
                        if let Some(i) = self.buf[data..].windows(2).position(|w| w == b"\r\n") {
                            at = data + i + 2;
                            break;
                        }
                        if !self.fill(deadline).await {
                            return None;
                        }
                    }
                    break;
                }
                while self.buf.len() < data + size + 2 {
                    if !self.fill(deadline).await {
                        return None;
                    }
                }
                resp.body.extend_from_slice(&self.buf[data..data + size]);
                at = data + size + 2;
            }
        } else if let Some(n) = length {
            while self.buf.len() < at + n {
                if !self.fill(deadline).await {
                    return None;
                }
            }
            resp.body.extend_from_slice(&self.buf[at..at + n]);
            at += n;
        } else {
            // Delimited by the close.
            while self.fill(deadline).await {}
            if !self.eof {
                return None;
            }
            resp.body.extend_from_slice(&self.buf[at..]);
            at = self.buf.len();
        }
        self.buf.drain(..at);
        Some(resp)
    }

    /// Wait up to `timeout` for the server to close (or reset) the connection: `Some` with
    /// whatever else it sent before closing, `None` when it is still open.
    pub async fn closed(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.fill(deadline).await {}
        self.eof.then(|| std::mem::take(&mut self.buf))
    }
}

/// What one raw exchange on a fresh connection gave.
#[derive(Debug)]
pub struct RawExchange {
    /// The first response, if a complete one arrived.
    pub response: Option<RawResponse>,
    /// Whether the server closed the connection within the timeout after that.
    pub closed: bool,
    /// Bytes sent after the first response and before the close.
    pub rest: Vec<u8>,
}

/// Connect, write `bytes` (a failed write is ignored: the server may close first), read one
/// response, then wait up to `close_wait` for the server to close the connection.
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
    close_wait: Duration,
) -> RawExchange {
    let mut conn = RawConn::connect(addr).await;
    let _ = conn.send(bytes).await;
    let response = conn.response(timeout).await;
    let (closed, rest) = match conn.closed(close_wait).await {
        Some(rest) => (true, rest),
        None => (false, Vec::new()),
    };
    RawExchange {
        response,
        closed,
        rest,
    }
}

/// `gatehouse run --daemon -c PATH`: the status of the foreground process, which exits once the
/// daemon runs. The caller stops the daemon (its pid is in the pid file).
pub fn run_daemon(path: &Path) -> std::process::ExitStatus {
    Command::new(BIN)
        .args(["run", "--daemon", "-c"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run gatehouse --daemon")
}
