//! Automatic certificates through the real binary against a real ACME CA: Debian's `pebble`
//! with its own test PKI on loopback, `pebble-challtestsrv` as the DNS that points every name
//! at 127.0.0.1, and pebble validating HTTP-01 and TLS-ALPN-01 on the gateway's listeners.

use crate::common::{eventually, free_port, metric_value, Gateway};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A helper process that must not outlive the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pebble CA and its DNS server; both killed on drop.
struct Pebble {
    ca: Child,
    dns: Child,
    dir: tempfile::TempDir,
    acme_port: u16,
    management_port: u16,
    /// The external account binding pebble requires, if any: key id and MAC key.
    eab: Option<(&'static str, &'static str)>,
}

/// An external account pebble hands out.
const EAB: (&str, &str) = (
    "kid-1",
    "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
);

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.ca, &mut self.dns] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    /// Pebble validating on `http_port` (HTTP-01) and `tls_port` (TLS-ALPN-01), issuing
    /// certificates valid for `validity` seconds that name `ocsp_port`'s responder (none
    /// without: a port nobody serves would be asked, and could be another test's by then).
    fn start(http_port: u16, tls_port: u16, validity: u64, ocsp_port: Option<u16>) -> Self {
        Self::start_with(http_port, tls_port, validity, ocsp_port, None)
    }

    /// The same, requiring the external account binding `eab` for new accounts.
    fn start_with(
        http_port: u16,
        tls_port: u16,
        validity: u64,
        ocsp_port: Option<u16>,
        eab: Option<(&'static str, &'static str)>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS certificate, from a CA the gateway is told to trust.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble https test ca");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
                .unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join("https-ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

        let (acme_port, management_port, dns_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": ocsp_port.map_or(String::new(), |p| format!("http://127.0.0.1:{p}")),
            "externalAccountBindingRequired": eab.is_some(),
            "externalAccountMACKeys": eab.map(|(kid, key)| serde_json::json!({kid: key})),
            "certificateValidityPeriod": validity,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("dns.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ca = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates anew, renewals too.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let pebble = Self {
            ca,
            dns,
            dir,
            acme_port,
            management_port,
            eab,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", acme_port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", management_port)).is_err()
        {
            assert!(Instant::now() < deadline, "pebble: {}", pebble.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        pebble
    }

    fn log(&self) -> String {
        ["pebble.log", "pebble.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect()
    }

    /// Certificates pebble has issued so far.
    fn issued(&self) -> usize {
        self.log().matches("Issued certificate serial").count()
    }

    /// Stop the CA (its DNS stays).
    fn stop(&mut self) {
        let _ = self.ca.kill();
        let _ = self.ca.wait();
    }

    fn https_ca(&self) -> PathBuf {
        self.dir.path().join("https-ca.pem")
    }

    /// `[acme]` for this CA with `hosts`, `challenge` and `storage`.
    fn acme_section(&self, hosts: &[&str], challenge: &str, storage: &Path) -> String {
        let eab = self.eab.map_or(String::new(), |(kid, key)| {
            format!("external_account = {{ kid = \"{kid}\", hmac_key = \"{key}\" }}\n")
        });
        // Keys of [acme]: the binding goes after the section's other lines.
        format!(
            "[acme]\ndirectory = \"https://127.0.0.1:{port}/dir\"\nemail = \"ops@example.com\"\n\
             storage = \"{storage}\"\nca_bundle = \"{ca}\"\nchallenge = \"{challenge}\"\n\
             hosts = {hosts:?}\n",
            port = self.acme_port,
            storage = storage.display(),
            ca = self.https_ca().display(),
        ) + &eab
    }

    /// A PEM from pebble's management interface (`/roots/0`, `/intermediates/0`,
    /// `/intermediate-keys/0`), saved as `name` in its directory.
    async fn management(&self, path: &str, name: &str) -> PathBuf {
        let ca = std::fs::read(self.https_ca()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let pem = client
            .get(format!("https://127.0.0.1:{}{path}", self.management_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let file = self.dir.path().join(name);
        std::fs::write(&file, pem).unwrap();
        file
    }
}

/// The body of a gateway config: a plain listener on `http`, a TLS listener on `tls`, `top`.
fn listeners(http: u16, tls: u16, top: &str) -> String {
    format!(
        "{top}[[listeners]]\naddress = \"127.0.0.1:{http}\"\n\
         [[listeners]]\naddress = \"127.0.0.1:{tls}\"\ntls = {{ }}\n\
         [[routes]]\nname = \"r\"\npath = \"/\"\nrespond = {{ body = \"hello\" }}\n"
    )
}

/// `/-/certificates`' entry for `host`.
async fn listed(gw: &Gateway, host: &str) -> Value {
    let all = crate::common::get_json(gw.admin_url("/-/certificates")).await;
    all["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == host)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The SHA-256 the admin API lists for `host`'s certificate, once one is served.
async fn served(gw: &Gateway, host: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let entry = listed(gw, host).await;
        if let Some(sha) = entry["sha256"].as_str() {
            return Some(sha.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `openssl s_client` to `host` on `tls`, verifying against `root`: its output.
fn handshake(tls: u16, host: &str, root: &Path, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{tls}")])
        .args(["-servername", host, "-verify_hostname", host, "-showcerts"])
        .args(extra)
        .arg("-CAfile")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gatehouse_acme_orders_total` for `host` and `result` in the metrics text `m`.
fn orders(m: &str, host: &str, result: &str) -> f64 {
    metric_value(
        m,
        "gatehouse_acme_orders_total",
        &[("host", host), ("result", result)],
    )
}

/// Accept and drop every connection on `port` until the test ends.
fn refuse_on(port: u16) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let accepting = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for conn in accepting.incoming() {
            drop(conn);
        }
    });
    listener
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_a_restart_reuses_and_ocsp_staples() {
    let (http, tls, ocsp) = (free_port(), free_port(), free_port());
    let pebble = Pebble::start(http, tls, 3600, Some(ocsp));
    let storage = tempfile::tempdir().unwrap();
    let host = "shop.acme.test";
    // The host asks for its certificate in its [hosts] policy, which also redirects plain
    // HTTP to HTTPS: the CA's request is answered before the redirect.
    let policy = format!("[hosts.\"{host}\"]\nacme = true\nhttps_redirect = true\n");
    let acme = pebble.acme_section(&[], "http-01", storage.path());
    let body = listeners(http, tls, &format!("{acme}{policy}"));
    let gw = Gateway::start(&body);
    let sha = served(&gw, host, Duration::from_secs(60)).await;
    assert!(sha.is_some(), "{}\n{}", gw.stderr(), pebble.log());
    assert_eq!(pebble.issued(), 1);
    assert!(
        pebble.log().contains("Attempting to validate w/ HTTP"),
        "validated over HTTP-01: {}",
        pebble.log()
    );

    // The handshake shows the issued chain: the leaf and pebble's intermediate, verified
    // up to pebble's root for the name.
    let root = pebble.management("/roots/0", "root.pem").await;
    let out = handshake(tls, host, &root, &[]);
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("Pebble Intermediate"), "{out}");
    assert!(out.contains(" 1 s:"), "chain of two: {out}");
    let entry = listed(&gw, host).await;
    assert_eq!(entry["source"], "acme", "{entry}");
    assert_eq!(entry["acme"]["result"], "issued", "{entry}");
    assert!(
        entry["issuer"]
            .as_str()
            .unwrap()
            .contains("Pebble Intermediate"),
        "{entry}"
    );
    let m = gw.metrics().await;
    assert_eq!(orders(&m, host, "issued"), 1.0);
    assert!(
        metric_value(
            &m,
            "gatehouse_tls_certificate_expiry_timestamp_seconds",
            &[("name", host)]
        ) > 0.0
    );
    // The key and the account are readable by this user only.
    let key = storage
        .path()
        .join("certificates")
        .join(format!("{host}.key"));
    assert_eq!(mode(&key), 0o600);
    let account = std::fs::read_dir(storage.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .unwrap();
    assert_eq!(mode(&account.path()), 0o600);

    // OCSP: pebble's certificates name the responder on `ocsp`; an `openssl ocsp` signed by
    // pebble's intermediate answers for the issued serial, and handshakes staple it.
    let intermediate = pebble
        .management("/intermediates/0", "intermediate.pem")
        .await;
    let intermediate_key = pebble
        .management("/intermediate-keys/0", "intermediate.key")
        .await;
    let leaf = openssl::x509::X509::stack_from_pem(
        &std::fs::read(
            storage
                .path()
                .join("certificates")
                .join(format!("{host}.crt")),
        )
        .unwrap(),
    )
    .unwrap()
    .remove(0);
    let serial = leaf
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string();
    let index = pebble.dir.path().join("index.txt");
    std::fs::write(
        &index,
        format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN={host}\n"),
    )
    .unwrap();
    let _responder = KillOnDrop(crate::ocsp::responder_for(
        pebble.dir.path(),
        ocsp,
        &index,
        &intermediate,
        &intermediate,
        &intermediate_key,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out;
    loop {
        out = handshake(tls, host, &root, &["-status"]);
        if out.contains("Cert Status: good") || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        out.contains("OCSP Response Status: successful"),
        "{out}\n{}",
        gw.stderr()
    );
    assert!(out.contains("Cert Status: good"), "{out}");
    drop(gw);

    // A restart serves the stored certificate at once and orders nothing.
    let gw = Gateway::start(&body);
    let again = served(&gw, host, Duration::from_secs(10)).await;
    assert_eq!(again, sha);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pebble.issued(), 1, "{}", gw.stderr());
    assert_eq!(listed(&gw, host).await["acme"]["result"], "loaded");
    let m = gw.metrics().await;
    assert_eq!(orders(&m, host, "issued"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_short_lived_certificates_renew_and_a_down_ca_keeps_the_old_one() {
    let (http, tls) = (free_port(), free_port());
    // Thirty-second certificates: renewed about every twenty seconds, leaving ten for the
    // checks after a failed renewal.
    let mut pebble = Pebble::start(http, tls, 30, None);
    let storage = tempfile::tempdir().unwrap();
    let host = "alpn.acme.test";
    let body = listeners(
        http,
        tls,
        &pebble.acme_section(&[host], "tls-alpn-01", storage.path()),
    );
    let gw = Gateway::start(&body);
    let first = served(&gw, host, Duration::from_secs(60)).await;
    assert!(first.is_some(), "{}\n{}", gw.stderr(), pebble.log());
    // Validated through the TLS listener: nothing was asked over HTTP.
    assert!(
        !pebble.log().contains("validate w/ HTTP"),
        "{}",
        pebble.log()
    );
    let root = pebble.management("/roots/0", "root.pem").await;
    assert!(handshake(tls, host, &root, &[]).contains("Verify return code: 0 (ok)"));

    // Renewal: a new certificate is served to new handshakes without a restart.
    let renewed = eventually(Duration::from_secs(45), || async {
        served(&gw, host, Duration::ZERO).await != first
    })
    .await;
    assert!(renewed, "{}\n{}", gw.stderr(), pebble.log());
    let second = served(&gw, host, Duration::ZERO).await;
    let out = handshake(tls, host, &root, &[]);
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");

    // The CA goes away before the next renewal: the order fails, is counted and logged, and
    // the certificate being served stays.
    pebble.stop();
    // Its port stays taken, refusing every connection at once, so no other test's server
    // can get it while the gateway still dials it.
    let _held = refuse_on(pebble.acme_port);
    let failed = eventually(Duration::from_secs(45), || async {
        let m = gw.metrics().await;
        orders(&m, host, "failed") >= 1.0
    })
    .await;
    assert!(failed, "{}", gw.stderr());
    assert!(gw.stderr().contains("ACME order failed"), "{}", gw.stderr());
    assert_eq!(served(&gw, host, Duration::ZERO).await, second);
    let entry = listed(&gw, host).await;
    assert_eq!(entry["acme"]["result"], "failed", "{entry}");
    assert!(entry["acme"]["error"].as_str().is_some(), "{entry}");
    let out = handshake(tls, host, &root, &[]);
    assert!(out.contains("BEGIN CERTIFICATE"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_storage_make_one_order() {
    let (http, tls) = (free_port(), free_port());
    // This CA also requires an external account binding.
    let pebble = Pebble::start_with(http, tls, 3600, None, Some(EAB));
    let storage = tempfile::tempdir().unwrap();
    let host = "shared.acme.test";
    let acme = pebble.acme_section(&[host], "http-01", storage.path());
    // The CA validates only at the second instance, and the first one orders (it takes the
    // lock first): the challenge reaches the CA through the shared storage.
    let two = Gateway::start(&listeners(free_port(), free_port(), &acme));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one = Gateway::start(&listeners(http, tls, &acme));
    let a = served(&one, host, Duration::from_secs(60)).await;
    let b = served(&two, host, Duration::from_secs(20)).await;
    assert!(
        a.is_some(),
        "{}\n{}\n{}",
        one.stderr(),
        two.stderr(),
        pebble.log()
    );
    assert_eq!(a, b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pebble.issued(), 1, "{}", pebble.log());
    assert_eq!(
        orders(&two.metrics().await, host, "issued"),
        1.0,
        "{}",
        two.stderr()
    );
    assert_eq!(
        orders(&one.metrics().await, host, "issued"),
        0.0,
        "{}",
        one.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_a_certificate_is_issued_the_default_serves_and_the_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::pki::Ca::new("file ca")
        .server(&["fallback.test"], 30)
        .write(dir.path(), "fallback");
    let (http, tls) = (free_port(), free_port());
    // Nothing answers at the directory's address (port 1: no test's port 0 bind gets it).
    let body = format!(
        "[acme]\ndirectory = \"https://127.0.0.1:1/dir\"\nstorage = \"{storage}\"\n\
         hosts = [\"new.acme.test\"]\n\
         [certificates.fallback]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [[listeners]]\naddress = \"127.0.0.1:{http}\"\n\
         [[listeners]]\naddress = \"127.0.0.1:{tls}\"\ntls = {{ default_certificate = \"fallback\" }}\n\
         [[routes]]\nname = \"r\"\npath = \"/\"\nrespond = {{}}\n",
        storage = dir.path().join("acme").display(),
        cert = cert.display(),
        key = key.display(),
    );
    let gw = Gateway::start(&body);
    let failed = eventually(Duration::from_secs(15), || async {
        listed(&gw, "new.acme.test").await["acme"]["result"] == "failed"
    })
    .await;
    assert!(failed, "{}", gw.stderr());
    let entry = listed(&gw, "new.acme.test").await;
    assert_eq!(entry["source"], "acme");
    assert!(entry["not_after"].is_null(), "{entry}");
    assert!(
        entry["acme"]["next_attempt"].as_i64().unwrap() > entry["acme"]["at"].as_i64().unwrap()
    );
    assert!(gw.stderr().contains("ACME order failed"));
    let m = gw.metrics().await;
    assert_eq!(orders(&m, "new.acme.test", "failed"), 1.0);
    // The retry time is shared: another instance on the same storage waits for it too
    // instead of failing its own order at once (CAs limit failed validations per name).
    let retry = std::fs::read_to_string(dir.path().join("acme/locks/new.acme.test.retry")).unwrap();
    assert!(retry.trim().ends_with(" 60"), "{retry}");
    let other = body
        .replace(
            &format!("127.0.0.1:{http}"),
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(
            &format!("127.0.0.1:{tls}"),
            &format!("127.0.0.1:{}", free_port()),
        );
    let second = Gateway::start(&other);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = second.metrics().await;
    assert!(
        !m.contains("gatehouse_acme_orders_total{"),
        "{}",
        second.stderr()
    );
    drop(second);
    // The name is served by the listener's default certificate meanwhile (its own file
    // stands in for a CA bundle: the subject is printed whether it verifies or not).
    let out = handshake(tls, "new.acme.test", &cert, &[]);
    assert!(
        out.contains("CN=fallback.test") || out.contains("CN = fallback.test"),
        "{out}"
    );
}
