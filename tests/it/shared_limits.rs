//! Limits shared by several gatehouse instances through a real redis-server.

use crate::common::*;
use std::time::{Duration, Instant};

fn shared(redis: &RedisServer, limit: &str) -> String {
    format!(
        "[redis]\nurl = \"{}\"\ntimeout = \"200ms\"\n\
         [limits.shared]\nbackend = \"redis\"\nkey = [\"route\"]\n{limit}\n\
         [[routes]]\nname = \"r\"\nlimits = [\"shared\"]\nrespond = {{ body = \"ok\" }}\n",
        redis.url()
    )
}

async fn count_ok(gw: &Gateway, n: usize) -> (usize, Vec<u16>) {
    let mut ok = 0;
    let mut statuses = Vec::new();
    for _ in 0..n {
        let status = client()
            .get(gw.url("/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            ok += 1;
        }
        statuses.push(status);
    }
    (ok, statuses)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_enforce_one_global_limit() {
    let redis = RedisServer::start();
    let body = shared(&redis, "rate = 20\nperiod = \"600s\"\nburst = 19");
    let a = Gateway::start(&body);
    let b = Gateway::start(&body);
    let urls: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|gw| vec![gw.url("/"); 3])
        .collect();
    let allowed = concurrent_ok(urls, 15).await;
    assert_eq!(
        allowed, 20,
        "90 requests over two instances against one bucket of 20"
    );
    let resp = client().get(b.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_quotas_count_across_instances() {
    let redis = RedisServer::start();
    let body = shared(&redis, "quota = 5\nwindow = \"hour\"");
    let a = Gateway::start(&body);
    let b = Gateway::start(&body);
    let (ok_a, _) = count_ok(&a, 3).await;
    let (ok_b, statuses) = count_ok(&b, 4).await;
    assert_eq!((ok_a, ok_b), (3, 2), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_falls_back_per_policy_and_recovers() {
    let mut redis = RedisServer::start();
    let open = Gateway::start(&shared(&redis, "rate = 2\nperiod = \"600s\"\nburst = 1"));
    let closed = Gateway::start(&shared(
        &redis,
        "rate = 2\nperiod = \"600s\"\nburst = 1\non_redis_error = \"fail_closed\"",
    ));
    // Both instances share the bucket (same policy name and key): 2 allowed in all.
    assert_eq!(count_ok(&open, 2).await.0, 2);
    assert_eq!(count_ok(&closed, 1).await.1, [429]);

    redis.stop();
    let (ok, _) = count_ok(&open, 5).await;
    assert_eq!(ok, 5, "fail_open lets requests through while Redis is away");
    let resp = client().get(closed.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "fail_closed refuses");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate limiter unavailable");
    assert_eq!(body["request_id"], id.as_str());
    let metrics = open.metrics().await;
    assert!(
        metrics.contains(
            r#"gatehouse_ratelimit_decisions_total{policy="shared",result="backend_error"} 5"#
        ),
        "{metrics}"
    );
    assert!(
        open.stderr().contains("shared limit unavailable"),
        "{}",
        open.stderr()
    );

    // Redis comes back (empty): limits apply again without a restart.
    redis.restart();
    let recovered = eventually(Duration::from_secs(10), || async {
        count_ok(&open, 3).await.1.contains(&429)
    })
    .await;
    assert!(recovered, "limits never applied again after Redis returned");
    let closed_back = eventually(Duration::from_secs(10), || async {
        client().get(closed.url("/")).send().await.unwrap().status() != 503
    })
    .await;
    assert!(closed_back);
}

#[test]
fn redis_policies_need_a_redis_section() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [limits.a]\nrate = 5\nbackend = \"redis\"\n\
         [limits.b]\nconcurrency = 5\nbackend = \"redis\"\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("limits.a.backend: `redis` needs a `[redis]` section with the url"),
        "{stderr}"
    );
    assert!(
        stderr.contains("limits.b.backend: concurrency limits are per instance (`local`) only"),
        "{stderr}"
    );
}

fn on_cluster(cluster: &RedisCluster, limit: &str) -> String {
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[redis]\ncluster = [{}]\ntimeout = \"500ms\"\n\
         [limits.shared]\nbackend = \"redis\"\nkey = [\"header:x-tenant\"]\n{limit}\n\
         [[routes]]\nname = \"r\"\nlimits = [\"shared\"]\nrespond = {{ body = \"ok\" }}\n",
        nodes.join(", ")
    )
}

/// Send `per_gateway` requests for each tenant to each gateway, all at once; the 200s per
/// tenant.
async fn allowed_per_tenant(
    gws: &[&Gateway],
    prefix: &str,
    tenants: usize,
    per_gateway: usize,
) -> Vec<usize> {
    let mut tasks = Vec::new();
    for t in 0..tenants {
        for gw in gws {
            let url = gw.url("/");
            let tenant = format!("{prefix}{t}");
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut ok = 0;
                for _ in 0..per_gateway {
                    let resp = c.get(&url).header("x-tenant", &tenant).send().await;
                    if resp.unwrap().status() == 200 {
                        ok += 1;
                    }
                }
                (t, ok)
            }));
        }
    }
    let mut allowed = vec![0; tenants];
    for task in tasks {
        let (t, ok) = task.await.unwrap();
        allowed[t] += ok;
    }
    allowed
}

/// Three instances on `body` (a bucket of 100 per tenant): eight tenants send 150 requests
/// each, 50 through each instance, and each gets exactly 100.
async fn three_instances_keep_eight_buckets_exact(body: &str) {
    let (a, b, c) = (
        Gateway::start(body),
        Gateway::start(body),
        Gateway::start(body),
    );
    let allowed = allowed_per_tenant(&[&a, &b, &c], "t", 8, 50).await;
    assert_eq!(
        allowed,
        vec![100; 8],
        "each tenant's bucket, across instances"
    );
}

const BUCKET_OF_100: &str = "rate = 100\nperiod = \"600s\"\nburst = 99";

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_share_limits_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    // Eight tenants, so the keys fall in slots of different masters.
    three_instances_keep_eight_buckets_exact(&on_cluster(&cluster, BUCKET_OF_100)).await;
    let masters_with_keys = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["dbsize"]).trim().parse::<u64>().unwrap_or(0) > 0)
        .count();
    assert!(
        masters_with_keys >= 2,
        "keys spread over the masters: {masters_with_keys}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_master_failing_over_is_followed_without_hanging() {
    let mut cluster = RedisCluster::start(3, 1);
    let gw = Gateway::start(&on_cluster(
        &cluster,
        "rate = 5\nperiod = \"600s\"\nburst = 4",
    ));
    assert_eq!(allowed_per_tenant(&[&gw], "before", 4, 3).await, vec![3; 4]);

    // Kill a master; its replica takes over after the node timeout (1 s). Meanwhile every
    // request gets an answer in time (fail_open: allowed), none hangs.
    let master = cluster
        .nodes
        .iter()
        .position(|n| n.cli(&["role"]).starts_with("master"))
        .expect("a master");
    cluster.nodes[master].stop();
    answered_in_time_for_6s(&gw).await;
    let alive: Vec<&RedisServer> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != master)
        .map(|(_, n)| n)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !alive
        .iter()
        .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the replica was not promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Recovered without a restart: new tenants, spread over every slot range, the promoted
    // replica's included, are counted again.
    counted_exactly_again(&gw, "the failover").await;
}

fn on_sentinel(sentinel: &RedisSentinel, limit: &str) -> String {
    let nodes: Vec<String> = sentinel.urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[redis]\ntimeout = \"500ms\"\n\
         [redis.sentinel]\nmaster = \"{SENTINEL_MASTER}\"\nnodes = [{}]\n\
         [limits.shared]\nbackend = \"redis\"\nkey = [\"header:x-tenant\"]\n{limit}\n\
         [[routes]]\nname = \"r\"\nlimits = [\"shared\"]\nrespond = {{ body = \"ok\" }}\n",
        nodes.join(", ")
    )
}

/// Requests for `16 tenants × 8` until each tenant is counted exactly (5 of 8 allowed), as
/// it is once gatehouse reaches the primary again.
async fn counted_exactly_again(gw: &Gateway, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0.. {
        let allowed = allowed_per_tenant(&[gw], &format!("after{round}-"), 16, 8).await;
        if allowed == vec![5; 16] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "limits not counted again after {what}: {allowed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Requests for 6 s: each answered within 3 s, as 200 or 429 (fail_open while no primary
/// answers).
async fn answered_in_time_for_6s(gw: &Gateway) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let sent = Instant::now();
        let status = client()
            .get(gw.url("/"))
            .header("x-tenant", format!("during{}", n % 16))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "a request took {:?} during the failover",
            sent.elapsed()
        );
        assert!(matches!(status.as_u16(), 200 | 429), "{status}");
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_share_limits_through_redis_sentinel() {
    let sentinel = RedisSentinel::start();
    three_instances_keep_eight_buckets_exact(&on_sentinel(&sentinel, BUCKET_OF_100)).await;
    let keys = |n: &RedisServer| n.cli(&["dbsize"]).trim().parse::<u64>().unwrap_or(0);
    assert_eq!(
        keys(&sentinel.primary),
        8,
        "one bucket per tenant, on the primary"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_failover_after_the_primary_dies_is_followed_without_hanging() {
    let mut sentinel = RedisSentinel::start();
    let gw = Gateway::start(&on_sentinel(
        &sentinel,
        "rate = 5\nperiod = \"600s\"\nburst = 4",
    ));
    assert_eq!(allowed_per_tenant(&[&gw], "before", 4, 3).await, vec![3; 4]);
    sentinel.primary.stop();
    answered_in_time_for_6s(&gw).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sentinel.primary_port() != Some(sentinel.replica.port) {
        assert!(
            Instant::now() < deadline,
            "the sentinels did not promote the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    counted_exactly_again(&gw, "the primary died").await;
}

/// A primary demoted while it is still up (a manual failover, or a partition that heals)
/// answers writes with READONLY: gatehouse must leave it for the new primary.
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_primary_is_left_for_the_new_one() {
    let sentinel = RedisSentinel::start();
    let gw = Gateway::start(&on_sentinel(
        &sentinel,
        "rate = 5\nperiod = \"600s\"\nburst = 4",
    ));
    assert_eq!(allowed_per_tenant(&[&gw], "before", 4, 3).await, vec![3; 4]);
    let out = sentinel.sentinels[0].cli(&["sentinel", "failover", SENTINEL_MASTER]);
    assert!(out.contains("OK"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sentinel.primary_port() != Some(sentinel.replica.port)
        || !sentinel.primary.cli(&["role"]).starts_with("slave")
    {
        assert!(
            Instant::now() < deadline,
            "the manual failover did not happen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answered_in_time_for_6s(&gw).await;
    counted_exactly_again(&gw, "a manual failover").await;
    assert!(
        sentinel
            .replica
            .cli(&["dbsize"])
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            > 4,
        "new buckets on the promoted replica"
    );
}
