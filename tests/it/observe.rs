//! Metrics, access log and config reload as an operator sees them.

use crate::common::*;
use std::time::Duration;

fn mock_routes() -> &'static str {
    "[[routes]]\nname = \"hello\"\npath = \"/hello\"\nrespond = { body = \"hi\" }\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_reports_requests_by_route_name() {
    let upstream = Upstream::named("ok").await;
    let gw = Gateway::start(&format!(
        "{}[upstreams.backend]\ntargets = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"users\"\npath_prefix = \"/users\"\nupstream = \"backend\"\n",
        mock_routes(),
        upstream.address()
    ));
    let c = client();
    for _ in 0..3 {
        c.get(gw.url("/hello")).send().await.unwrap();
    }
    c.get(gw.url("/users/12345")).send().await.unwrap();
    c.get(gw.url("/users/67890")).send().await.unwrap();
    c.get(gw.url("/missing/secret-path")).send().await.unwrap();

    let text = gw.metrics().await;
    for expected in [
        r#"gatehouse_requests_total{method="GET",route="hello",status="2xx"} 3"#,
        r#"gatehouse_requests_total{method="GET",route="users",status="2xx"} 2"#,
        r#"gatehouse_requests_total{method="GET",route="-",status="4xx"} 1"#,
        r#"gatehouse_request_duration_seconds_count{route="users"} 2"#,
        r#"gatehouse_upstream_duration_seconds_count{upstream="backend"} 2"#,
        r#"gatehouse_config_reload_total{result="success"} 1"#,
        "gatehouse_config_version_info{version=",
        r#"gatehouse_route_last_request_timestamp_seconds{route="hello"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    assert!(
        text.contains(&format!(
            "gatehouse_upstream_healthy{{target=\"{}\",upstream=\"backend\"}} 1",
            upstream.address()
        )),
        "{text}"
    );
    // Labels never carry raw paths.
    assert!(!text.contains("12345") && !text.contains("secret-path"));

    // The exposition is valid for promtool when it is installed (CI installs it).
    if let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // promtool exits 3 for lint warnings only; errors exit 1.
        assert_ne!(out.status.code(), Some(1), "promtool: {report}");
        assert!(!report.contains("error"), "promtool: {report}");
    }

    let health = c.get(gw.admin_url("/-/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = get_json(gw.admin_url("/-/ready")).await;
    assert_eq!(ready["ready"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_has_one_json_line_per_request_without_secrets() {
    let gw = Gateway::start(mock_routes());
    client()
        .get(gw.url("/hello?token=supersecret"))
        .header("authorization", "Bearer supersecret")
        .header("x-request-id", "trace-me")
        .send()
        .await
        .unwrap();
    client().get(gw.url("/nope")).send().await.unwrap();
    let found = eventually(Duration::from_secs(5), || async {
        gw.access_log().len() >= 2
    })
    .await;
    assert!(found, "no access log lines");
    let lines = gw.access_log();
    let hello = lines
        .iter()
        .find(|l| l["request_id"] == "trace-me")
        .expect("line for request");
    assert_eq!(hello["method"], "GET");
    assert_eq!(hello["path"], "/hello");
    assert_eq!(hello["route"], "hello");
    assert_eq!(hello["status"], 200);
    assert_eq!(hello["client_ip"], "127.0.0.1");
    assert_eq!(hello["bytes_sent"], 2);
    assert!(hello["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(hello["time"].as_str().unwrap().ends_with('Z'));
    let missing = lines.iter().find(|l| l["path"] == "/nope").unwrap();
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["error"], "no route for this request");
    let raw = std::fs::read_to_string(gw.dir.path().join("stdout.log")).unwrap();
    assert!(
        !raw.contains("supersecret"),
        "secrets leaked into the access log"
    );
}

/// A gatehouse on the mock routes writing its access log to `access.log` in a new tempdir.
fn logging_to_a_file() -> (tempfile::TempDir, std::path::PathBuf, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = Gateway::start(&format!(
        "[access_log]\npath = \"{}\"\n{}",
        path.display(),
        mock_routes()
    ));
    (dir, path, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_can_go_to_a_file_or_be_off() {
    let (_dir, path, gw) = logging_to_a_file();
    client().get(gw.url("/hello")).send().await.unwrap();
    let written = eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("\"route\":\"hello\"")
    })
    .await;
    assert!(written);

    let gw = Gateway::start(&format!("[access_log]\nenabled = false\n{}", mock_routes()));
    client().get(gw.url("/hello")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gw.access_log().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let gw = Gateway::start(mock_routes());
    let write = |body: &str| {
        std::fs::write(
            &gw.config_path,
            Gateway::config(gw.dir.path(), gw.port, gw.admin_port, body),
        )
        .unwrap()
    };
    write(&format!(
        "{}[[routes]]\nname = \"new\"\npath = \"/new\"\nrespond = {{ body = \"new\" }}\n",
        mock_routes()
    ));
    gw.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || async {
        client().get(gw.url("/new")).send().await.unwrap().status() == 200
    })
    .await;
    assert!(reloaded, "new route never appeared: {}", gw.stderr());

    write("[[routes]]\nname = \"broken\"\nupstream = \"nowhere\"\n");
    gw.signal("HUP");
    let counted = eventually(Duration::from_secs(5), || async {
        gw.metrics()
            .await
            .contains(r#"gatehouse_config_reload_total{result="error"} 1"#)
    })
    .await;
    assert!(counted, "failed reload not counted");
    assert_eq!(
        client().get(gw.url("/new")).send().await.unwrap().status(),
        200
    );
    assert!(
        gw.stderr()
            .contains("routes[0].upstream: unknown upstream \"nowhere\""),
        "{}",
        gw.stderr()
    );
}

/// conf/gatehouse.logrotate run by the real logrotate against a running gatehouse (its paths
/// moved into a tempdir): lines before the rotation stay in the renamed file, lines after it
/// go to a new file by the old name (SIGUSR1 reopens it).
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_logrotate_config_rotates_the_access_log() {
    let (dir, path, gw) = logging_to_a_file();
    let request = || async {
        let resp = client().get(gw.url("/hello")).send().await.unwrap();
        resp.headers()["x-request-id"].to_str().unwrap().to_string()
    };
    let logged = |file: std::path::PathBuf, id: String| async move {
        eventually(Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let found = text.contains(&id);
            async move { found }
        })
        .await
    };
    let before = request().await;
    assert!(logged(path.clone(), before.clone()).await);

    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/gatehouse.logrotate"
    ))
    .unwrap();
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        shipped
            .replace("/var/log/gatehouse/access.log", &path.display().to_string())
            .replace(
                "/run/gatehouse/gatehouse.pid",
                &gw.dir.path().join("gatehouse.pid").display().to_string(),
            ),
    )
    .unwrap();
    let out = std::process::Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.path().join("state"))
        .arg(&conf)
        .output()
        .expect("logrotate (scripts/setup.sh --test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = request().await;
    assert!(
        logged(path.clone(), after.clone()).await,
        "a new access.log after the rotation"
    );
    let rotated = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
    assert!(rotated.contains(&before) && !rotated.contains(&after));
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&before));
}

/// `[server] log_format = "json"`: every process log line is one JSON object; `log_level`
/// leaves out what is below it.
#[tokio::test(flavor = "multi_thread")]
async fn process_logs_as_json_and_at_the_configured_level() {
    let gw = Gateway::start_with("log_format = \"json\"", "", mock_routes());
    gw.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || {
        let done = gw.stderr().contains("reload");
        async move { done }
    })
    .await;
    assert!(reloaded, "{}", gw.stderr());
    let stderr = gw.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let loaded = lines
        .iter()
        .find(|l| l["fields"]["message"] == "config loaded")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(loaded["level"], "INFO");
    assert!(loaded["fields"]["summary"].is_string(), "{loaded}");

    let quiet = Gateway::start_with("log_level = \"warn\"", "", mock_routes());
    client().get(quiet.url("/hello")).send().await.unwrap();
    assert!(
        !quiet.stderr().contains("config loaded"),
        "{}",
        quiet.stderr()
    );
}
