//! What a reload changes in state that outlives configs: a refused reload changes nothing
//! (target health, limit counters), an applied one applies what its config implies, and
//! settings read only at startup are reported as pending a restart.

use crate::common::*;
use crate::pki::Ca;
use hyper::{Request, Response, StatusCode};
use std::path::Path;
use std::time::Duration;

/// Answers its name, except that `/health` always fails.
async fn failing_checks(name: &'static str) -> Upstream {
    Upstream::start(move |req: Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/health" {
            let mut r = Response::new(full("down"));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return r;
        }
        Response::new(full(name))
    })
    .await
}

/// The check of pool `pool`. One failure marks a target unhealthy, and the next check is a
/// minute away: whatever a reload does to the verdict stays visible.
const HEALTH_CHECK: &str = "[upstreams.pool.health_check]\npath = \"/health\"\n\
                            interval = \"60s\"\nunhealthy_threshold = 1\n";

/// Pool `pool` of `a` and `b` behind route `r`, and route `limited` allowing one request a
/// minute. `extra` goes before the routes.
fn body(a: &Upstream, b: &Upstream, extra: &str) -> String {
    format!(
        "[upstreams.pool]\ntargets = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         {extra}\
         [limits.tight]\nrate = 1\nperiod = \"60s\"\n\
         [[routes]]\nname = \"limited\"\npath = \"/limited\"\nlimits = [\"tight\"]\n\
         respond = {{ body = \"ok\" }}\n\
         [[routes]]\nname = \"r\"\nupstream = \"pool\"\n",
        a.address(),
        b.address()
    )
}

fn certificate(name: &str, cert: &Path, key: &Path) -> String {
    format!(
        "[certificates.{name}]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

async fn names_seen(gw: &Gateway, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(body_of(gw.url("/")).await.1);
    }
    seen
}

fn healthy_series(b: &Upstream) -> String {
    format!(
        "gatehouse_upstream_healthy{{target=\"{}\",upstream=\"pool\"}}",
        b.address()
    )
}

/// Start with `b` failing its check, wait until it is out, and use up route `limited`.
async fn start_with_b_unhealthy(a: &Upstream, b: &Upstream, extra: &str) -> Gateway {
    let gw = Gateway::start(&body(a, b, &format!("{HEALTH_CHECK}{extra}")));
    let series = healthy_series(b);
    let out = eventually(Duration::from_secs(10), || async {
        gw.metrics().await.contains(&format!("{series} 0"))
    })
    .await;
    assert!(out, "b never reported unhealthy: {}", gw.stderr());
    assert!(names_seen(&gw, 10).await.iter().all(|n| n == "a"));
    let mut limited = false;
    for _ in 0..5 {
        if body_of(gw.url("/limited")).await.0 == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the limit never answered 429");
    gw
}

/// The running config's state after a refused reload: `b` still out, the limit still used up,
/// the version unchanged.
async fn assert_nothing_changed(gw: &Gateway, b: &Upstream, version: &serde_json::Value) {
    let config = get_json(gw.admin_url("/-/config")).await;
    assert_eq!(config["last_reload"]["ok"], false, "{config}");
    assert_eq!(&config["version"], version);
    let metrics = gw.metrics().await;
    let series = healthy_series(b);
    assert!(
        metrics.contains(&format!("{series} 0")),
        "a refused reload changed b's health: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("gatehouse_upstream_healthy"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let seen = names_seen(gw, 20).await;
    assert!(
        seen.iter().all(|n| n == "a"),
        "unhealthy b got traffic after a refused reload: {seen:?}"
    );
    let upstreams = get_json(gw.admin_url("/-/upstreams")).await;
    assert_eq!(upstreams["upstreams"][0]["health_check"], true);
    assert_eq!(
        upstreams["upstreams"][0]["targets"][1]["healthy"], false,
        "{upstreams}"
    );
    assert_eq!(
        body_of(gw.url("/limited")).await.0,
        429,
        "a refused reload reset the limit's counters"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_reload_leaves_target_health_and_limit_counters_alone() {
    let a = Upstream::named("a").await;
    let b = failing_checks("b").await;
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let (d_cert, d_key) = ca.server(&["d.test"], 30).write(certs.path(), "d");
    let tls = free_port();
    let listener = |default: &str| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:{tls}\"\n\
             tls = {{ default_certificate = \"{default}\" }}\n"
        )
    };
    let gw = start_with_b_unhealthy(
        &a,
        &b,
        &format!("{}{}", listener("d"), certificate("d", &d_cert, &d_key)),
    )
    .await;
    let version = get_json(gw.admin_url("/-/config")).await["version"].clone();

    // Drops the check, and renames the certificate the TLS listener serves by default: the
    // new config compiles, then is refused (listeners keep their settings until a restart).
    gw.rewrite(&body(
        &a,
        &b,
        &format!("{}{}", listener("d2"), certificate("d2", &d_cert, &d_key)),
    ));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 422);
    let answer = resp.text().await.unwrap();
    assert!(
        answer.contains("the running listener serves certificate"),
        "{answer}"
    );
    assert_nothing_changed(&gw, &b, &version).await;

    // Drops the check, and names a certificate file that cannot be read: refused while
    // compiling, after the pool was compiled.
    let missing = certs.path().join("missing.crt");
    gw.rewrite(&body(
        &a,
        &b,
        &format!(
            "{}{}{}",
            listener("d"),
            certificate("d", &d_cert, &d_key),
            certificate("gone", &missing, &d_key)
        ),
    ));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 422);
    let answer = resp.text().await.unwrap();
    assert!(answer.contains("certificates.gone"), "{answer}");
    assert_nothing_changed(&gw, &b, &version).await;
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("name=\"d2\"") && !metrics.contains("name=\"gone\""),
        "a refused config's certificates are in the expiry gauge: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_applied_reload_that_drops_the_health_check_brings_targets_back() {
    let a = Upstream::named("a").await;
    let b = failing_checks("b").await;
    let gw = start_with_b_unhealthy(&a, &b, "").await;
    gw.rewrite(&body(&a, &b, ""));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // Nothing would ever check b again, so it is healthy from the swap on.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!("{} 1", healthy_series(&b))),
        "{metrics}"
    );
    assert!(
        names_seen(&gw, 10).await.contains(&"b".to_string()),
        "b got no traffic once its check was dropped"
    );
    assert_eq!(
        body_of(gw.url("/limited")).await.0,
        429,
        "an applied reload keeps the limit's counters"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_access_log_path_is_pending_until_a_restart() {
    let logs = tempfile::tempdir().unwrap();
    let (first, second) = (
        logs.path().join("first.log"),
        logs.path().join("second.log"),
    );
    let body = |path: &Path, extra: &str| {
        format!(
            "[access_log]\npath = \"{}\"\n\
             [[routes]]\nname = \"one\"\npath = \"/one\"\nrespond = {{ body = \"one\" }}\n{extra}",
            path.display()
        )
    };
    let gw = Gateway::start(&body(&first, ""));
    let logged = |path: &Path, route: &str| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(&format!("\"route\":\"{route}\""))
    };
    assert_eq!(body_of(gw.url("/one")).await.0, 200);
    let written = eventually(Duration::from_secs(5), || async { logged(&first, "one") }).await;
    assert!(written, "no access log line in {}", first.display());
    let config = get_json(gw.admin_url("/-/config")).await;
    assert_eq!(config["pending_restart"], serde_json::json!([]), "{config}");

    gw.rewrite(&body(
        &second,
        "[[routes]]\nname = \"two\"\npath = \"/two\"\nrespond = { body = \"two\" }\n",
    ));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // The rest of the file applies.
    assert_eq!(body_of(gw.url("/two")).await, (200, "two".to_string()));
    let config = get_json(gw.admin_url("/-/config")).await;
    assert_eq!(
        config["pending_restart"],
        serde_json::json!(["access_log.path"]),
        "{config}"
    );
    let stderr = gw.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("apply on the next upgrade or restart"));
    assert!(
        warning.is_some_and(|l| l.contains("access_log.path")),
        "no warning naming access_log.path: {stderr}"
    );
    // The file opened at startup keeps getting the lines.
    let written = eventually(Duration::from_secs(5), || async { logged(&first, "two") }).await;
    assert!(written, "the log left {} after the reload", first.display());
    assert!(
        !second.exists(),
        "the reload opened the new access log file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_browser_requests_cannot_reload() {
    let gw = Gateway::start("[[routes]]\nname = \"a\"\npath = \"/a\"\nrespond = {}\n");
    gw.rewrite("[[routes]]\nname = \"b\"\npath = \"/b\"\nrespond = {}\n");
    // What a page on another site makes a visitor's browser send to a loopback admin address.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let resp = client()
            .post(gw.admin_url("/-/reload"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{name}: {value}");
    }
    assert_eq!(
        client().get(gw.url("/a")).send().await.unwrap().status(),
        200
    );
    // The operator's own tools send neither header.
    assert_eq!(gw.reload_via_admin().await.status(), 200);
    assert_eq!(
        client().get(gw.url("/b")).send().await.unwrap().status(),
        200
    );
}
