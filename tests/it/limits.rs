//! Throttling through the real binary: rate with burst, quotas, concurrency, dry run, headers,
//! reloads.

use crate::common::*;
use hyper::Response;
use std::time::Duration;

fn limited(limit: &str, route_extra: &str) -> String {
    format!(
        "[limits.lim]\n{limit}\n\
         [[routes]]\nname = \"r\"\nlimits = [\"lim\"]\n{route_extra}\nrespond = {{ body = \"ok\" }}\n"
    )
}

async fn statuses(gw: &Gateway, n: usize, header: Option<(&str, &str)>) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut req = client().get(gw.url("/"));
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        out.push(req.send().await.unwrap().status().as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_with_burst_answers_429_with_retry_after_and_ratelimit_headers() {
    let gw = Gateway::start(&limited("rate = 3\nperiod = \"60s\"\nburst = 2", ""));
    let c = client();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = c.get(gw.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"lim\";q=3;w=60");
        remaining.push(resp.headers()["ratelimit"].to_str().unwrap().to_string());
    }
    assert_eq!(remaining[0], "\"lim\";r=2;t=20");
    assert_eq!(remaining[2], "\"lim\";r=0;t=60");
    let resp = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "20");
    assert_eq!(resp.headers()["ratelimit"], "\"lim\";r=0;t=20");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate limit exceeded");
    assert_eq!(body["request_id"], id.as_str());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gatehouse_ratelimit_decisions_total{policy="lim",result="allowed"} 3"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"gatehouse_ratelimit_decisions_total{policy="lim",result="rejected"} 1"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limit_holds_exactly_under_concurrent_load() {
    let upstream = Upstream::named("up").await;
    let gw = Gateway::start(&format!(
        "[limits.lim]\nrate = 50\nperiod = \"600s\"\nburst = 49\nkey = [\"route\"]\n\
         [upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"r\"\nlimits = [\"lim\"]\nupstream = \"p\"\n",
        upstream.address()
    ));
    let allowed = concurrent_ok(vec![gw.url("/"); 8], 25).await;
    assert_eq!(
        allowed, 50,
        "200 concurrent requests against a bucket of 50"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_count_per_key_and_reset_with_the_window() {
    let gw = Gateway::start(&limited(
        "quota = 2\nwindow = \"minute\"\nkey = [\"header:x-api-key\"]",
        "",
    ));
    assert_eq!(
        statuses(&gw, 3, Some(("x-api-key", "alpha"))).await,
        [200, 200, 429]
    );
    assert_eq!(statuses(&gw, 1, Some(("x-api-key", "beta"))).await, [200]);
    let resp = client()
        .get(gw.url("/"))
        .header("x-api-key", "alpha")
        .send()
        .await
        .unwrap();
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(resp.headers()["ratelimit-policy"], "\"lim\";q=2;w=60");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_only_counts() {
    let gw = Gateway::start(&limited("rate = 1\nperiod = \"60s\"\ndry_run = true", ""));
    assert_eq!(statuses(&gw, 4, None).await, [200, 200, 200, 200]);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            r#"gatehouse_ratelimit_decisions_total{policy="lim",result="dry_run_rejected"} 3"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_refuses_the_request_over_the_limit() {
    let upstream = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        Response::new(full("slow"))
    })
    .await;
    let gw = Gateway::start(&format!(
        "[limits.lim]\nconcurrency = 1\nkey = [\"route\"]\n\
         [upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"r\"\nlimits = [\"lim\"]\nupstream = \"p\"\n",
        upstream.address()
    ));
    let first = tokio::spawn(client().get(gw.url("/")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    // The slot is free again once the first request ended.
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_survive_a_reload() {
    let body = limited("rate = 2\nperiod = \"60s\"\nburst = 1", "");
    let gw = Gateway::start(&body);
    assert_eq!(statuses(&gw, 3, None).await, [200, 200, 429]);
    // Same policy, one more route: the reload must not hand out a fresh bucket.
    std::fs::write(
        &gw.config_path,
        Gateway::config(
            gw.dir.path(),
            gw.port,
            gw.admin_port,
            &format!("{body}[[routes]]\nname = \"x\"\npath = \"/x\"\nrespond = {{}}\n"),
        ),
    )
    .unwrap();
    assert_eq!(gw.reload_via_admin().await.status(), 200);
    assert_eq!(statuses(&gw, 1, None).await, [429]);
}

#[test]
fn limit_config_errors_name_the_key() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [limits.a]\nrate = 5\nquota = 3\n\
         [limits.b]\nquota = 3\nkey = [\"cookie:x\"]\n\
         [[routes]]\nname = \"r\"\nlimits = [\"a\", \"nope\"]\nrespond = {}\n",
    );
    assert!(!ok);
    for e in [
        "limits.a: set exactly one of `rate`, `quota`, `concurrency`",
        "limits.a.window: `quota` and `window` (minute, hour, day, month) go together",
        "limits.b.key[0]: \"cookie:x\" is not one of `route`, `client_ip`, `consumer`, `header:NAME`",
        "routes[0].limits[1]: unknown limit \"nope\"",
    ] {
        assert!(stderr.contains(e), "missing {e:?} in\n{stderr}");
    }
}
