//! Auth through the real binary: a real identity provider over HTTP (discovery and JWKS),
//! real keys and signatures, API keys, an external authorizer.

use crate::common::*;
use crate::idp::*;
use hyper::{Request, Response};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A `jwt` authorizer `idp` on discovery, a route `api` (prefix `/api`) to `upstream` that
/// needs it, and a public route `open` (prefix `/open`).
fn jwt_config(idp: &Idp, upstream: &Upstream, extra: &str, route_auth: &str) -> String {
    format!(
        r#"
[authorizers.idp]
type = "jwt"
issuer = "{issuer}"
discovery = true
audiences = ["api"]
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
forward_claims = {{ sub = "x-consumer-id", tenant = "x-tenant" }}
strip_authorization = true
{extra}
[upstreams.p]
targets = [{{ address = "{up}" }}]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "p"
auth = {route_auth}
[[routes]]
name = "open"
path_prefix = "/open"
upstream = "p"
"#,
        issuer = idp.issuer(),
        up = upstream.address(),
    )
}

async fn call(url: String, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(url).header("x-consumer-id", "spoofed");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// An upstream that answers with the URI and headers it received, and counts requests.
async fn counting_echo() -> (Upstream, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let front = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        c.fetch_add(1, Ordering::SeqCst);
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers() {
            headers.insert(k.as_str().into(), v.to_str().unwrap_or("").into());
        }
        let body = json!({"uri": req.uri().to_string(), "headers": headers});
        async move {
            let mut resp = Response::new(full(body.to_string()));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    })
    .await;
    (front, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_tokens_of_every_key_family_pass_and_every_bad_token_is_refused() {
    let (rsa, ec, ed) = (Key::rsa("r1"), Key::ec256("e1"), Key::ed25519("d1"));
    let idp = Idp::start(&[&rsa, &ec, &ed]).await;
    let (upstream, hits) = counting_echo().await;
    let gw = Gateway::start(&jwt_config(&idp, &upstream, "", "\"idp\""));

    for (alg, key) in [
        (Algorithm::RS256, &rsa),
        (Algorithm::PS256, &rsa),
        (Algorithm::ES256, &ec),
        (Algorithm::EdDSA, &ed),
    ] {
        let token = key.sign_with(alg, &idp.claims("alice"));
        let (status, _, body) = call(gw.url("/api/orders"), Some(&token)).await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        let h = &body["headers"];
        assert_eq!(
            h["x-consumer-id"], "alice",
            "claim forwarded, spoofed value gone"
        );
        assert_eq!(h["x-tenant"], "acme");
        assert!(h.get("authorization").is_none(), "strip_authorization");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // The public route is open, but spoofed identity headers (also spelled with `_`, which
    // CGI-style upstreams read as the same variable) never reach an upstream.
    let resp = client()
        .get(gw.url("/open"))
        .header("x-consumer-id", "spoofed")
        .header("x_consumer_id", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["headers"].get("x-consumer-id").is_none(), "{body}");
    assert!(body["headers"].get("x_consumer_id").is_none(), "{body}");
    let before = hits.load(Ordering::SeqCst);

    let t = now();
    let claims = idp.claims("alice");
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let stranger = Key::rsa("r1");
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            rsa.sign(&with("exp", json!(t - 120))),
            "token expired",
        ),
        (
            "not yet valid",
            rsa.sign(&with("nbf", json!(t + 600))),
            "token not yet valid",
        ),
        (
            "wrong issuer",
            rsa.sign(&with("iss", json!("http://evil"))),
            "token issuer not accepted",
        ),
        (
            "wrong audience",
            rsa.sign(&with("aud", json!("other"))),
            "token audience not accepted",
        ),
        (
            "tampered",
            tampered(&rsa.sign(&claims), &with("sub", json!("admin"))),
            "invalid token signature",
        ),
        (
            "other key, same kid",
            stranger.sign(&claims),
            "invalid token signature",
        ),
        ("alg none", unsigned(&claims), "malformed credentials"),
        (
            "algorithm confusion",
            confused(&rsa, &claims),
            "token algorithm not allowed",
        ),
        ("garbage", "garbage".to_string(), "malformed credentials"),
        (
            "unknown kid",
            Key::ec256("nope").sign(&claims),
            "token signed with an unknown key",
        ),
    ];
    for (name, token, message) in &bad {
        let (status, headers, body) = call(gw.url("/api/orders"), Some(token)).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(body["error"], *message, "{name}");
        assert_eq!(
            body["request_id"],
            headers["x-request-id"].to_str().unwrap()
        );
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert_eq!(
            challenge,
            format!("Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{message}\""),
            "{name}"
        );
        assert!(!body.to_string().contains(token.as_str()), "no token echo");
    }
    let (status, headers, body) = call(gw.url("/api/orders"), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing credentials");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"gatehouse\"");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "no refused request reached the upstream"
    );

    let metrics = gw.metrics().await;
    for line in [
        r#"gatehouse_auth_decisions_total{authorizer="idp",result="allowed",route="api"} 4"#,
        r#"gatehouse_auth_decisions_total{authorizer="idp",result="expired",route="api"} 1"#,
        r#"gatehouse_auth_decisions_total{authorizer="idp",result="missing_credentials",route="api"} 1"#,
        r#"gatehouse_auth_decisions_total{authorizer="idp",result="algorithm_not_allowed",route="api"} 1"#,
        r#"gatehouse_jwks_keys{authorizer="idp"} 3"#,
        r#"gatehouse_jwks_stale{authorizer="idp"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    let log = gw
        .access_log_once(|l| l["auth"] == "missing_credentials")
        .await;
    assert!(log
        .iter()
        .any(|l| l["consumer"] == "alice" && l["auth"] == "allowed"));
    assert!(log
        .iter()
        .any(|l| l["auth"] == "expired" && l["status"] == 401));
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains(&rsa.sign(&claims)[..40]),
        "no token in the access log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_picked_up_and_random_kids_cannot_hammer_the_idp() {
    let (old, new) = (Key::rsa("old"), Key::ec256("new"));
    let idp = Idp::start(&[&old]).await;
    let upstream = Upstream::echo().await;
    let gw = Gateway::start(&jwt_config(&idp, &upstream, "", "\"idp\""));
    let (status, _, _) = call(gw.url("/api"), Some(&old.sign(&idp.claims("a")))).await;
    assert_eq!(status, 200);

    idp.add_key(&new);
    let (status, _, body) = call(gw.url("/api"), Some(&new.sign(&idp.claims("b")))).await;
    assert_eq!(status, 200, "new kid fetched without restart: {body}");
    assert_eq!(body["headers"]["x-consumer-id"], "b");

    let before = idp.hits();
    let urls: Vec<String> = (0..8).map(|_| gw.url("/api")).collect();
    let mut tasks = Vec::new();
    for (i, url) in urls.into_iter().enumerate() {
        let claims = idp.claims("x");
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                let token = Key::ec256(&format!("random-{i}-{j}")).sign(&claims);
                let (status, _, _) = call(url.clone(), Some(&token)).await;
                assert_eq!(status, 401);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fetched = idp.hits() - before;
    assert!(
        fetched <= 1,
        "80 unknown kids caused {fetched} JWKS fetches"
    );

    // A reload that keeps the authorizer keeps its keys: no refetch, tokens still pass.
    let before = idp.hits();
    let mut text = std::fs::read_to_string(&gw.config_path).unwrap();
    text.push_str("[[routes]]\nname = \"added\"\npath = \"/added\"\nrespond = {}\n");
    std::fs::write(&gw.config_path, text).unwrap();
    assert_eq!(gw.reload_via_admin().await.status(), 200);
    assert_eq!(call(gw.url("/added"), None).await.0, 200);
    assert_eq!(
        call(gw.url("/api"), Some(&new.sign(&idp.claims("c"))))
            .await
            .0,
        200
    );
    assert_eq!(idp.hits(), before, "keys kept across the reload");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_survive_an_idp_outage_and_routes_wait_for_keys_at_startup() {
    let key = Key::rsa("k");
    let idp = Idp::start(&[&key]).await;
    idp.set_up(false);
    *idp.cache_control.lock().unwrap() = Some("max-age=1".into());
    let upstream = Upstream::echo().await;
    let extra = "min_refresh_interval = \"1s\"\nrefresh_interval = \"1s\"";
    let gw = Gateway::start(&jwt_config(&idp, &upstream, extra, "\"idp\""));

    // Started while the IdP is down: the process serves, the protected route answers 503.
    let token = key.sign(&idp.claims("a"));
    let (status, _, body) = call(gw.url("/api"), Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "authorization keys unavailable");
    assert_eq!(call(gw.url("/open"), None).await.0, 200);

    idp.set_up(true);
    let ok = eventually(Duration::from_secs(10), || {
        let url = gw.url("/api");
        let token = token.clone();
        async move { call(url, Some(&token)).await.0 == 200 }
    })
    .await;
    assert!(ok, "keys loaded once the IdP is back");

    // Down again: refreshes fail, the last good keys keep verifying new tokens.
    idp.set_up(false);
    let stale = eventually(Duration::from_secs(10), || async {
        gw.metrics()
            .await
            .contains(r#"gatehouse_jwks_stale{authorizer="idp"} 1"#)
    })
    .await;
    assert!(stale, "{}", gw.metrics().await);
    let fresh = key.sign(&idp.claims("later"));
    let (status, _, body) = call(gw.url("/api"), Some(&fresh)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], "later");
    assert!(gw
        .stderr()
        .contains("JWKS refresh failed; keeping the last good keys"));
    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"gatehouse_jwks_refresh_total{authorizer="idp",result="error"}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_and_claims_are_enforced_per_route() {
    let key = Key::rsa("k");
    let idp = Idp::start(&[&key]).await;
    let upstream = Upstream::echo().await;
    let mut config = jwt_config(
        &idp,
        &upstream,
        "",
        r#"{ authorizer = "idp", scopes = ["orders:read"] }"#,
    );
    config.push_str(
        r#"
[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "p"
auth = { authorizer = "idp", scopes = ["admin", "root"], scopes_mode = "any" }
[[routes]]
name = "tenant"
path_prefix = "/tenant"
upstream = "p"
auth = { authorizer = "idp", claims = { tenant = "acme" } }
"#,
    );
    let gw = Gateway::start(&config);
    let reader = key.sign(&idp.claims("r"));
    assert_eq!(call(gw.url("/api"), Some(&reader)).await.0, 200);
    let (status, headers, body) = call(gw.url("/admin"), Some(&reader)).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "insufficient scope");
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"admin root\""), "{challenge}");
    let mut root = idp.claims("root");
    root["scope"] = json!(null);
    root["scp"] = json!(["root"]);
    assert_eq!(call(gw.url("/admin"), Some(&key.sign(&root))).await.0, 200);
    assert_eq!(call(gw.url("/api"), Some(&key.sign(&root))).await.0, 403);

    assert_eq!(call(gw.url("/tenant"), Some(&reader)).await.0, 200);
    let mut other = idp.claims("o");
    other["tenant"] = json!("globex");
    let (status, _, body) = call(gw.url("/tenant"), Some(&key.sign(&other))).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_bypass_through_upgrades_methods_or_path_tricks() {
    let key = Key::rsa("k");
    let idp = Idp::start(&[&key]).await;
    let (upstream, hits) = counting_echo().await;
    let gw = Gateway::start(&jwt_config(&idp, &upstream, "", "\"idp\""));
    let ws = "GET /api/socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let resp = raw_request(gw.addr(), ws.as_bytes(), Duration::from_secs(2)).await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    for (method, path) in [
        ("OPTIONS", "/api"),
        ("POST", "/api/x"),
        ("DELETE", "/API/../api/x"),
        ("GET", "/open/../api/x"),
        ("GET", "//api/x"),
        ("GET", "/%61pi/x"),
        ("HEAD", "/api/./x"),
    ] {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let resp = raw_request(gw.addr(), raw.as_bytes(), Duration::from_secs(2)).await;
        assert!(resp.starts_with("HTTP/1.1 401"), "{method} {path}: {resp}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_name_consumers_and_consumers_are_throttled_separately() {
    let (upstream, hits) = counting_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.txt");
    // sha256("bob-key-0123456789")
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(b"bob-key-0123456789")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(&keys_file, format!("# consumers\nbob {digest}\n")).unwrap();
    let gw = Gateway::start(&format!(
        r#"
[authorizers.keys]
type = "api_key"
sources = ["header:x-api-key", "query:api_key"]
keys = [{{ consumer = "alice", key = "alice-key-0123456789" }}]
keys_file = "{file}"
[limits.per_consumer]
rate = 2
period = "60s"
burst = 1
key = ["consumer"]
[upstreams.p]
targets = [{{ address = "{up}" }}]
[[routes]]
name = "api"
upstream = "p"
auth = "keys"
limits = ["per_consumer"]
"#,
        file = keys_file.display(),
        up = upstream.address(),
    ));
    let c = client();
    let get = |key: &'static str| {
        c.get(gw.url("/x"))
            .header("x-api-key", key)
            .header("x-consumer-id", "spoofed")
            .send()
    };
    let resp = get("alice-key-0123456789").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-consumer-id"], "alice");
    assert!(body["headers"].get("x-api-key").is_none(), "key stripped");
    assert_eq!(get("alice-key-0123456789").await.unwrap().status(), 200);
    assert_eq!(get("alice-key-0123456789").await.unwrap().status(), 429);
    let resp = c
        .get(gw.url("/x?a=1&api_key=bob-key-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "bob has his own bucket");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-consumer-id"], "bob");
    assert_eq!(
        body["uri"], "/x?a=1",
        "a key from the query is not passed upstream"
    );
    let before = hits.load(Ordering::SeqCst);
    let resp = get("alice-key-012345678X").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "ApiKey realm=\"gatehouse\", error=\"invalid_token\", error_description=\"invalid API key\"");
    assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 401);
    assert_eq!(hits.load(Ordering::SeqCst), before);
    let log = gw.access_log_once(|l| l["status"] == 401).await;
    assert!(log.iter().any(|l| l["consumer"] == "bob"));
    assert!(!serde_json::to_string(&log)
        .unwrap()
        .contains("key-0123456789"));
}

/// An `external` authorizer `ext` at `authz` with `settings`, guarding a catch-all route `api`
/// to `upstream`.
fn external_config(authz: &Upstream, upstream: &Upstream, settings: &str) -> String {
    format!(
        "[authorizers.ext]\ntype = \"external\"\nurl = \"http://{}/check\"\n{settings}\n\
         [upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"api\"\nupstream = \"p\"\nauth = \"ext\"\n",
        authz.address(),
        upstream.address()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn external_authorizer_allows_denies_caches_and_fails_closed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let authz = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let (c, s) = (c.clone(), s.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            s.lock().unwrap().push(format!(
                "{} {}",
                h("x-forwarded-method").unwrap_or_default(),
                h("x-forwarded-uri").unwrap_or_default()
            ));
            let token = h("authorization").unwrap_or_default();
            let mut resp = Response::new(full(""));
            match token.as_str() {
                "Bearer good" => {
                    resp.headers_mut().insert("x-user", "u1".parse().unwrap());
                    resp.headers_mut()
                        .insert("x-internal", "no".parse().unwrap());
                }
                "Bearer slow" => tokio::time::sleep(Duration::from_secs(2)).await,
                "Bearer forbidden" => *resp.status_mut() = hyper::StatusCode::FORBIDDEN,
                "Bearer broken" => *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR,
                "Bearer odd" => *resp.status_mut() = hyper::StatusCode::BAD_REQUEST,
                _ => *resp.status_mut() = hyper::StatusCode::UNAUTHORIZED,
            }
            resp
        }
    })
    .await;
    let upstream = Upstream::echo().await;
    let gw = Gateway::start(&external_config(
        &authz,
        &upstream,
        "forward_headers = [\"x-user\"]\nconsumer_header = \"x-user\"\ntimeout = \"300ms\"\n\
         cache_ttl = \"60s\"\ndeny_cache_ttl = \"60s\"",
    ));
    let (status, _, body) = call(gw.url("/orders?id=1"), Some("good")).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-user"], "u1");
    assert!(body["headers"].get("x-internal").is_none());
    assert_eq!(seen.lock().unwrap()[0], "GET /orders?id=1");
    assert_eq!(call(gw.url("/orders"), Some("good")).await.0, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the allow was cached");
    let del = client()
        .delete(gw.url("/orders"))
        .bearer_auth("good")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "another method is another decision"
    );

    assert_eq!(call(gw.url("/"), Some("nope")).await.0, 401);
    assert_eq!(call(gw.url("/"), Some("nope")).await.0, 401);
    assert_eq!(call(gw.url("/"), Some("forbidden")).await.0, 403);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "denies cached too");
    assert_eq!(
        call(gw.url("/"), Some("odd")).await.0,
        401,
        "a 400 from the authorizer denies"
    );

    let started = std::time::Instant::now();
    let (status, _, body) = call(gw.url("/"), Some("slow")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("authorizer unavailable"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "timeout applied"
    );
    assert_eq!(call(gw.url("/"), Some("broken")).await.0, 503);
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(call(gw.url("/"), None).await.0, 401, "no identity, no call");
    assert_eq!(calls.load(Ordering::SeqCst), before);
    let log = gw.access_log_once(|l| l["consumer"] == "u1").await;
    assert!(log.iter().any(|l| l["consumer"] == "u1"));
    assert!(gw.stderr().contains("external authorizer failed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_with_a_secret_from_a_cookie_and_a_pem_key_from_a_header() {
    let upstream = Upstream::echo().await;
    let key = Key::ed25519("any");
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ed.pem");
    std::fs::write(&pem, &key.public_pem).unwrap();
    let body = format!(
        r#"
[authorizers.hs]
type = "jwt"
algorithms = ["HS256"]
secret = "0123456789abcdef0123456789abcdef-secret"
sources = ["cookie:session"]
[authorizers.pem]
type = "jwt"
algorithms = ["EdDSA"]
public_key_file = "{pem}"
sources = ["header:x-token"]
[upstreams.p]
targets = [{{ address = "{up}" }}]
[[routes]]
name = "hs"
path_prefix = "/hs"
upstream = "p"
auth = "hs"
[[routes]]
name = "pem"
path_prefix = "/pem"
upstream = "p"
auth = "pem"
"#,
        pem = pem.display(),
        up = upstream.address()
    );
    let gw = Gateway::start(&body);
    let claims = json!({"sub": "s", "exp": now() + 60});
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef-secret"),
    )
    .unwrap();
    let c = client();
    let status =
        |r: reqwest::RequestBuilder| async move { r.send().await.unwrap().status().as_u16() };
    assert_eq!(
        status(
            c.get(gw.url("/hs"))
                .header("cookie", format!("a=b; session={hs}"))
        )
        .await,
        200
    );
    assert_eq!(
        status(c.get(gw.url("/hs")).bearer_auth(&hs)).await,
        401,
        "only the cookie counts"
    );
    assert_eq!(
        status(c.get(gw.url("/pem")).header("x-token", key.sign(&claims))).await,
        200
    );
    assert_eq!(
        status(c.get(gw.url("/pem")).header("x-token", &hs)).await,
        401
    );
}

#[test]
fn auth_config_errors_name_the_key() {
    let base = "[[listeners]]\naddress = \"127.0.0.1:1\"\n";
    let cases = [
        (
            "[authorizers.a]\ntype = \"jwt\"\nalgorithms = [\"RS256\", \"HS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
            "authorizers.a.algorithms: HS algorithms cannot share an authorizer with public-key algorithms",
        ),
        (
            "[authorizers.a]\ntype = \"jwt\"\nalgorithms = [\"none\"]\njwks_url = \"https://x/jwks\"\n",
            "authorizers.a.algorithms[0]: \"none\" is not one of",
        ),
        (
            "[authorizers.a]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\njwks_url = \"http://idp.example.com/jwks\"\n",
            "authorizers.a.jwks_url: plain http would let the network forge keys",
        ),
        (
            "[authorizers.\"bad name\"]\ntype = \"api_key\"\nkeys = [{ consumer = \"a\", key = \"0123456789abcdefgh\" }]\n",
            "authorizers.\"bad name\": authorizer names may only use letters, digits",
        ),
        (
            "[authorizers.a]\ntype = \"oauth\"\n",
            "authorizers.a.type: expected one of `jwt`, `api_key`, `external`",
        ),
        (
            "[authorizers.a]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\ndiscovery = true\nissuer = \"https://x\"\naudience = \"api\"\n",
            "authorizers.a.audience: unknown field `audience`",
        ),
        (
            "[[routes]]\nname = \"r\"\nrespond = {}\nauth = \"mian\"\n",
            "routes[0].auth.authorizer: unknown authorizer \"mian\"",
        ),
        (
            "[authorizers.k]\ntype = \"api_key\"\nkeys = [{ consumer = \"a\", key = \"short\" }]\n",
            "authorizers.k.keys[0].key: use at least 16 characters",
        ),
        (
            "[authorizers.k]\ntype = \"api_key\"\nkeys = [{ consumer = \"a\", key = \"0123456789abcdefgh\" }]\n[[routes]]\nname = \"r\"\nrespond = {}\nauth = { authorizer = \"k\", scopes = [\"x\"] }\n",
            "routes[0].auth: `scopes` and `claims` need a jwt authorizer",
        ),
        (
            "[limits.l]\nrate = 1\nkey = [\"consumer\"]\n[[routes]]\nname = \"r\"\nrespond = {}\nlimits = [\"l\"]\n",
            "routes[0].limits: limit \"l\" counts per consumer, but the route has no `auth` to name one",
        ),
    ];
    for (body, expected) in cases {
        let (ok, _, stderr) = check_config(&format!("{base}{body}"));
        assert!(!ok, "{body}");
        assert!(
            stderr.contains(&format!("FILE: {expected}")),
            "{expected}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn external_authorizer_calls_in_flight_are_bounded() {
    let authz = Upstream::start(|_req: Request<hyper::body::Incoming>| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Response::new(full(""))
    })
    .await;
    let upstream = Upstream::echo().await;
    let gw = Gateway::start(&external_config(
        &authz,
        &upstream,
        "timeout = \"3s\"\nmax_concurrent_calls = 1",
    ));
    let first = tokio::spawn(call(gw.url("/"), Some("one")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, _, body) = call(gw.url("/"), Some("two")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("authorizer unavailable"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "refused at once, not queued"
    );
    assert_eq!(first.await.unwrap().0, 200);
}
