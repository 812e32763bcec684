//! TLS through the real binary: SNI certificate choice, hot reload from disk, protocol floor,
//! ALPN/HTTP/2, resumption, HTTPS policy per host, client certificates, TLS to upstreams.
//! Certificates are generated here; handshakes are real (OpenSSL clients and servers).

use crate::common::*;
use crate::pki::*;
use hyper::{Request, Response};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode, SslVersion};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `[certificates]` entries for (name, cert path, key path).
fn certificates(list: &[(&str, &Path, &Path)]) -> String {
    list.iter()
        .map(|(n, c, k)| {
            format!(
                "[certificates.{n}]\ncert = \"{}\"\nkey = \"{}\"\n",
                c.display(),
                k.display()
            )
        })
        .collect()
}

fn tls_listener(port: u16, extra: &str) -> String {
    format!("[[listeners]]\naddress = \"127.0.0.1:{port}\"\ntls = {{ {extra} }}\n")
}

const ECHO_ROUTE: &str = "[[routes]]\nname = \"r\"\nupstream = \"p\"\n";

fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_exact_wildcard_and_default_certificates() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (a_c, a_k) = ca.server(&["a.test"], 30).write(dir.path(), "a");
    let (w_c, w_k) = ca.server(&["*.w.test"], 30).write(dir.path(), "w");
    let (d_c, d_k) = ca.server(&["default.test"], 30).write(dir.path(), "d");
    let upstream = Upstream::echo().await;
    let (tls, strict) = (free_port(), free_port());
    // Handshakes on a dedicated thread (Pingora's offload pool): the same results expected.
    let gw = Gateway::start_with(
        "tls_handshake_threads = 1",
        "",
        &format!(
            "{}{}{}{}{ECHO_ROUTE}",
            tls_listener(tls, "default_certificate = \"d\""),
            tls_listener(strict, ""),
            certificates(&[("a", &a_c, &a_k), ("w", &w_c, &w_k), ("d", &d_c, &d_k)]),
            single_pool_only(&upstream),
        ),
    );
    let ca_pem = ca.pem();
    blocking(move || {
        let names = |port, sni| {
            let o = ClientOpts {
                sni,
                ca: Some(&ca_pem),
                ..Default::default()
            };
            served_names(&connect(port, &o).unwrap())
        };
        assert_eq!(names(tls, Some("a.test")), ["a.test"]);
        assert_eq!(
            names(tls, Some("A.TEST")),
            ["a.test"],
            "SNI is case-insensitive"
        );
        assert_eq!(names(tls, Some("x.w.test")), ["*.w.test"]);
        let no_verify = |port, sni| {
            let o = ClientOpts {
                sni,
                ..Default::default()
            };
            connect(port, &o).map(|s| served_names(&s))
        };
        assert_eq!(
            no_verify(tls, Some("x.y.w.test")).unwrap(),
            ["default.test"],
            "one label only"
        );
        assert_eq!(no_verify(tls, None).unwrap(), ["default.test"]);
        assert_eq!(
            no_verify(tls, Some("other.test")).unwrap(),
            ["default.test"]
        );
        // Without a default certificate, unknown names and missing SNI are refused.
        assert!(no_verify(strict, Some("other.test")).is_err());
        assert!(no_verify(strict, None).is_err());
        assert_eq!(names(strict, Some("a.test")), ["a.test"]);

        // HTTP over it, with X-Forwarded-Proto telling the upstream it was HTTPS.
        let o = ClientOpts {
            sni: Some("a.test"),
            ca: Some(&ca_pem),
            ..Default::default()
        };
        let mut s = connect(tls, &o).unwrap();
        let (status, _, body) = request(&mut s, "a.test", "/x", "").unwrap();
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    });
    let metrics = gw.metrics().await;
    assert!(metrics.contains("gatehouse_tls_certificate_expiry_timestamp_seconds{name=\"a\"}"));

    // The running listener keeps its default certificate until it restarts, so a reload that
    // drops it is refused.
    let text = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace("[certificates.d]", "[certificates.d2]")
        .replace(
            "default_certificate = \"d\"",
            "default_certificate = \"d2\"",
        );
    std::fs::write(&gw.config_path, text).unwrap();
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 422);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("the running listener serves certificate \\\"d\\\" by default"),
        "{body}"
    );
}

/// `[upstreams.p]` alone (the routes come separately).
fn single_pool_only(upstream: &Upstream) -> String {
    format!(
        "[upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n",
        upstream.address()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn replaced_certificates_serve_new_handshakes_and_bad_pairs_keep_the_old_one() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.server(&["a.test"], 30);
    let (cert, key) = first.write(dir.path(), "a");
    let upstream = Upstream::echo().await;
    let tls = free_port();
    let gw = Gateway::start_with(
        "watch_interval = \"200ms\"",
        "",
        &format!(
            "[tls]\nwatch = true\n{}{}{}{ECHO_ROUTE}",
            tls_listener(tls, ""),
            certificates(&[("a", &cert, &key)]),
            single_pool_only(&upstream),
        ),
    );
    let o = || ClientOpts {
        sni: Some("a.test"),
        ca: None,
        ..Default::default()
    };
    let (open, fp1) = blocking(move || {
        let mut s = connect(tls, &o()).unwrap();
        assert_eq!(request(&mut s, "a.test", "/", "").unwrap().0, 200);
        let fp = served_fingerprint(&s);
        (s, fp)
    });
    assert_eq!(fp1, first.fingerprint());

    let second = ca.server(&["a.test"], 60);
    second.write(dir.path(), "a");
    let want = second.fingerprint();
    let picked_up = eventually(Duration::from_secs(10), || {
        let want = want.clone();
        async move { blocking(move || served_fingerprint(&connect(tls, &o()).unwrap()) == want) }
    })
    .await;
    assert!(picked_up, "new handshakes see the new certificate");
    // The connection opened before the change keeps working.
    let mut open = open;
    let open = blocking(move || {
        assert_eq!(request(&mut open, "a.test", "/again", "").unwrap().0, 200);
        open
    });

    // A key that does not belong to the certificate: refused, the last good pair stays.
    let stranger = ca.server(&["a.test"], 60);
    std::fs::write(&key, &stranger.key).unwrap();
    let reported = eventually(Duration::from_secs(10), || async {
        gw.stderr().contains("does not belong to the certificate")
    })
    .await;
    assert!(reported, "{}", gw.stderr());
    let fp = blocking(move || served_fingerprint(&connect(tls, &o()).unwrap()));
    assert_eq!(fp, second.fingerprint());
    let config = get_json(gw.admin_url("/-/config")).await;
    assert!(
        config["last_reload"]
            .to_string()
            .contains("does not belong"),
        "{config}"
    );
    drop(open);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_protocols_are_refused_and_h2_and_resumption_work() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server(&["a.test"], 30).write(dir.path(), "a");
    let upstream = Upstream::echo().await;
    let (tls, tls13, h1) = (free_port(), free_port(), free_port());
    let gw = Gateway::start(&format!(
        "{}{}{}{}{}{ECHO_ROUTE}",
        tls_listener(tls, ""),
        tls_listener(tls13, "min_version = \"1.3\""),
        tls_listener(h1, "http2 = false"),
        certificates(&[("a", &cert, &key)]),
        single_pool_only(&upstream),
    ));
    blocking(move || {
        let with = |port, max: Option<SslVersion>, alpn: Option<&'static [u8]>| {
            let o = ClientOpts {
                sni: Some("a.test"),
                max_version: max,
                alpn,
                ..Default::default()
            };
            connect(port, &o)
        };
        for old in [SslVersion::TLS1, SslVersion::TLS1_1] {
            assert!(
                with(tls, Some(old), None).is_err(),
                "{old:?} must be refused"
            );
        }
        // The same client settings reach TLS 1.2, so the refusals above are the server's.
        let s = with(tls, Some(SslVersion::TLS1_2), None).unwrap();
        assert_eq!(s.ssl().version_str(), "TLSv1.2");
        assert!(with(tls13, Some(SslVersion::TLS1_2), None).is_err());
        assert_eq!(
            with(tls13, None, None).unwrap().ssl().version_str(),
            "TLSv1.3"
        );
        let s = with(tls, None, Some(b"\x02h2\x08http/1.1")).unwrap();
        assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
        let s = with(h1, None, Some(b"\x02h2\x08http/1.1")).unwrap();
        assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"http/1.1"[..]));
    });

    // A real HTTP/2 request over TLS.
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("a.test", std::net::SocketAddr::from(([127, 0, 0, 1], tls)))
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://a.test:{tls}/h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    // Session resumption, with the openssl command line client.
    let sess = gw.dir.path().join("session.pem");
    let s_client = |arg: &str| {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{tls}"),
                "-servername",
                "a.test",
            ])
            .args(["-tls1_2", arg, sess.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = s_client("-sess_out");
    assert!(first.contains("New, TLSv1.2"), "{first}");
    let again = s_client("-sess_in");
    assert!(again.contains("Reused, TLSv1.2"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_redirect_hsts_and_host_sni_agreement() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server(&["a.test", "b.test"], 30).write(dir.path(), "ab");
    let upstream = Upstream::echo().await;
    let tls = free_port();
    let gw = Gateway::start(&format!(
        "{}{}{}{ECHO_ROUTE}[[routes]]\nname = \"mock\"\npath = \"/mock\"\nrespond = {{}}\n\
         [hosts.\"a.test\"]\nhttps_redirect = true\nhttps_port = {tls}\nstrict_sni = true\n\
         hsts = {{ max_age = \"180d\", include_subdomains = true }}\n",
        tls_listener(tls, ""),
        certificates(&[("ab", &cert, &key)]),
        single_pool_only(&upstream),
    ));
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = c
        .post(gw.url("/orders?id=7"))
        .header("host", "A.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308, "308 keeps the method");
    assert_eq!(
        resp.headers()["location"],
        format!("https://a.test:{tls}/orders?id=7")
    );
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(
        !resp.headers().contains_key("strict-transport-security"),
        "never HSTS over plain HTTP (RFC 6797 7.2)"
    );
    let other = c
        .get(gw.url("/"))
        .header("host", "b.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        200,
        "hosts without a policy are served over HTTP"
    );

    blocking(move || {
        let o = |sni| ClientOpts {
            sni: Some(sni),
            ..Default::default()
        };
        let mut s = connect(tls, &o("a.test")).unwrap();
        let (status, head, _) = request(&mut s, "a.test", "/", "").unwrap();
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("strict-transport-security: max-age=15552000; includesubdomains"),
            "{head}"
        );
        let (status, head, _) = request(&mut s, "a.test", "/mock", "").unwrap();
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("strict-transport-security"),
            "fixed responses carry HSTS too: {head}"
        );
        // SNI b.test, Host a.test: domain fronting.
        let mut s = connect(tls, &o("b.test")).unwrap();
        let (status, _, body) = request(&mut s, "a.test", "/", "").unwrap();
        assert_eq!(status, 421, "{body}");
        // SNI a.test, Host b.test: b.test has no policy of its own.
        let mut s = connect(tls, &o("a.test")).unwrap();
        let (status, head, _) = request(&mut s, "b.test", "/", "").unwrap();
        assert_eq!(status, 200);
        assert!(!head
            .to_ascii_lowercase()
            .contains("strict-transport-security"));
    });
}

/// Refusals of a host's policy over TLS are answered like every other refusal: with the host's
/// HSTS, the request id and a JSON body. A refusal before the policy is known (a bad Host)
/// has no HSTS.
#[tokio::test(flavor = "multi_thread")]
async fn host_policy_refusals_over_tls_carry_hsts_and_the_request_id() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .server(&["a.test", "b.test", "api.secure.test"], 30)
        .write(dir.path(), "s");
    let upstream = Upstream::echo().await;
    let tls = free_port();
    let _gw = Gateway::start(&format!(
        "{}{}{}{ECHO_ROUTE}\
         [hosts.\"a.test\"]\nstrict_sni = true\nhsts = {{ max_age = \"60s\" }}\n\
         [hosts.\"*.secure.test\"]\nclient_cert = \"required\"\n\
         hsts = {{ max_age = \"120s\" }}\n",
        tls_listener(tls, ""),
        certificates(&[("s", &cert, &key)]),
        single_pool_only(&upstream),
    ));
    blocking(move || {
        let ask = |sni: &str, host: &str| {
            let o = ClientOpts {
                sni: Some(sni),
                ..Default::default()
            };
            let mut s = connect(tls, &o).unwrap();
            let (status, head, body) =
                request(&mut s, host, "/", "x-request-id: refused-1\r\n").unwrap();
            (status, head.to_ascii_lowercase(), body)
        };
        for (sni, host, status, error, hsts) in [
            (
                "b.test",
                "a.test",
                421,
                "host does not match the TLS server name",
                "max-age=60",
            ),
            (
                "api.secure.test",
                "api.secure.test",
                403,
                "client certificate required",
                "max-age=120",
            ),
        ] {
            let (got, head, body) = ask(sni, host);
            assert_eq!(got, status, "{head}\n{body}");
            let has = |line: &str| head.lines().any(|l| l == line);
            assert!(has(&format!("strict-transport-security: {hsts}")), "{head}");
            assert!(has("x-request-id: refused-1"), "{head}");
            assert!(has("content-type: application/json"), "{head}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], error);
            assert_eq!(body["request_id"], "refused-1");
        }
        let (status, head, body) = ask("a.test", "a.test:abc");
        assert_eq!(status, 400, "{head}\n{body}");
        assert!(!head.contains("strict-transport-security"), "{head}");
        assert!(
            head.lines().any(|l| l == "x-request-id: refused-1"),
            "{head}"
        );
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_required_optional_and_invalid() {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let rogue_ca = Ca::new("rogue ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_ca
        .server(&["a.test", "api.secure.test"], 30)
        .write(dir.path(), "s");
    let ca_file = dir.path().join("clients.pem");
    std::fs::write(&ca_file, client_ca.pem()).unwrap();
    let alice = client_ca.client("alice", "Acme");
    let mallory = rogue_ca.client("alice", "Acme");
    let upstream = Upstream::echo().await;
    let (required, optional) = (free_port(), free_port());
    let ca = ca_file.display().to_string();
    let gw = Gateway::start(&format!(
        "{}{}{}{}{ECHO_ROUTE}[hosts.\"*.secure.test\"]\nclient_cert = \"required\"\n",
        tls_listener(
            required,
            &format!("client_auth = \"required\", client_ca = \"{ca}\"")
        ),
        tls_listener(
            optional,
            &format!("client_auth = \"optional\", client_ca = \"{ca}\"")
        ),
        certificates(&[("s", &cert, &key)]),
        single_pool_only(&upstream),
    ));
    let alice_fp = alice.fingerprint();
    blocking(move || {
        let get = |port, host: &str, client: Option<&Issued>| {
            let o = ClientOpts {
                sni: Some(host),
                client,
                ..Default::default()
            };
            // TLS 1.3 reports a refused client certificate on the first read, not in connect.
            connect(port, &o)
                .and_then(|mut s| request(&mut s, host, "/", "x-client-cert-subject: CN=admin\r\n"))
        };
        assert!(
            get(required, "a.test", None).is_err(),
            "required: no certificate"
        );
        assert!(
            get(required, "a.test", Some(&mallory)).is_err(),
            "required: wrong CA"
        );
        let (status, _, body) = get(required, "a.test", Some(&alice)).unwrap();
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        // RFC 4514 order: the last RDN of the certificate's subject first.
        assert_eq!(body["headers"]["x-client-cert-subject"], "O=Acme,CN=alice");
        assert_eq!(body["headers"]["x-client-cert-sha256"], alice_fp.as_str());

        let (status, _, body) = get(optional, "a.test", None).unwrap();
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["headers"].get("x-client-cert-subject").is_none(),
            "spoofed header removed"
        );
        assert!(
            get(optional, "a.test", Some(&mallory)).is_err(),
            "optional: an invalid one is refused"
        );
        assert_eq!(
            get(optional, "api.secure.test", None).unwrap().0,
            403,
            "host requires one"
        );
        assert_eq!(
            get(optional, "api.secure.test", Some(&alice)).unwrap().0,
            200
        );
    });
    // The policy cannot be sidestepped over plain HTTP, a deeper name, or an odd port.
    let plain = |host: &'static str| {
        let url = gw.url("/");
        async move {
            client()
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(plain("api.secure.test").await, 403);
    assert_eq!(plain("a.b.secure.test").await, 403);
    assert_eq!(plain("api.secure.test:abc").await, 400);
}

/// An HTTPS upstream: answers "secure" to every request; requires a client certificate from
/// `client_ca` when given.
async fn tls_upstream(
    server: &Issued,
    client_ca: Option<&Ca>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate(&openssl::x509::X509::from_pem(server.cert.as_bytes()).unwrap())
        .unwrap();
    b.set_private_key(&openssl::pkey::PKey::private_key_from_pem(server.key.as_bytes()).unwrap())
        .unwrap();
    if let Some(ca) = client_ca {
        let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
        store
            .add_cert(openssl::x509::X509::from_pem(ca.pem().as_bytes()).unwrap())
            .unwrap();
        b.set_verify_cert_store(store.build()).unwrap();
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    let acceptor = Arc::new(b.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                    return;
                }
                let service =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(full("secure")))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_verifies_certificates_and_presents_a_client_certificate() {
    let up_ca = Ca::new("upstream ca");
    let other_ca = Ca::new("other ca");
    let gw_client_ca = Ca::new("gateway client ca");
    let dir = tempfile::tempdir().unwrap();
    let server = up_ca.server(&["up.test"], 30);
    let (port, _task) = tls_upstream(&server, Some(&gw_client_ca)).await;
    let ca_path = dir.path().join("up-ca.pem");
    std::fs::write(&ca_path, up_ca.pem()).unwrap();
    let other_path = dir.path().join("other-ca.pem");
    std::fs::write(&other_path, other_ca.pem()).unwrap();
    let (cc, ck) = gw_client_ca
        .client("gatehouse", "Edge")
        .write(dir.path(), "gw");
    let pool = |name: &str, tls: &str| {
        // Only the first pool is health checked: a failed check would turn the others' 502
        // (what this test looks at) into a 503.
        let hc = if name == "good" || name == "checked" {
            "health_check = { path = \"/\", interval = \"200ms\", healthy_threshold = 1, unhealthy_threshold = 1 }\n"
        } else {
            ""
        };
        format!(
            "[upstreams.{name}]\ntargets = [{{ address = \"127.0.0.1:{port}\" }}]\n{hc}\
             tls = {{ sni = \"up.test\", {tls} }}\n\
             [[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{name}\"\n"
        )
    };
    let client = format!(
        "client_cert = \"{}\", client_key = \"{}\"",
        cc.display(),
        ck.display()
    );
    let gw = Gateway::start(&format!(
        "{}{}{}{}",
        pool("good", &format!("ca = \"{}\", {client}", ca_path.display())),
        pool(
            "wrongca",
            &format!("ca = \"{}\", {client}", other_path.display())
        ),
        pool("nocert", &format!("ca = \"{}\"", ca_path.display())),
        pool(
            "checked",
            &format!("ca = \"{}\", {client}", other_path.display())
        ),
    ));
    let (status, body) = body_of(gw.url("/good")).await;
    assert_eq!((status, body.as_str()), (200, "secure"));
    // The target's certificate does not chain to the configured CA: 502 and a log line.
    let (status, body) = body_of(gw.url("/wrongca")).await;
    assert_eq!(status, 502, "{body}");
    let logged = eventually(Duration::from_secs(5), || async {
        let err = gw.stderr();
        err.contains("TLS handshake with the upstream failed")
            && err.contains("upstream=wrongca")
            && err.contains("certificate verify failed")
    })
    .await;
    assert!(logged, "{}", gw.stderr());
    // The upstream requires a client certificate the pool does not present.
    assert_eq!(body_of(gw.url("/nocert")).await.0, 502);
    // Health checks speak TLS too: the good pool's target is healthy; with the wrong CA not.
    let healthy = eventually(Duration::from_secs(10), || async {
        let m = gw.metrics().await;
        m.contains("gatehouse_upstream_healthy{target=")
            && m.contains(&format!(
                "gatehouse_upstream_healthy{{target=\"127.0.0.1:{port}\",upstream=\"checked\"}} 0"
            ))
    })
    .await;
    let m = gw.metrics().await;
    assert!(healthy, "{m}");
    assert!(
        m.contains(&format!(
            "gatehouse_upstream_healthy{{target=\"127.0.0.1:{port}\",upstream=\"good\"}} 1"
        )),
        "{m}"
    );
}

#[test]
fn certificate_problems_are_reported_by_check() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = ca.server(&["a.test"], 30).write(dir.path(), "a");
    let (soon_c, soon_k) = ca.server(&["soon.test"], 3).write(dir.path(), "soon");
    let (_, other_k) = ca.server(&["b.test"], 30).write(dir.path(), "b");
    let base = "[[listeners]]\naddress = \"127.0.0.1:1\"\n";
    let (ok, _, stderr) = check_config(&format!(
        "{base}{}",
        certificates(&[("a", &c, &k), ("soon", &soon_c, &soon_k)])
    ));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: certificate \"soon\" expires in"),
        "{stderr}"
    );
    assert!(!stderr.contains("certificate \"a\""), "{stderr}");
    let (ok, _, stderr) = check_config(&format!(
        "{base}{}{}",
        certificates(&[("a", &c, &other_k)]),
        tls_listener(2, "default_certificate = \"nope\"")
    ));
    assert!(!ok);
    assert!(stderr.contains("FILE: certificates.a: "), "{stderr}");
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
    let (ok, _, stderr) = check_config(&format!(
        "{base}{}{}",
        certificates(&[("a", &c, &k)]),
        tls_listener(
            2,
            "default_certificate = \"nope\", client_auth = \"required\""
        )
    ));
    assert!(!ok);
    assert!(
        stderr.contains("listeners[1].tls.client_ca: client certificates need the CA bundle"),
        "{stderr}"
    );
    assert!(
        stderr.contains("listeners[1].tls.default_certificate: unknown certificate \"nope\""),
        "{stderr}"
    );
    // The listener's CA bundle is read by `check` too, not only when the listener starts.
    let (ok, _, stderr) = check_config(&format!(
        "{base}{}{}",
        certificates(&[("a", &c, &k)]),
        tls_listener(
            2,
            "default_certificate = \"a\", client_auth = \"required\", \
             client_ca = \"/nonexistent/ca.pem\""
        )
    ));
    assert!(!ok);
    assert!(
        stderr.contains("listeners[1].tls.client_ca: cannot read /nonexistent/ca.pem"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_after_a_proxy_protocol_header_names_the_client() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = ca.server(&["a.test"], 30).write(dir.path(), "a");
    let upstream = Upstream::echo().await;
    let port = free_port();
    let gw = Gateway::start(&format!(
        "{}proxy_protocol = true\n{}{}{ECHO_ROUTE}",
        tls_listener(port, ""),
        certificates(&[("a", &c, &k)]),
        single_pool_only(&upstream),
    ));
    let ca_pem = ca.pem();
    let (status, body, alpn, plain) = blocking(move || {
        let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n";
        let o = ClientOpts {
            sni: Some("a.test"),
            ca: Some(&ca_pem),
            alpn: Some(b"\x02h2\x08http/1.1"),
            prefix: Some(header),
            ..Default::default()
        };
        let h2 = connect(port, &o).unwrap();
        let alpn = h2.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
        let o = ClientOpts { alpn: None, ..o };
        let mut s = connect(port, &o).unwrap();
        assert_eq!(served_names(&s), ["a.test"]);
        let (status, _, body) = request(&mut s, "a.test", "/who", "").unwrap();
        // Without the header the ClientHello is not a PROXY header: closed.
        let plain = connect(port, &ClientOpts { prefix: None, ..o });
        (status, body, alpn, plain.is_ok())
    });
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.7");
    assert_eq!(
        alpn.as_deref(),
        Some(&b"h2"[..]),
        "ALPN still offers HTTP/2"
    );
    assert!(!plain, "a handshake without the PROXY header was accepted");
    // The access log writer flushes every 20 ms.
    let logged = eventually(Duration::from_secs(5), || async {
        gw.access_log()
            .iter()
            .any(|l| l["client_ip"] == "203.0.113.7")
    })
    .await;
    assert!(logged, "{:?}", gw.access_log());
}
