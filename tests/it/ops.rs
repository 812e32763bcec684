//! Zero-downtime operations: reload under load, file watch, admin API and tokens, audit log,
//! SIGTERM draining, graceful binary upgrade.

use crate::common::*;
use hyper::Response;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests sent in a loop until stopped, each on a new connection (so a listener that stops
/// accepting, or a refused connection, shows up as a failure).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            async move {
                let c = reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                // Bounded: at most 60 s or until stopped.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match c.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status())),
                        Err(e) => failed.lock().unwrap().push(format!("{e:?}")),
                    }
                }
            }
        });
        Self {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

fn routes(upstream: &Upstream, extra: &str) -> String {
    format!(
        "[upstreams.app]\ntargets = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\n{extra}",
        upstream.address()
    )
}

const READ_TOKEN: &str = "read-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn reloads_under_load_fail_no_request_and_bad_configs_change_nothing() {
    let upstream = Upstream::named("app").await;
    let gw = Gateway::start(&routes(&upstream, ""));
    let load = Load::start(gw.url("/"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Good config through the admin API: a new route appears.
    gw.rewrite(&routes(
        &upstream,
        "[[routes]]\nname = \"new\"\npath = \"/new\"\nrespond = { body = \"new\" }\n",
    ));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["result"], "ok");
    assert_eq!(body_of(gw.url("/new")).await, (200, "new".to_string()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Bad config through the API and through SIGHUP: refused, old behaviour kept.
    gw.rewrite("[[routes]]\nname = \"x\"\nupstream = \"missing\"\n");
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("routes[0].upstream: unknown upstream \"missing\""),
        "{body}"
    );
    gw.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(body_of(gw.url("/new")).await, (200, "new".to_string()));

    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 50, "only {ok} requests under load");

    let config = get_json(gw.admin_url("/-/config")).await;
    assert_eq!(config["source"], "admin");
    assert_eq!(config["last_reload"]["ok"], false);
    assert_eq!(config["last_reload"]["source"], "signal");
    assert!(config["last_reload"]["error"]
        .as_str()
        .unwrap()
        .contains("unknown upstream"));
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gatehouse_config_reload_total{result="error"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watched_config_file_reloads_by_itself() {
    let watch = "watch_config = true\nwatch_interval = \"100ms\"";
    let a = "[[routes]]\nname = \"a\"\npath = \"/a\"\nrespond = { body = \"a\" }\n";
    let gw = Gateway::start_with(watch, "", a);
    assert_eq!(
        client().get(gw.url("/b")).send().await.unwrap().status(),
        404
    );
    // Each file is replaced in one step (a rename): the watch must not catch one truncated but
    // not yet written, which would be another, broken file.
    let replace = |text: &str| {
        let next = gw.dir.path().join("next.toml");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &gw.config_path).unwrap();
    };
    let text = std::fs::read_to_string(&gw.config_path).unwrap()
        + "[[routes]]\nname = \"b\"\npath = \"/b\"\nrespond = { body = \"b\" }\n";
    replace(&text);
    let reloaded = eventually(Duration::from_secs(5), || async {
        client().get(gw.url("/b")).send().await.unwrap().status() == 200
    })
    .await;
    assert!(reloaded, "file change was not picked up: {}", gw.stderr());
    // A broken file is reported once and changes nothing.
    replace("[[routes]\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        client().get(gw.url("/b")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        gw.stderr().matches("config reload failed").count(),
        1,
        "{}",
        gw.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_tokens_and_never_shows_them() {
    let upstream = Upstream::named("app").await;
    let audit = tempfile::tempdir().unwrap();
    let audit_path = audit.path().join("audit.log");
    let admin = format!(
        "read_token = \"{READ_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\naudit_log = \"{}\"",
        audit_path.display()
    );
    let gw = Gateway::start_with("", &admin, &routes(&upstream, ""));
    let c = client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = c.get(gw.admin_url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(get("/-/health", None).await.unwrap().status(), 200);
    assert_eq!(get("/-/ready", None).await.unwrap().status(), 200);
    let denied = get("/-/routes", None).await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse-admin\""
    );
    assert_eq!(
        get("/metrics", Some("wrong-token-0123456789"))
            .await
            .unwrap()
            .status(),
        401
    );

    let mut bodies = String::new();
    for path in ["/metrics", "/-/config", "/-/routes", "/-/upstreams"] {
        for token in [READ_TOKEN, ADMIN_TOKEN] {
            let resp = get(path, Some(token)).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            bodies.push_str(&resp.text().await.unwrap());
        }
    }
    assert!(
        !bodies.contains(READ_TOKEN) && !bodies.contains(ADMIN_TOKEN),
        "token leaked"
    );

    let routes = get_json_auth(gw.admin_url("/-/routes"), Some(READ_TOKEN)).await;
    assert_eq!(routes["routes"][0]["name"], "app");
    assert_eq!(routes["routes"][0]["upstream"], "app");
    c.get(gw.url("/x")).send().await.unwrap();
    // Recorded in the logging phase, just after the response went out.
    let seen = eventually(Duration::from_secs(5), || async {
        let routes = get_json_auth(gw.admin_url("/-/routes"), Some(READ_TOKEN)).await;
        routes["routes"][0]["last_request"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    })
    .await;
    assert!(seen, "last_request never set");
    let upstreams = get_json_auth(gw.admin_url("/-/upstreams"), Some(READ_TOKEN)).await;
    assert_eq!(
        upstreams["upstreams"][0]["targets"][0]["address"],
        upstream.address()
    );
    assert_eq!(upstreams["upstreams"][0]["targets"][0]["healthy"], true);

    let reload = |token: &str| {
        c.post(gw.admin_url("/-/reload"))
            .bearer_auth(token.to_string())
            .send()
    };
    assert_eq!(reload(READ_TOKEN).await.unwrap().status(), 403);
    let text = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        "upstream = \"app\"\n",
        "upstream = \"app\"\n[[routes]]\nname = \"added\"\npath = \"/added\"\nrespond = {}\n",
    );
    std::fs::write(&gw.config_path, text).unwrap();
    assert_eq!(reload(ADMIN_TOKEN).await.unwrap().status(), 200);
    // Scheme names are case-insensitive.
    let lower = c
        .get(gw.admin_url("/-/routes"))
        .header("authorization", format!("bearer {READ_TOKEN}"));
    assert_eq!(lower.send().await.unwrap().status(), 200);

    // Audit: the startup config, then the reload with what changed; no secrets.
    let audit_text = std::fs::read_to_string(&audit_path).unwrap();
    assert!(!audit_text.contains(READ_TOKEN) && !audit_text.contains(ADMIN_TOKEN));
    let lines: Vec<serde_json::Value> = audit_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{audit_text}");
    assert_eq!(lines[0]["source"], "startup");
    assert_eq!(lines[0]["changes"]["routes"]["added"][0], "app");
    assert_eq!(lines[1]["source"], "admin");
    assert_eq!(lines[1]["previous_version"], lines[0]["version"]);
    assert_eq!(lines[1]["changes"]["routes"]["added"][0], "added");
    assert!(lines[1]["changes"]["routes"]["removed"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn admin_beyond_loopback_requires_tokens() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[admin]\naddress = \"0.0.0.0:9901\"\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains(
            "admin.read_token: required when the admin listener (0.0.0.0:9901) is not on loopback"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("admin.admin_token: required"), "{stderr}");
}

/// An upstream that answers after `delay`.
async fn slow(delay: Duration) -> Upstream {
    Upstream::start(move |_req| async move {
        tokio::time::sleep(delay).await;
        Response::new(full("slow"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_reports_not_ready_then_drains_in_flight_requests() {
    let upstream = slow(Duration::from_millis(1500)).await;
    let mut gw = Gateway::start_with(
        "shutdown_delay = \"1s\"\ngrace_period = \"3s\"",
        "",
        &routes(&upstream, ""),
    );
    let in_flight = tokio::spawn(client().get(gw.url("/")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = client().get(gw.admin_url("/-/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "ready must turn false first");
    // Still serving new requests during the delay.
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow");
    let exited = eventually(Duration::from_secs(20), || {
        let done = gw.try_wait();
        async move { done }
    })
    .await;
    assert!(exited, "gatehouse did not exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_upgrade_under_load_fails_no_request() {
    let upstream = Upstream::named("app").await;
    let gw = Gateway::start_with("grace_period = \"1s\"", "", &routes(&upstream, ""));
    let load = Load::start(gw.url("/"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The new process waits on the upgrade socket; the old one hands over on SIGQUIT.
    let mut new = gw.start_upgrade();
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.signal("QUIT");
    // The old process drains (Pingora waits 5 s, then the grace period) and exits.
    let mut old = gw;
    let deadline = Instant::now() + Duration::from_secs(30);
    let old_exited = loop {
        if old.try_wait() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;
    let new_alive = new.try_wait().unwrap().is_none();
    let new_err = std::fs::read_to_string(old.dir.path().join("new.err")).unwrap_or_default();
    let _ = new.kill();
    let _ = new.wait();
    assert!(old_exited, "old process still running");
    assert!(new_alive, "new process died: {new_err}");
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_rules_are_valid_and_use_metrics_gatehouse_exports() {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/gatehouse.rules.yml"
    ))
    .unwrap();
    if let Ok(out) = std::process::Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gatehouse.rules.yml"),
        ])
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let upstream = Upstream::named("app").await;
    // A remote JWT authorizer, so the key set families exist (nothing listens on port 1).
    let jwt = "[authorizers.idp]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
               jwks_url = \"http://127.0.0.1:1/jwks\"\n";
    // And a certificate, for the expiry series.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::pki::Ca::new("ca")
        .server(&["a.test"], 30)
        .write(dir.path(), "a");
    let certs = format!(
        "[certificates.a]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    // And a firewall with bans, for the firewall series.
    let firewall = "[firewall]\nmanaged = [\"sqli\"]\n[firewall.bans]\nthreshold = 100\n";
    // And an API whose upstream answers text where the document promises JSON, for the
    // contract series.
    let doc = dir.path().join("api.yaml");
    std::fs::write(
        &doc,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /probe:\n    get:\n      \
         responses: {'200': {description: ok, content: {application/json: {schema: {type: array}}}}}\n",
    )
    .unwrap();
    let api = format!(
        "[apis.a]\nopenapi = \"{}\"\nupstream = \"app\"\nvalidate_responses = \"report\"\n",
        doc.display()
    );
    // And automatic certificates from a CA that is not there, for the ACME series.
    let acme = format!(
        "[acme]\ndirectory = \"https://127.0.0.1:1/dir\"\nstorage = \"{}\"\n\
         hosts = [\"a.test\"]\n",
        dir.path().join("acme").display()
    );
    let gw = Gateway::start(&format!(
        "{jwt}{certs}{firewall}{api}{acme}{}",
        routes(&upstream, "")
    ));
    // Families with labels appear once they have a series: after one request.
    client().get(gw.url("/")).send().await.unwrap();
    client().get(gw.url("/probe")).send().await.unwrap();
    let counted = eventually(Duration::from_secs(5), || async {
        let m = gw.metrics().await;
        m.contains("gatehouse_requests_total{")
            && m.contains("gatehouse_contract_violations_total{")
            && m.contains("gatehouse_acme_orders_total{")
    })
    .await;
    assert!(counted);
    let metrics = gw.metrics().await;
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("gatehouse_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        let exported = metrics.contains(&format!("# TYPE {name} "));
        assert!(
            exported,
            "rules use {name}, which gatehouse does not export:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_mode_serves_and_writes_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = dir.path().join("access.log");
    let body = format!(
        "[access_log]\npath = \"{}\"\n[[routes]]\nname = \"hi\"\npath = \"/hi\"\nrespond = {{ body = \"hi\" }}\n",
        log.display()
    );
    let path = dir.path().join("g.toml");
    std::fs::write(&path, Gateway::config(dir.path(), port, admin, &body)).unwrap();
    let status = run_daemon(&path);
    assert!(
        status.success(),
        "the foreground process exits once the daemon runs"
    );
    let pid_file = dir.path().join("gatehouse.pid");
    let url = format!("http://127.0.0.1:{port}/hi");
    let up = eventually(Duration::from_secs(20), || {
        let u = url.clone();
        async move { client().get(u).send().await.is_ok() }
    })
    .await;
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    // Killed when the test ends, however it ends.
    let _guard = KillOnDrop(pid.trim().to_string());
    let logged = up
        && eventually(Duration::from_secs(5), || async {
            let _ = client().get(&url).send().await;
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("\"route\":\"hi\"")
        })
        .await;
    if !pid.trim().is_empty() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", pid.trim()])
            .status();
    }
    assert!(up, "daemon did not serve");
    assert!(!pid.trim().is_empty(), "no pid file");
    assert!(logged, "daemon wrote no access log line");
    let pid: i32 = pid.trim().parse().unwrap();
    let gone = eventually(Duration::from_secs(10), || async move {
        !crate::shutdown::alive(pid)
    })
    .await;
    assert!(gone, "the daemon did not exit after SIGINT");
}

/// Sends SIGKILL to a pid when dropped.
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_requests_finish_on_the_config_they_started_with() {
    let upstream = slow(Duration::from_millis(800)).await;
    let gw = Gateway::start(&routes(&upstream, ""));
    let in_flight = tokio::spawn(client().get(gw.url("/slow")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.rewrite("[[routes]]\nname = \"other\"\npath = \"/other\"\nrespond = {}\n");
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        client().get(gw.url("/slow")).send().await.unwrap().status(),
        404
    );
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow");
    // Series of what the reload removed are gone, so alerts do not fire for them.
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("gatehouse_upstream_healthy{"),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"gatehouse_route_last_request_timestamp_seconds{route="app"}"#));
    assert!(metrics.contains(r#"gatehouse_route_last_request_timestamp_seconds{route="other"}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_survive_a_reload() {
    let upstream = Upstream::named("app").await;
    let gw = Gateway::start(&routes(&upstream, ""));
    let c = client();
    let send = |n: usize| {
        let c = c.clone();
        let url = gw.url("/");
        async move {
            for _ in 0..n {
                assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    send(10).await;
    let before = upstream.connections.load(Ordering::SeqCst);
    gw.rewrite(&routes(
        &upstream,
        "[[routes]]\nname = \"n\"\npath = \"/n\"\nrespond = {}\n",
    ));
    assert_eq!(gw.reload_via_admin().await.status(), 200);
    send(10).await;
    let after = upstream.connections.load(Ordering::SeqCst);
    // The pool is keyed by target, not by config version: no reconnect storm after a reload
    // (10 requests without reuse would open 10; the slack covers hand-back races under load).
    assert!(
        after <= before + 3,
        "{before} connections before the reload, {after} after"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_cannot_remove_the_admin_tokens() {
    let admin = format!("read_token = \"{READ_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"");
    let body = "[[routes]]\nname = \"a\"\nrespond = {}\n";
    let gw = Gateway::start_with("", &admin, body);
    // The file loses its tokens; the reload applies routes but the tokens stay in force.
    gw.rewrite(body);
    let resp = client()
        .post(gw.admin_url("/-/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let open = client()
        .get(gw.admin_url("/-/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 401);
    assert!(
        gw.stderr().contains("apply on the next upgrade or restart"),
        "{}",
        gw.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_with_default_settings_keep_their_own_pid_file_and_upgrade_socket() {
    // Daemons: Pingora writes the pid file when it daemonizes.
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut guards = Vec::new();
    let mut seen = Vec::new();
    for dir in &dirs {
        let (port, admin) = (free_port(), free_port());
        let path = dir.path().join("g.toml");
        let log = dir.path().join("access.log");
        std::fs::write(
            &path,
            format!(
                "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\
                 [access_log]\npath = \"{}\"\n[[routes]]\nname = \"r\"\nrespond = {{}}\n",
                log.display()
            ),
        )
        .unwrap();
        let pid_file = gatehouse::server::instance_path(std::path::Path::new(""), &path, "pid");
        let sock = gatehouse::server::instance_path(std::path::Path::new(""), &path, "sock");
        assert_ne!(pid_file, sock);
        let status = run_daemon(&path);
        assert!(status.success());
        let up = eventually(Duration::from_secs(20), || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        guards.push(KillOnDrop(pid.trim().to_string()));
        assert!(up, "daemon {} did not serve", dirs.len());
        assert!(!pid.trim().is_empty(), "no pid in {}", pid_file.display());
        seen.push((pid_file, pid.trim().to_string()));
    }
    assert_ne!(seen[0].0, seen[1].0, "the same pid file for two configs");
    assert_ne!(seen[0].1, seen[1].1);
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // The unit names the installed binary; point it at the one under test, which verify
    // checks is executable. verify exits 0 even on lines it could not parse, so its output
    // must be empty too.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/gatehouse.service"
    ))
    .unwrap();
    assert!(unit.contains("/usr/local/bin/gatehouse"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gatehouse", BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/setup.sh --test installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn the_dockerfile_copies_every_directory_the_build_reads() {
    // The image cannot be built here (no registry for its base images), so at least the build
    // stage must not miss a path: the vendored crates, the test and bench targets the manifest
    // names.
    let root = env!("CARGO_MANIFEST_DIR");
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let mut dirs: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.split_once("path = \"").map(|(_, rest)| rest))
        .filter_map(|p| p.split('/').next())
        .collect();
    dirs.extend(["src"]);
    dirs.sort_unstable();
    dirs.dedup();
    assert!(dirs.contains(&"vendor"), "{dirs:?}");
    for dir in dirs {
        assert!(copied.contains(&dir), "the Dockerfile does not COPY {dir}/");
    }
}

/// `POST /-/explain` answers from the running config, behind the read token, and sends
/// nothing upstream.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_explains_a_request_on_the_running_config() {
    let upstream = Upstream::named("app").await;
    let admin = format!("read_token = \"{READ_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"");
    let gw = Gateway::start_with(
        "",
        &admin,
        &routes(&upstream, "strip_prefix = false\nmethods = [\"GET\"]\n"),
    );
    let question = serde_json::json!({
        "method": "GET",
        "url": format!("http://127.0.0.1:{}/v1/items?x=1", gw.port),
        "headers": {"x-trace": "1"},
        "client_ip": "192.0.2.7",
    });
    let post = |token: Option<&str>, body: String| {
        let mut req = client().post(gw.admin_url("/-/explain")).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(
        post(None, question.to_string()).await.unwrap().status(),
        401
    );
    let resp = post(Some(READ_TOKEN), question.to_string()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["outcome"]["result"], "proxied", "{v}");
    assert_eq!(v["outcome"]["route"], "app");
    assert_eq!(v["outcome"]["upstream_path"], "/v1/items?x=1");

    // After a reload, the new config answers.
    gw.rewrite(&routes(&upstream, "methods = [\"POST\"]\n"));
    let reload = client()
        .post(gw.admin_url("/-/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let v: serde_json::Value = post(Some(READ_TOKEN), question.to_string())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["outcome"]["status"], 405, "{v}");

    let bad = post(Some(READ_TOKEN), "{\"url\": 1}".into()).await.unwrap();
    assert_eq!(bad.status(), 400);
    let resp = client()
        .get(gw.admin_url("/-/explain"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
}

/// `GET /-/status` rendered by headless Chromium (Debian's package): routes with traffic and
/// last call, upstream health, certificates, recent config changes and top refusals. The
/// screenshot is kept in `target/tmp/status-page.png`.
#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_renders_in_a_real_browser() {
    let upstream = Upstream::named("app").await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::pki::Ca::new("ca")
        .server(&["shop.test"], 30)
        .write(dir.path(), "shop");
    let audit = dir.path().join("audit.log");
    let body = format!(
        "[certificates.shop]\ncert = \"{}\"\nkey = \"{}\"\n\
         [authorizers.keys]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{{ consumer = \"c\", sha256 = \"{}\" }}]\n\
         [[routes]]\nname = \"a<i>b\"\npath = \"/keyed\"\nauth = \"keys\"\n\
         respond = {{ body = \"k\" }}\n\
         [[routes]]\nname = \"idle\"\npath = \"/idle\"\nrespond = {{ body = \"i\" }}\n{}",
        cert.display(),
        key.display(),
        "ab".repeat(32),
        routes(&upstream, "")
    );
    let gw = Gateway::start_with("", &format!("audit_log = \"{}\"", audit.display()), &body);
    for _ in 0..3 {
        client().get(gw.url("/v1/x")).send().await.unwrap();
    }
    for _ in 0..2 {
        let r = client().get(gw.url("/keyed")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let page = client()
        .get(gw.admin_url("/-/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<i>"), "names are escaped");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));

    let url = gw.admin_url("/-/status");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let chromium = |args: &[String]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1200,1400",
            ])
            .args(args)
            .output()
            .expect("chromium (scripts/setup.sh --test installs it)")
    };
    let dom = chromium(&["--dump-dom".into(), url.clone()]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for expected in [
        "gatehouse",
        "app",
        "idle",
        "never",
        "healthy",
        "shop.test",
        "in 30 days",
        "startup",
        "auth: missing_credentials on a&lt;i&gt;b",
    ] {
        assert!(dom.contains(expected), "{expected:?} not in {dom}");
    }
    // The route that was called three times says so, and when.
    assert!(
        dom.contains("<td>app</td><td>app</td><td>3</td><td>"),
        "{dom}"
    );
    let out = chromium(&[format!("--screenshot={}", shot.display()), url]);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "no screenshot ({size} bytes): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
