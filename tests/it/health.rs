//! Active health checks and passive ejection.

use crate::common::*;
use hyper::{Request, Response, StatusCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upstream answering its name, whose `/health` fails while `healthy` is false.
async fn toggled(name: &'static str, healthy: Arc<AtomicBool>) -> Upstream {
    Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let healthy = healthy.clone();
        async move {
            if req.uri().path() == "/health" && !healthy.load(Ordering::SeqCst) {
                let mut r = Response::new(full("down"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return r;
            }
            Response::new(full(name))
        }
    })
    .await
}

async fn names_seen(gw: &Gateway, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let resp = client().get(gw.url("/")).send().await.unwrap();
        seen.push(resp.text().await.unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_health_checks_take_a_target_out_and_passing_ones_bring_it_back() {
    let a_ok = Arc::new(AtomicBool::new(true));
    let b_ok = Arc::new(AtomicBool::new(true));
    let a = toggled("a", a_ok.clone()).await;
    let b = toggled("b", b_ok.clone()).await;
    let gw = Gateway::start(&format!(
        "[upstreams.pool]\ntargets = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         [upstreams.pool.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"1s\"\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\n\
         [[routes]]\nname = \"r\"\nupstream = \"pool\"\n",
        a.address(),
        b.address()
    ));
    let b_label = format!(
        "gatehouse_upstream_healthy{{target=\"{}\",upstream=\"pool\"}}",
        b.address()
    );
    assert!(names_seen(&gw, 10).await.contains(&"b".to_string()));

    b_ok.store(false, Ordering::SeqCst);
    let out = eventually(Duration::from_secs(10), || async {
        gw.metrics().await.contains(&format!("{b_label} 0"))
    })
    .await;
    assert!(out, "b never reported unhealthy");
    assert!(
        names_seen(&gw, 20).await.iter().all(|n| n == "a"),
        "unhealthy b got traffic"
    );

    // Health state survives a reload: b stays out without waiting for new checks.
    gw.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || async {
        gw.metrics()
            .await
            .contains(r#"gatehouse_config_reload_total{result="success"} 2"#)
    })
    .await;
    assert!(reloaded);
    assert!(gw.metrics().await.contains(&format!("{b_label} 0")));
    assert!(
        names_seen(&gw, 10).await.iter().all(|n| n == "a"),
        "reload forgot b's health"
    );

    b_ok.store(true, Ordering::SeqCst);
    let back = eventually(Duration::from_secs(10), || async {
        gw.metrics().await.contains(&format!("{b_label} 1"))
    })
    .await;
    assert!(back, "b never came back");
    assert!(names_seen(&gw, 10).await.contains(&"b".to_string()));
    let log = gw.stderr();
    assert!(
        log.contains("target unhealthy") && log.contains("target healthy"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_without_healthy_targets_answers_503_fast() {
    let ok = Arc::new(AtomicBool::new(false));
    let a = toggled("a", ok.clone()).await;
    let gw = Gateway::start(&format!(
        "[upstreams.pool]\ntargets = [{{ address = \"{}\" }}]\n\
         [upstreams.pool.health_check]\npath = \"/health\"\ninterval = \"100ms\"\n\
         unhealthy_threshold = 1\n\
         [[routes]]\nname = \"r\"\nupstream = \"pool\"\n",
        a.address()
    ));
    let down = eventually(Duration::from_secs(10), || async {
        client().get(gw.url("/")).send().await.unwrap().status() == 503
    })
    .await;
    assert!(down, "pool never went to 503");
    let started = Instant::now();
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(1));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no healthy upstream target");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_retry_another_target_and_eject_the_dead_one() {
    let live = Upstream::named("live").await;
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "[upstreams.pool]\ntargets = [{{ address = \"{}\" }}, {{ address = \"127.0.0.1:{dead}\" }}]\n\
         [upstreams.pool.passive]\nmax_fails = 2\nfail_timeout = \"60s\"\n\
         [[routes]]\nname = \"r\"\nupstream = \"pool\"\n",
        live.address()
    ));
    // Every request succeeds: a refused connection is retried on the live target.
    assert!(names_seen(&gw, 20).await.iter().all(|n| n == "live"));
    let log = gw.stderr();
    assert!(log.contains("target ejected"), "{log}");
}
