//! Header transforms through the real binary: a route's request and response edits, the
//! targets' software headers hidden by default, and the edits that would touch what the
//! gateway sets refused by `check`.

use crate::common::{check_config, client, full, raw_request, request_body, Gateway, Upstream};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// Echoes the request headers as JSON, and answers with software and internal headers.
async fn upstream() -> Upstream {
    Upstream::start(|req: Request<Incoming>| async move {
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers() {
            let entry = headers
                .entry(k.as_str())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(list) = entry {
                list.push(v.to_str().unwrap_or("").into());
            }
        }
        let _ = request_body(req).await;
        let mut r = Response::new(full(serde_json::Value::Object(headers).to_string()));
        let h = r.headers_mut();
        h.insert("server", "nginx/1.22.1".parse().unwrap());
        h.insert("x-powered-by", "PHP/8.1.2".parse().unwrap());
        h.insert("x-internal-host", "db-7.internal".parse().unwrap());
        h.insert("x-old-total", "42".parse().unwrap());
        r
    })
    .await
}

fn config(up: &Upstream, hide: &str) -> String {
    format!(
        "[upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n{hide}\n\
         [[routes]]\nname = \"edited\"\npath_prefix = \"/edited\"\nupstream = \"p\"\n\
         request_headers = {{ remove = [\"x-debug\"], rename = {{ \"x-old\" = \"x-new\" }}, \
         set = {{ \"x-env\" = \"prod\" }}, add = {{ \"x-tag\" = \"gw\" }} }}\n\
         response_headers = {{ remove = [\"x-internal-host\"], rename = {{ \"x-old-total\" = \"x-total\" }}, \
         set = {{ \"x-frame-options\" = \"DENY\" }} }}\n\
         [[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupstream = \"p\"\n",
        up.address()
    )
}

fn all(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_edits_headers_both_ways_and_targets_software_stays_hidden() {
    let up = upstream().await;
    let gw = Gateway::start(&config(&up, ""));
    let resp = client()
        .get(gw.url("/edited"))
        .header("x-debug", "1")
        .header("x-old", "a")
        .header("x-env", "dev")
        .header("x-tag", "client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        all(&resp, "server"),
        Vec::<String>::new(),
        "no version leak"
    );
    assert_eq!(all(&resp, "x-powered-by"), Vec::<String>::new());
    assert_eq!(all(&resp, "x-internal-host"), Vec::<String>::new());
    assert_eq!(all(&resp, "x-total"), ["42"]);
    assert_eq!(all(&resp, "x-old-total"), Vec::<String>::new());
    assert_eq!(all(&resp, "x-frame-options"), ["DENY"]);
    assert_eq!(all(&resp, "x-request-id").len(), 1);
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert!(seen.get("x-debug").is_none(), "{seen}");
    assert!(seen.get("x-old").is_none(), "{seen}");
    assert_eq!(seen["x-new"], serde_json::json!(["a"]));
    assert_eq!(seen["x-env"], serde_json::json!(["prod"]));
    assert_eq!(seen["x-tag"], serde_json::json!(["client", "gw"]));
    assert!(
        seen.get("x-forwarded-for").is_some(),
        "the gateway's own headers stay"
    );

    // A client cannot take away what the route sets by calling it hop-by-hop.
    let raw = raw_request(
        gw.addr(),
        b"GET /edited HTTP/1.1\r\nHost: a.test\r\nConnection: close, x-env\r\nx-env: dev\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["x-env"], serde_json::json!(["prod"]), "{raw}");

    // Without transforms, the request and the response pass as they are (software hidden).
    let resp = client()
        .get(gw.url("/plain"))
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(all(&resp, "server"), Vec::<String>::new());
    assert_eq!(all(&resp, "x-internal-host"), ["db-7.internal"]);
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["x-debug"], serde_json::json!(["1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_headers_can_let_the_targets_software_through() {
    let up = upstream().await;
    let gw = Gateway::start(&config(&up, "hide_headers = []"));
    let resp = client().get(gw.url("/plain")).send().await.unwrap();
    assert_eq!(all(&resp, "server"), ["nginx/1.22.1"]);
    assert_eq!(all(&resp, "x-powered-by"), ["PHP/8.1.2"]);
}

#[test]
fn edits_of_what_the_gateway_sets_are_refused() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [authorizers.k]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{ consumer = \"a\", key = \"0123456789abcdefgh\" }]\nconsumer_header = \"x-consumer-id\"\n\
         [[routes]]\nname = \"r\"\nrespond = {}\n\
         request_headers = { rename = { \"x-user\" = \"X-Consumer-Id\" }, set = { \"x-forwarded-for\" = \"1.2.3.4\", \"bad name\" = \"v\" }, add = { \"x-ok\" = \"line\\nbreak\" } }\n\
         response_headers = { remove = [\"strict-transport-security\"], set = { \"access-control-allow-origin\" = \"*\" } }\n",
    );
    assert!(!ok);
    for expected in [
        "routes[0].request_headers.set.x-forwarded-for: \"x-forwarded-for\" is set or needed by the gateway",
        "routes[0].request_headers.set.\"bad name\": \"bad name\" is not a header name",
        "routes[0].request_headers.add.x-ok: the value has characters a header cannot carry",
        "routes[0].response_headers.remove[0]: \"strict-transport-security\" is set or needed by the gateway",
        "routes[0].response_headers.set.access-control-allow-origin: \"access-control-allow-origin\" is set or needed",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    // The identity check runs where the authorizers are compiled: a config without the other
    // mistakes shows it.
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [authorizers.k]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{ consumer = \"a\", key = \"0123456789abcdefgh\" }]\nconsumer_header = \"x-consumer-id\"\n\
         [[routes]]\nname = \"r\"\nrespond = {}\n\
         request_headers = { rename = { \"x-user\" = \"X-Consumer-Id\" } }\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("routes[0].request_headers.rename: \"X-Consumer-Id\" is an identity header an authorizer sets"),
        "{stderr}"
    );
}
