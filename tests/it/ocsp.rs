//! OCSP stapling through the real binary: certificates made by the `openssl` command line with
//! an Authority Information Access responder URL, a real `openssl ocsp` responder, and
//! `openssl s_client -status` seeing the staple in the handshake.

use crate::common::{eventually, free_port, metric_value, Gateway};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf for `staple.test` naming the responder on `port`, in `dir`: `ca.crt`,
/// `ca.key`, `chain.crt` (leaf then CA), `leaf.key`, and the responder's `index.txt`.
fn pki(dir: &Path, port: u16) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=ocsp test ca",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=staple.test",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:staple.test\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:{port}\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x51A9",
            "-days",
            "1",
            "-out",
            "leaf.crt",
            "-extfile",
            "ext.cnf",
        ],
    );
    let chain = [
        std::fs::read_to_string(dir.join("leaf.crt")).unwrap(),
        std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("chain.crt"), chain).unwrap();
    std::fs::write(
        dir.join("index.txt"),
        "V\t301231235959Z\t\t51A9\tunknown\t/CN=staple.test\n",
    )
    .unwrap();
}

/// `openssl ocsp` answering for the CA on `port`, responses valid for an hour, signed by the
/// CA itself.
fn responder(dir: &Path, port: u16) -> Child {
    responder_signed_by(dir, port, "ca")
}

/// The same, signing with `signer.crt`/`signer.key`.
fn responder_signed_by(dir: &Path, port: u16, signer: &str) -> Child {
    responder_for(
        dir,
        port,
        &dir.join("index.txt"),
        &dir.join("ca.crt"),
        &dir.join(format!("{signer}.crt")),
        &dir.join(format!("{signer}.key")),
    )
}

/// `openssl ocsp` on `port` answering from `index` for certificates `ca` issued, signed with
/// `signer` and its `key`; its log in `dir`.
pub fn responder_for(
    dir: &Path,
    port: u16,
    index: &Path,
    ca: &Path,
    signer: &Path,
    key: &Path,
) -> Child {
    let child = Command::new("openssl")
        .arg("ocsp")
        .arg("-index")
        .arg(index)
        .args(["-port", &port.to_string()])
        .arg("-rsigner")
        .arg(signer)
        .arg("-rkey")
        .arg(key)
        .arg("-CA")
        .arg(ca)
        .args(["-nmin", "60", "-ignore_err"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("responder.log")).unwrap())
        .spawn()
        .unwrap();
    // Ready once it says so: a probe connection that sends nothing would hold this
    // one-connection-at-a-time responder.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(dir.join("responder.log"))
        .unwrap_or_default()
        .contains("waiting for OCSP client connections")
    {
        assert!(
            Instant::now() < deadline,
            "the OCSP responder did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// `openssl s_client -status` against the gateway: its output, and how long it took.
fn handshake(tls: u16, dir: &Path) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{tls}"),
            "-servername",
            "staple.test",
            "-status",
            "-CAfile",
        ])
        .arg(dir.join("ca.crt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        started.elapsed(),
    )
}

fn stapled(out: &str) -> bool {
    out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good")
}

/// The gateway config: `top` first, a TLS listener on `tls` serving `dir`'s chain, one route.
fn serving(top: &str, tls: u16, dir: &Path) -> String {
    format!(
        "{top}[[listeners]]\naddress = \"127.0.0.1:{tls}\"\ntls = {{ }}\n\
         [certificates.staple]\ncert = \"{d}/chain.crt\"\nkey = \"{d}/leaf.key\"\n\
         [[routes]]\nname = \"r\"\npath = \"/\"\nrespond = {{}}\n",
        d = dir.display()
    )
}

/// Handshakes until one carries a good staple, for at most `wait`; the last one's output.
async fn until_stapled(tls: u16, dir: &Path, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    loop {
        let out = handshake(tls, dir).0;
        if stapled(&out) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_stapled_and_a_down_responder_never_blocks_a_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    pki(dir.path(), port);
    let tls = free_port();
    let body = serving("", tls, dir.path());
    // The responder is down at first: handshakes go on without a staple, and the failure is
    // counted and logged.
    let gw = Gateway::start(&body);
    let failed = eventually(Duration::from_secs(10), || async {
        let m = gw.metrics().await;
        metric_value(
            &m,
            "gatehouse_tls_ocsp_fetch_failures_total",
            &[("name", "staple")],
        ) >= 1.0
    })
    .await;
    assert!(failed, "{}", gw.metrics().await);
    let (out, took) = handshake(tls, dir.path());
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(gw.stderr().contains("OCSP fetch failed"), "{}", gw.stderr());

    // Once it answers, the next retry gets a response, and handshakes staple it.
    let mut up = responder(dir.path(), port);
    let out = until_stapled(tls, dir.path(), Duration::from_secs(15)).await;
    assert!(stapled(&out), "{out}\n{}", gw.stderr());
    assert!(gw.stderr().contains("OCSP fetch works again"));
    let m = gw.metrics().await;
    let expiry = metric_value(
        &m,
        "gatehouse_tls_ocsp_staple_expiry_timestamp_seconds",
        &[("name", "staple")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 3000.0 && expiry < now + 3700.0,
        "{expiry} {now}"
    );
    // The admin API lists the certificate with its issuer, expiry, source and staple.
    let listed = crate::common::get_json(gw.admin_url("/-/certificates")).await;
    let cert = &listed["certificates"][0];
    assert_eq!(cert["name"], "staple", "{listed}");
    assert_eq!(cert["hosts"], serde_json::json!(["staple.test"]));
    assert_eq!(cert["issuer"], "CN=ocsp test ca");
    assert_eq!(cert["source"], "file");
    assert!(cert["not_after"].as_i64().unwrap() > now as i64);
    assert_eq!(
        cert["ocsp"]["responder"],
        format!("http://127.0.0.1:{port}").as_str()
    );
    assert_eq!(cert["ocsp"]["stapled"], true);
    assert_eq!(cert["ocsp"]["next_update"].as_f64(), Some(expiry));

    // The responder goes away: the cached response is still stapled, without delay.
    up.kill().unwrap();
    up.wait().unwrap();
    let (out, took) = handshake(tls, dir.path());
    assert!(stapled(&out), "{out}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stapling_can_be_turned_off_and_a_revoked_certificate_is_not_stapled() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    pki(dir.path(), port);
    // The responder says the certificate is revoked.
    std::fs::write(
        dir.path().join("index.txt"),
        "R\t301231235959Z\t241231235959Z\t51A9\tunknown\t/CN=staple.test\n",
    )
    .unwrap();
    let mut up = responder(dir.path(), port);
    let tls = free_port();
    let body = |stapling: bool| {
        serving(
            &format!("[tls]\nocsp_stapling = {stapling}\n"),
            tls,
            dir.path(),
        )
    };
    let gw = Gateway::start(&body(true));
    let refused = eventually(Duration::from_secs(10), || async {
        gw.stderr().contains("the certificate is REVOKED")
    })
    .await;
    assert!(refused, "{}", gw.stderr());
    let (out, _) = handshake(tls, dir.path());
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    drop(gw);

    // Off: nothing is asked of the responder, even for a good certificate.
    std::fs::write(
        dir.path().join("index.txt"),
        "V\t301231235959Z\t\t51A9\tunknown\t/CN=staple.test\n",
    )
    .unwrap();
    let gw = Gateway::start(&body(false));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (out, _) = handshake(tls, dir.path());
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_tls_ocsp_fetch_failures_total",
            &[("name", "staple")]
        ),
        0.0
    );
    up.kill().unwrap();
    up.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_from_a_responder_the_ca_delegated_to_is_stapled() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    pki(dir.path(), port);
    // A responder certificate the CA issued for signing OCSP answers only.
    std::fs::write(
        dir.path().join("resp.cnf"),
        "extendedKeyUsage=OCSPSigning\n",
    )
    .unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "resp.key",
            "-out",
            "resp.csr",
            "-subj",
            "/CN=ocsp responder",
        ],
    );
    openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            "resp.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x77",
            "-days",
            "1",
            "-out",
            "resp.crt",
            "-extfile",
            "resp.cnf",
        ],
    );
    let mut up = responder_signed_by(dir.path(), port, "resp");
    let tls = free_port();
    let gw = Gateway::start(&serving("", tls, dir.path()));
    let out = until_stapled(tls, dir.path(), Duration::from_secs(10)).await;
    assert!(stapled(&out), "{out}\n{}", gw.stderr());
    assert!(out.contains("Responder Id: CN = ocsp responder"), "{out}");
    up.kill().unwrap();
    up.wait().unwrap();
}
