//! API contracts through the real binary: routes made from a real OpenAPI document
//! (`fixtures/petstore`), requests checked against it before the upstream sees them,
//! responses reported, operations counted, document problems named by `check` and reload.

use crate::common::{check_config, client, metric_value, request_body, Gateway, Upstream};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const SECRET: &[u8] = b"contract-test-secret-0123456789abcdef";

fn fixture() -> String {
    format!("{}/tests/it/fixtures/petstore", env!("CARGO_MANIFEST_DIR"))
}

fn config(up: &Upstream, openapi: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.p]
targets = [{{ address = "{up}" }}]
[authorizers.jwt]
type = "jwt"
algorithms = ["HS256"]
secret = "{secret}"
[authorizers.keys]
type = "api_key"
sources = ["header:x-api-key"]
keys = [{{ consumer = "shop", key = "shop-key-0123456789" }}]
[apis.pets]
openapi = "{openapi}"
hosts = ["pets.example.com"]
base_path = "/v1"
strip_base_path = true
upstream = "p"
authorizers = {{ petsAuth = "jwt", apiKey = "keys" }}
validate_responses = "report"
max_body_bytes = 2048
{extra}
"#,
        up = up.address(),
        secret = std::str::from_utf8(SECRET).unwrap(),
    )
}

fn token(scope: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "ann", "scope": scope, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// What the upstream received: method, target and body of each request.
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An upstream that records requests; pet 13's answer breaks the document's `Pet` schema.
async fn upstream() -> (Upstream, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let method = req.method().to_string();
            let target = req.uri().to_string();
            let body = request_body(req).await.to_vec();
            let answer = if target == "/pets/13" {
                json!({"id": "thirteen"})
            } else {
                json!({"id": 7, "name": "rex"})
            };
            log.lock().unwrap().push((method, target, body));
            let mut r = Response::new(crate::common::full(answer.to_string()));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    })
    .await;
    (up, seen)
}

struct Api {
    gw: Gateway,
    seen: Seen,
}

impl Api {
    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn req(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(method.parse().unwrap(), self.gw.url(path))
            .header("host", "pets.example.com")
    }

    /// Send `r`; the status and JSON body (`Null` when not JSON).
    async fn send(&self, r: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `r` is refused with `status` and the problem `(in, pointer)`, and the upstream sees
    /// nothing.
    async fn refused(&self, r: reqwest::RequestBuilder, status: u16, place: (&str, &str)) -> Value {
        let before = self.hits();
        let (got, body) = self.send(r).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(
            body["error"], "request does not match the API contract",
            "{body}"
        );
        assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        let problems = body["problems"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p["in"] == place.0 && p["pointer"] == place.1 && p["message"].is_string()),
            "{place:?} not in {body}"
        );
        assert_eq!(self.hits(), before, "the upstream saw a refused request");
        body
    }
}

/// The admin API's `/-/routes` listing.
async fn admin_routes(gw: &Gateway) -> Value {
    client()
        .get(gw.admin_url("/-/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The listed route whose `key` is `value`.
fn route_where(routes: &Value, key: &str, value: &str) -> Value {
    routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .cloned()
        .unwrap_or_else(|| panic!("no {key} {value:?} in {routes}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_against_the_document_before_the_upstream() {
    let (up, seen) = upstream().await;
    let openapi = format!("{}/openapi.yaml", fixture());
    let extra = "cors = \"web\"\n[apis.pets.operations.deletePet]\nvalidate = \"report\"\n\
                 [cors.web]\nallow_origins = [\"https://app.example.com\"]\n\
                 allow_headers = [\"authorization\", \"x-request-reason\"]\n";
    let api = Api {
        gw: Gateway::start(&config(&up, &openapi, extra)),
        seen,
    };
    let read = token("pets:read");
    let write = token("pets:read pets:write");

    // Valid requests pass unchanged (the base path stripped).
    let (status, _) = api
        .send(
            api.req("GET", "/v1/pets?limit=10&tags=a&tags=b&status=sold")
                .bearer_auth(&read)
                .header("x-client-version", "2.1"),
        )
        .await;
    assert_eq!(status, 200);
    let pet =
        json!({"name": "rex", "kind": {"barks": true}, "owner": {"email": "ann@example.com"}});
    let body = serde_json::to_vec(&pet).unwrap();
    let (status, _) = api
        .send(
            api.req("POST", "/v1/pets")
                .bearer_auth(&write)
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await;
    assert_eq!(status, 200);
    // A chunked body is read whole and checked too.
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(body[..10].to_vec()),
        Ok(body[10..].to_vec()),
    ]);
    let (status, _) = api
        .send(
            api.req("POST", "/v1/pets")
                .bearer_auth(&write)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .send(
            api.req("GET", "/v1/pets/7?fields=name,tag")
                .header("x-api-key", "shop-key-0123456789")
                .header("cookie", "prefs=full"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.send(api.req("GET", "/v1/health")).await;
    assert_eq!(status, 200, "an operation with `security: []` is open");
    {
        let seen = api.seen.lock().unwrap();
        let targets: Vec<(&str, &str)> = seen
            .iter()
            .map(|(m, t, _)| (m.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("GET", "/pets?limit=10&tags=a&tags=b&status=sold"),
                ("POST", "/pets"),
                ("POST", "/pets"),
                ("GET", "/pets/7?fields=name,tag"),
                ("GET", "/health"),
            ]
        );
        assert_eq!(seen[1].2, body, "the body reaches the upstream unchanged");
        assert_eq!(seen[2].2, body);
    }

    // Each kind of invalid request: refused with its problem, never forwarded.
    let list = |q: &str| api.req("GET", &format!("/v1/pets?{q}")).bearer_auth(&read);
    api.refused(list("limit=0"), 400, ("query", "/limit")).await;
    api.refused(list("limit=ten"), 400, ("query", "/limit"))
        .await;
    api.refused(list("status=lost"), 400, ("query", "/status"))
        .await;
    api.refused(list("tags="), 400, ("query", "/tags/0")).await;
    api.refused(
        list("limit=5").header("x-client-version", "v2"),
        400,
        ("header", "/X-Client-Version"),
    )
    .await;
    let get = |path: &str| {
        api.req("GET", path)
            .header("x-api-key", "shop-key-0123456789")
    };
    api.refused(get("/v1/pets/rex"), 400, ("path", "/petId"))
        .await;
    api.refused(get("/v1/pets/0"), 400, ("path", "/petId"))
        .await;
    api.refused(get("/v1/pets/7?fields=age"), 400, ("query", "/fields/0"))
        .await;
    api.refused(
        get("/v1/pets/7").header("cookie", "a=b; prefs=huge"),
        400,
        ("cookie", "/prefs"),
    )
    .await;
    let post = |b: Value| {
        api.req("POST", "/v1/pets")
            .bearer_auth(&write)
            .header("content-type", "application/json")
            .body(b.to_string())
    };
    let body = api
        .refused(post(json!({"kind": {"barks": true}})), 400, ("body", ""))
        .await;
    assert!(body["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("\"name\" is a required property"));
    api.refused(
        post(json!({"name": "x", "kind": {"barks": true, "lives": 3}})),
        400,
        ("body", "/kind"),
    )
    .await;
    let body = api
        .refused(
            post(json!({"name": "x", "kind": {"lives": 3}, "owner": {"email": "not-an-email"}})),
            400,
            ("body", "/owner/email"),
        )
        .await;
    // Problems never repeat the value (it may be a secret, and it lands in report logs).
    assert_eq!(body["problems"][0]["message"], "value is not a \"email\"");
    api.refused(
        post(json!({"name": "x", "kind": {"lives": 3}, "birthday": "2021-02-30"})),
        400,
        ("body", "/birthday"),
    )
    .await;
    api.refused(
        api.req("POST", "/v1/pets")
            .bearer_auth(&write)
            .header("content-type", "application/json")
            .body("{\"name\": "),
        400,
        ("body", ""),
    )
    .await;
    api.refused(
        api.req("POST", "/v1/pets")
            .bearer_auth(&write)
            .header("content-type", "text/plain")
            .body("rex"),
        415,
        ("body", ""),
    )
    .await;
    api.refused(
        api.req("POST", "/v1/pets").bearer_auth(&write),
        400,
        ("body", ""),
    )
    .await;
    // Larger than the API's bound: 413 before anything is forwarded.
    let before = api.hits();
    let big = json!({"name": "x".repeat(4000), "kind": {"lives": 1}});
    assert_eq!(api.send(post(big)).await.0, 413);
    assert_eq!(api.hits(), before);

    // Authentication comes first: without credentials a malformed request is a 401, and a
    // token without the operation's scope is a 403.
    let before = api.hits();
    assert_eq!(api.send(api.req("GET", "/v1/pets?limit=0")).await.0, 401);
    assert_eq!(
        api.send(
            api.req("POST", "/v1/pets")
                .bearer_auth(token("pets:read"))
                .header("content-type", "application/json")
                .body(pet.to_string())
        )
        .await
        .0,
        403
    );
    // Paths and methods not in the document.
    assert_eq!(
        api.send(api.req("GET", "/v1/owners").bearer_auth(&read))
            .await
            .0,
        404
    );
    let resp = api
        .req("PATCH", "/v1/pets")
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, POST");
    assert_eq!(
        api.send(api.req("GET", "/pets")).await.0,
        404,
        "outside the base path"
    );
    // CORS for the whole API: preflights answered at the edge, grants on answers.
    let resp = api
        .req("OPTIONS", "/v1/pets/7")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "DELETE")
        .header(
            "access-control-request-headers",
            "authorization, x-request-reason",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let resp = api
        .req("GET", "/v1/health")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(api.hits(), before + 1, "only the GET was forwarded");
    let before = api.hits();

    // Report mode (deletePet): forwarded, counted and logged.
    let (status, _) = api
        .send(api.req("DELETE", "/v1/pets/7").bearer_auth(&write))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.hits(), before + 1);

    // A response that breaks the document reaches the client, and is reported.
    let (status, body) = api.send(get("/v1/pets/13")).await;
    assert_eq!((status, &body), (200, &json!({"id": "thirteen"})));
    let ok = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        let m = api.gw.metrics().await;
        metric_value(
            &m,
            "gatehouse_contract_violations_total",
            &[("operation", "getPet"), ("direction", "response")],
        ) == 1.0
    })
    .await;
    assert!(ok, "{}", api.gw.metrics().await);
    let m = api.gw.metrics().await;
    let count = |op: &str, direction: &str, mode: &str| {
        metric_value(
            &m,
            "gatehouse_contract_violations_total",
            &[
                ("api", "pets"),
                ("operation", op),
                ("direction", direction),
                ("mode", mode),
            ],
        )
    };
    assert_eq!(count("listPets", "request", "enforce"), 5.0);
    assert_eq!(count("createPet", "request", "enforce"), 7.0);
    assert_eq!(count("deletePet", "request", "report"), 1.0);
    assert_eq!(count("getPet", "response", "report"), 1.0);
    assert_eq!(
        count("getPet", "response", "report") + count("listPets", "response", "report"),
        1.0
    );
    let stderr = api.gw.stderr();
    assert!(
        stderr.contains("response does not match the API contract"),
        "{stderr}"
    );
    assert!(stderr.contains("request does not match the API contract (report mode"));
    assert!(!stderr.contains("shop-key-0123456789"), "a key in the logs");
    assert!(!stderr.contains("thirteen"), "a response value in the logs");

    // Per-operation counts: the admin API lists every operation, with the unused ones at 0.
    let routes = admin_routes(&api.gw).await;
    let op = |id: &str| route_where(&routes, "operation", id);
    let get_pet = op("getPet");
    assert_eq!(get_pet["name"], "pets.getPet");
    assert_eq!(get_pet["api"], "pets");
    assert_eq!(get_pet["path"], "/v1/pets/{petId}");
    assert_eq!(get_pet["auth"], "keys");
    assert!(get_pet["last_request"].is_string());
    assert!(get_pet["requests"].as_u64().unwrap() >= 6);
    // Never called: listed with no requests, for the unused-route alerts.
    let owner = op("getOwner");
    assert_eq!(owner["requests"], 0);
    assert!(owner["last_request"].is_null());
    assert_eq!(owner["path"], "/v1/pets/{petId}/owner");
    let health = op("health");
    assert_eq!(health["requests"], 2);
    assert!(health["auth"].is_null());
    let m = api.gw.metrics().await;
    assert!(m.contains("gatehouse_route_last_request_timestamp_seconds{route=\"pets.deletePet\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_problems_are_named_and_a_reload_reads_the_document_again() {
    let (up, seen) = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("api.yaml");
    let head = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n";
    std::fs::write(
        &doc,
        format!("{head}paths:\n  /a:\n    get:\n      operationId: a\n"),
    )
    .unwrap();
    // This document has no security schemes to map.
    let text = config(&up, &doc.display().to_string(), "").replace(
        "authorizers = { petsAuth = \"jwt\", apiKey = \"keys\" }\n",
        "",
    );
    let api = Api {
        gw: Gateway::start(&text),
        seen,
    };
    assert_eq!(api.send(api.req("GET", "/v1/a")).await.0, 200);
    assert_eq!(api.send(api.req("GET", "/v1/b/1")).await.0, 404);

    // A broken document: `check` names the file and the place, and a reload keeps the last
    // good routes.
    let broken = format!(
        "{head}paths:\n  /b/{{id}}:\n    get:\n      operationId: b\n      parameters:\n        - $ref: '#/components/parameters/Id'\n"
    );
    std::fs::write(&doc, &broken).unwrap();
    let (ok, _, stderr) =
        check_config(&format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{text}"));
    assert!(!ok);
    let expected = format!(
        "apis.pets.openapi: {}#/paths/~1b~1{{id}}/get/parameters/0: $ref \"#/components/parameters/Id\" points to nothing",
        doc.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(api.gw.reload_via_admin().await.status(), 422);
    assert_eq!(api.send(api.req("GET", "/v1/a")).await.0, 200);

    // Fixed: the reload reads the document again and serves its new operation.
    std::fs::write(
        &doc,
        format!("{broken}components:\n  parameters:\n    Id: {{name: id, in: path, required: true, schema: {{type: integer}}}}\n"),
    )
    .unwrap();
    assert_eq!(api.gw.reload_via_admin().await.status(), 200);
    assert_eq!(api.send(api.req("GET", "/v1/b/1")).await.0, 200);
    api.refused(api.req("GET", "/v1/b/x"), 400, ("path", "/id"))
        .await;
    assert_eq!(
        api.send(api.req("GET", "/v1/a")).await.0,
        404,
        "gone from the document"
    );

    // `explain` shows the operation and the parameter problems, without sending anything.
    let file = dir.path().join("g.toml");
    std::fs::write(
        &file,
        format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{text}"),
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::BIN)
        .args(["explain", "-c"])
        .arg(&file)
        .args(["GET", "http://pets.example.com:1/v1/b/x"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"]["status"], 400, "{v}");
    let step = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "contract")
        .cloned()
        .unwrap();
    assert_eq!(step["operation"], "b");
    assert_eq!(step["problems"][0]["pointer"], "/id", "{step}");

    // Config problems of the API itself.
    let bad = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.p]\ntargets = [{{ address = \"127.0.0.1:2\" }}]\n\
         [apis.x]\nopenapi = \"{}\"\nupstream = \"q\"\nbase_path = \"/v1/\"\nvalidate_responses = \"enforce\"\n\
         max_body_bytes = 100000\nmax_response_bytes = 0\nauthorizers = {{ s = \"nope\" }}\n",
        doc.display()
    );
    let (ok, _, stderr) = check_config(&bad);
    assert!(!ok);
    for line in [
        "apis.x.upstream: unknown upstream \"q\"",
        "apis.x.base_path: \"/v1/\" must start with `/`, not end with one",
        "apis.x.max_response_bytes: must be between 1 and 16777216",
        "apis.x.max_body_bytes: must be between 1 and 65536",
        "apis.x.authorizers.s: unknown authorizer \"nope\"",
    ] {
        assert!(stderr.contains(line), "{line} not in {stderr}");
    }
}

/// What the enforcing upstream saw: target, `Accept-Encoding` and body of each request.
type SeenHeaders = Arc<Mutex<Vec<(String, Option<String>, Vec<u8>)>>>;

/// An upstream whose answers break the document in each way an enforced check must catch.
async fn breaking_upstream() -> (Upstream, SeenHeaders) {
    use futures_util::StreamExt;
    let seen: SeenHeaders = Arc::default();
    let log = seen.clone();
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let target = req.uri().to_string();
            let method = req.method().clone();
            let encoding = req
                .headers()
                .get("accept-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            let wanted = req.headers().get("x-answer").cloned();
            let body = request_body(req).await.to_vec();
            log.lock().unwrap().push((target.clone(), encoding, body));
            let pet = |name: &str| json!({"id": 7, "name": name}).to_string();
            let (status, text, gzip) = match (method.as_str(), target.as_str()) {
                ("POST", _) if wanted.is_some() => (200, pet("rex"), false),
                ("POST", _) => (201, pet("rex"), false),
                (_, "/pets/13") | (_, "/pets") => {
                    (200, json!({"id": "thirteen"}).to_string(), false)
                }
                (_, "/pets/14") => (200, pet("rex"), true),
                (_, "/pets/15") => (200, pet(&"x".repeat(5000)), false),
                (_, "/pets/16") => (404, json!({"gone": true}).to_string(), false),
                _ => (200, pet("rex"), false),
            };
            let body: crate::common::Body = if target == "/pets/17" {
                // The body in slow pieces: held whole, then written whole.
                let text = text.into_bytes();
                let pieces: Vec<bytes::Bytes> =
                    text.chunks(5).map(bytes::Bytes::copy_from_slice).collect();
                let stream = futures_util::stream::iter(pieces).then(|piece| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(piece))
                });
                http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stream))
            } else {
                crate::common::full(text)
            };
            let mut r = Response::new(body);
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r.headers_mut()
                .insert("x-upstream-note", "kept".parse().unwrap());
            if gzip {
                r.headers_mut()
                    .insert("content-encoding", "gzip".parse().unwrap());
            }
            r
        }
    })
    .await;
    (up, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_responses_are_held_until_they_match_the_document() {
    let (up, seen) = breaking_upstream().await;
    let openapi = format!("{}/openapi.yaml", fixture());
    let dead = crate::common::free_port();
    let extra = format!(
        "max_response_bytes = 4096\n\
         [apis.pets.operations.listPets]\nvalidate_responses = \"off\"\n\
         [upstreams.dead]\ntargets = [{{ address = \"127.0.0.1:{dead}\" }}]\n\
         [apis.down]\nopenapi = \"{openapi}\"\nhosts = [\"down.example.com\"]\n\
         base_path = \"/v1\"\nupstream = \"dead\"\nvalidate_responses = \"enforce\"\n\
         authorizers = {{ petsAuth = \"jwt\", apiKey = \"keys\" }}\n"
    );
    // And HTTP/2 over TLS: the held response is written as the client's protocol wants.
    let ca = crate::pki::Ca::new("contracts ca");
    let certs = tempfile::tempdir().unwrap();
    ca.server(&["pets.example.com"], 30)
        .write(certs.path(), "pets");
    let tls = crate::common::free_port();
    let extra = format!(
        "{extra}[[listeners]]\naddress = \"127.0.0.1:{tls}\"\ntls = {{ }}\n\
         [certificates.pets]\ncert = \"{dir}/pets.crt\"\nkey = \"{dir}/pets.key\"\n",
        dir = certs.path().display()
    );
    let text = config(&up, &openapi, &extra).replace(
        "validate_responses = \"report\"",
        "validate_responses = \"enforce\"",
    );
    let gw = Gateway::start(&text);
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve(
            "pets.example.com",
            format!("127.0.0.1:{tls}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let h2_get = |path: &str| {
        h2.get(format!("https://pets.example.com:{tls}{path}"))
            .header("x-api-key", "shop-key-0123456789")
    };
    let resp = h2_get("/v1/pets/7").send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text} {}", gw.stderr());
    assert_eq!(text, r#"{"id":7,"name":"rex"}"#);
    let resp = h2_get("/v1/pets/13").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let resp = h2_get("/v1/pets/16").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), r#"{"gone":true}"#);
    // A streamed HTTP/2 body declares no length: the upstream still gets all of it.
    let pet =
        json!({"name": "rex", "kind": {"barks": true}, "owner": {"email": "ann@example.com"}});
    let body = serde_json::to_vec(&pet).unwrap();
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(body[..10].to_vec()),
        Ok(body[10..].to_vec()),
    ]);
    let resp = h2
        .post(format!("https://pets.example.com:{tls}/v1/pets"))
        .bearer_auth(token("pets:read pets:write"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        seen.lock()
            .unwrap()
            .last()
            .map(|(t, _, b)| (t.clone(), b.clone())),
        Some(("/pets".to_string(), body))
    );
    let hits = || seen.lock().unwrap().len();
    let key = "shop-key-0123456789";
    let get = |path: &str| {
        client()
            .get(gw.url(path))
            .header("host", "pets.example.com")
            .header("x-api-key", key)
            .header("accept-encoding", "gzip, br")
    };
    let send = |r: reqwest::RequestBuilder| async move {
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (status, headers, text)
    };
    let refused = |status: u16, text: &str, message: &str| {
        assert_eq!(status, 502, "{text}");
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["error"], message, "{body}");
        assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            body.get("problems").is_none(),
            "no detail of the response: {body}"
        );
        assert!(!text.contains("thirteen"));
    };

    // A matching response passes unchanged, head and body, with the gateway's headers.
    let (status, headers, text) = send(get("/v1/pets/7")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, json!({"id": 7, "name": "rex"}).to_string());
    assert_eq!(headers["x-upstream-note"], "kept");
    assert!(headers.contains_key("x-request-id"));
    // The subrequest's upstream connections go back to the pool like any other: five held
    // requests so far. One more connection is allowed: on a loaded machine Pingora's pool
    // handover (`reused_stream`'s `Arc::try_unwrap`) can lose to the idle-poll task still
    // holding the connection, and a new one is opened; without reuse there would be five.
    let opened = up.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=2).contains(&opened),
        "{opened} upstream connections for five held requests"
    );
    // Streamed in slow pieces: held whole and written whole.
    let (status, _, text) = send(get("/v1/pets/17")).await;
    assert_eq!((status, text.as_str()), (200, r#"{"id":7,"name":"rex"}"#));
    // A status the operation declares without a schema (`default`) passes.
    let (status, _, text) = send(get("/v1/pets/16")).await;
    assert_eq!((status, text.as_str()), (404, r#"{"gone":true}"#));
    // HEAD has no body to check.
    let resp = get("/v1/pets/13").build().unwrap();
    let mut head = resp;
    *head.method_mut() = reqwest::Method::HEAD;
    let resp = client().execute(head).await.unwrap();
    assert_eq!(resp.status(), 200);

    // Each way a response breaks the document: a 502, and the response goes nowhere.
    let (status, _, text) = send(get("/v1/pets/13")).await;
    refused(
        status,
        &text,
        "upstream response does not match the API contract",
    );
    let (status, _, text) = send(get("/v1/pets/14")).await;
    refused(
        status,
        &text,
        "upstream response is content-encoded and cannot be checked",
    );
    let (status, _, text) = send(get("/v1/pets/15")).await;
    refused(
        status,
        &text,
        "upstream response is larger than the API's max_response_bytes",
    );
    // createPet declares only 201: a 200 is off the contract.
    let pet =
        json!({"name": "rex", "kind": {"barks": true}, "owner": {"email": "ann@example.com"}});
    let body = serde_json::to_vec(&pet).unwrap();
    let post = || {
        client()
            .post(gw.url("/v1/pets"))
            .header("host", "pets.example.com")
            .bearer_auth(token("pets:read pets:write"))
            .header("content-type", "application/json")
    };
    let (status, _, text) = send(post().header("x-answer", "200").body(body.clone())).await;
    refused(
        status,
        &text,
        "upstream response does not match the API contract",
    );
    // The request body reaches the upstream unchanged through the held path, whole or
    // chunked.
    let (status, _, text) = send(post().body(body.clone())).await;
    assert_eq!(status, 201, "{text}");
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(body[..10].to_vec()),
        Ok(body[10..].to_vec()),
    ]);
    let (status, _, _) = send(post().body(reqwest::Body::wrap_stream(stream))).await;
    assert_eq!(status, 201);
    // Requests are still checked first: a bad one never reaches the upstream.
    let before = hits();
    let (status, _, _) = send(post().body("{}")).await;
    assert_eq!(status, 400);
    assert_eq!(hits(), before);
    // An operation set to `off` lets its bad response through.
    let (status, _, text) = send(
        client()
            .get(gw.url("/v1/pets"))
            .header("host", "pets.example.com")
            .bearer_auth(token("pets:read")),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, r#"{"id":"thirteen"}"#));
    {
        let seen = seen.lock().unwrap();
        for (target, encoding, _) in seen.iter() {
            if target.starts_with("/pets/") {
                assert_eq!(
                    encoding, &None,
                    "{target}: Accept-Encoding reached the upstream"
                );
            }
        }
        let posted: Vec<&Vec<u8>> = seen
            .iter()
            .filter(|(t, _, b)| t == "/pets" && !b.is_empty())
            .map(|(_, _, b)| b)
            .collect();
        assert_eq!(
            posted,
            [&body, &body, &body, &body],
            "the body reached the upstream unchanged"
        );
    }

    // The gateway's own failure is answered as without enforcement.
    let (status, _, text) = send(
        client()
            .get(gw.url("/v1/pets/7"))
            .header("host", "down.example.com")
            .header("x-api-key", key),
    )
    .await;
    assert_eq!(status, 502, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_ne!(
        body["error"],
        "upstream response does not match the API contract"
    );

    // Counted once per refused response, by mode; logged without the response's values.
    let m = gw.metrics().await;
    let count = |op: &str| {
        metric_value(
            &m,
            "gatehouse_contract_violations_total",
            &[
                ("api", "pets"),
                ("operation", op),
                ("direction", "response"),
                ("mode", "enforce"),
            ],
        )
    };
    assert_eq!(count("getPet"), 4.0, "{m}");
    assert_eq!(count("createPet"), 1.0, "{m}");
    let stderr = gw.stderr();
    assert!(stderr.contains("(enforce mode: answered 502)"), "{stderr}");
    assert!(!stderr.contains("thirteen"), "a response value in the logs");
    assert!(!stderr.contains(key), "a key in the logs");

    // One request each in the route counts and the access log, with the status the client
    // got: the subrequest is not a second request.
    let routes = admin_routes(&gw).await;
    let requests = |id: &str| route_where(&routes, "name", id)["requests"].clone();
    assert_eq!(requests("pets.getPet"), json!(10));
    assert_eq!(requests("pets.createPet"), json!(5));
    let lines = gw
        .access_log_once(|l| l["host"] == "down.example.com")
        .await;
    let statuses: Vec<(String, u64)> = lines
        .iter()
        .filter(|l| l["route"] == "pets.getPet")
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_string(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("/v1/pets/7".to_string(), 200),
            ("/v1/pets/13".to_string(), 502),
            ("/v1/pets/16".to_string(), 404),
            ("/v1/pets/7".to_string(), 200),
            ("/v1/pets/17".to_string(), 200),
            ("/v1/pets/16".to_string(), 404),
            ("/v1/pets/13".to_string(), 200),
            ("/v1/pets/13".to_string(), 502),
            ("/v1/pets/14".to_string(), 502),
            ("/v1/pets/15".to_string(), 502),
        ]
    );
    let held = lines
        .iter()
        .find(|l| l["route"] == "pets.getPet" && l["path"] == "/v1/pets/7")
        .unwrap();
    assert!(held["target"].is_string(), "{held}");
    assert!(held["upstream_duration_ms"].is_number(), "{held}");

    // The client's connection stays usable after a held response and after a refused one.
    let req = |path: &str, last: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: pets.example.com\r\nx-api-key: {key}\r\n{last}\r\n")
    };
    let three = [
        req("/v1/pets/7", ""),
        req("/v1/pets/13", ""),
        req("/v1/pets/7", "Connection: close\r\n"),
    ]
    .concat();
    let out = crate::common::raw_request(
        gw.addr(),
        three.as_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await;
    let statuses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
    assert_eq!(statuses, ["200", "502", "200"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_one_trace_with_its_upstream_attempt() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let receiver = crate::otlp::Receiver::http().await;
    let (up, _) = breaking_upstream().await;
    let openapi = format!("{}/openapi.yaml", fixture());
    let extra = format!(
        "[tracing]\nendpoint = \"http://{}\"\nratio = 0.0\nexport_interval = \"50ms\"\n",
        receiver.addr
    );
    let text = config(&up, &openapi, &extra).replace(
        "validate_responses = \"report\"",
        "validate_responses = \"enforce\"",
    );
    let gw = Gateway::start(&text);
    let resp = client()
        .get(gw.url("/v1/pets/13"))
        .header("host", "pets.example.com")
        .header("x-api-key", "shop-key-0123456789")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let spans = receiver
        .trace(TRACE, 2, std::time::Duration::from_secs(10))
        .await;
    // Exactly the request's server span and its one upstream attempt: the subrequest adds
    // no span of its own.
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans.iter().find(|s| s.kind == 2).expect("server span");
    let attempt = spans.iter().find(|s| s.kind == 3).expect("client span");
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(server.attr("gatehouse.route"), Some("pets.getPet"));
    assert_eq!(server.attr("http.response.status_code"), Some("502"));
    assert_eq!(attempt.attr("http.response.status_code"), Some("200"));
    assert!(server.start_ns <= attempt.start_ns && attempt.end_ns <= server.end_ns);
}
