//! The shipped Grafana dashboard and alert rules against a real Prometheus server (Debian's
//! package) scraping a running gatehouse: after traffic of every kind, every dashboard query
//! and every series a rule reads returns data, every rule evaluates without error, and the
//! "API offline" alert fires once an upstream dies.

use crate::common::*;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/conf/grafana/gatehouse-dashboard.json"
);
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gatehouse.rules.yml");

/// A Prometheus server on a free port, scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str, rules: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules_path = dir.path().join("rules.yml");
        std::fs::write(&rules_path, rules).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n  - job_name: gatehouse\n    static_configs:\n\
                 \x20     - targets: [\"{target}\"]\n",
                rules_path.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::fs::File::create(dir.path().join("out.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err.log")).unwrap())
            .spawn()
            .expect("prometheus (scripts/setup.sh --test installs it)");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<serde_json::Value> {
        let resp = client()
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// Whether `expr` has data within 30 s.
    async fn scraped(&self, expr: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !self.query(expr).await.is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// The result vector of an instant query (empty when it has no data or fails).
    async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        self.get("/api/v1/query", &[("query", expr)])
            .await
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every series selector (`gatehouse_name{matchers}`) in a PromQL expression.
fn selectors(expr: &str) -> Vec<String> {
    regex::Regex::new(r"gatehouse_[a-z_]+(\{[^}]*\})?")
        .unwrap()
        .find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn selectors_are_found_with_their_matchers() {
    assert_eq!(
        selectors("sum(rate(gatehouse_a_total{x=\"1\"}[5m])) / gatehouse_b"),
        ["gatehouse_a_total{x=\"1\"}", "gatehouse_b"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_queries_and_alert_rules_work_on_a_real_prometheus() {
    let app = Upstream::named("app").await;
    let dead = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = crate::pki::Ca::new("ca")
        .server(&["a.test"], 30)
        .write(certs.path(), "a");
    // An API whose upstream answers plain text where the document promises JSON.
    let doc = certs.path().join("pets.yaml");
    std::fs::write(
        &doc,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /pets:\n    get:\n      \
         operationId: listPets\n      responses:\n        '200':\n          description: ok\n          \
         content: {application/json: {schema: {type: array}}}\n",
    )
    .unwrap();
    let body = format!(
        "[upstreams.app]\ntargets = [{{ address = \"{app}\" }}]\n\
         [upstreams.app.health_check]\npath = \"/\"\ninterval = \"500ms\"\ntimeout = \"300ms\"\n\
         healthy_threshold = 1\nunhealthy_threshold = 1\n\
         [upstreams.dead]\ntargets = [{{ address = \"127.0.0.1:{dead}\" }}]\n\
         [authorizers.keys]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{{ consumer = \"c\", sha256 = \"{sha}\" }}]\n\
         [authorizers.idp]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
         jwks_url = \"http://127.0.0.1:1/jwks\"\n\
         [limits.tight]\nrate = 1\nperiod = \"60s\"\nkey = [\"client_ip\"]\n\
         [firewall]\nmanaged = [\"sqli\"]\n\
         [firewall.bans]\nthreshold = 12\nwindow = \"1m\"\nduration = \"1m\"\n\
         [certificates.a]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"app\"\n\
         [[routes]]\nname = \"keyed\"\npath = \"/keyed\"\nauth = \"keys\"\n\
         respond = {{ body = \"k\" }}\n\
         [[routes]]\nname = \"tight\"\npath = \"/tight\"\nlimits = [\"tight\"]\n\
         respond = {{ body = \"t\" }}\n\
         [[routes]]\nname = \"broken\"\npath = \"/broken\"\nupstream = \"dead\"\n\
         [[routes]]\nname = \"never\"\npath = \"/never\"\nrespond = {{ body = \"n\" }}\n\
         [apis.pets]\nopenapi = \"{doc}\"\nupstream = \"app\"\nbase_path = \"/api\"\n\
         validate_responses = \"report\"\n\
         [acme]\ndirectory = \"https://127.0.0.1:1/dir\"\nstorage = \"{acme}\"\n\
         hosts = [\"b.test\"]\n",
        acme = certs.path().join("acme").display(),
        doc = doc.display(),
        app = app.address(),
        sha = "ab".repeat(32),
        cert = cert.display(),
        key = key.display(),
    );
    let gw = Gateway::start(&body);
    // The rules as shipped, but the offline alert fires after 3 s instead of 2 minutes.
    let shipped = std::fs::read_to_string(RULES).unwrap();
    let (head, tail) = shipped
        .split_once("alert: GatehouseUpstreamOffline")
        .unwrap();
    let rules = format!(
        "{head}alert: GatehouseUpstreamOffline{}",
        tail.replacen("for: 2m", "for: 3s", 1)
    );
    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", gw.admin_port), &rules);
    // Prometheus applies new targets on a 5 s tick: wait for the first scrape, so the traffic
    // below lands between scrapes and every rate sees it.
    assert!(
        prometheus.scraped("up == 1").await,
        "prometheus never scraped"
    );

    // Traffic of every kind, before the ban that its refusals lead to.
    let c = client();
    let get = |path: String| {
        let c = c.clone();
        let url = gw.url(&path);
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    for _ in 0..20 {
        assert_eq!(get("/app/x".into()).await, 200);
    }
    assert_eq!(get("/api/pets".into()).await, 200);
    for _ in 0..3 {
        assert_eq!(get("/keyed".into()).await, 401);
    }
    assert_eq!(get("/tight".into()).await, 200);
    for _ in 0..4 {
        assert_eq!(get("/tight".into()).await, 429);
    }
    // 502, then 503 once passive health ejected the dead target.
    for _ in 0..2 {
        assert!(matches!(get("/broken".into()).await, 502 | 503));
    }
    assert_eq!(get(format!("/app/{}", "x".repeat(9000))).await, 414);
    std::fs::write(&gw.config_path, "not = [valid").unwrap();
    gw.signal("HUP");
    for _ in 0..5 {
        assert_eq!(get("/app/x?q=1'%20OR%20'1'='1".into()).await, 403);
    }
    let banned = eventually(Duration::from_secs(5), || async {
        gw.metrics().await.contains("gatehouse_bans_active 1")
    })
    .await;
    assert!(banned, "{}", gw.metrics().await);

    // Scraped twice more, so that every rate has two samples of the traffic.
    assert!(
        prometheus.scraped("gatehouse_bans_active == 1").await,
        "no scrape after the traffic"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut empty = Vec::new();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s");
            queries += 1;
            if prometheus.query(&expr).await.is_empty() {
                empty.push(format!("{}: {expr}", panel["title"]));
            }
        }
    }
    assert!(queries >= 15, "{queries} queries");
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}\nscrape targets: {:?}",
        empty.join("\n"),
        prometheus.get("/api/v1/targets", &[]).await
    );

    // Every series the rules read exists, and every rule evaluates without error.
    let mut missing = Vec::new();
    for line in rules.lines() {
        for selector in selectors(line) {
            if prometheus.query(&selector).await.is_empty() {
                missing.push(selector);
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "rule series without data: {missing:?}");
    let groups = prometheus.get("/api/v1/rules", &[]).await.unwrap();
    let rules_seen: Vec<&serde_json::Value> = groups["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(rules_seen.len() >= 10);
    for rule in &rules_seen {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // The API goes offline: its only target stops answering health checks.
    drop(app);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = prometheus.get("/api/v1/alerts", &[]).await.unwrap();
        let firing = alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "GatehouseUpstreamOffline"
                    && a["labels"]["upstream"] == "app"
                    && a["state"] == "firing"
            });
        if firing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the offline alert did not fire: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
