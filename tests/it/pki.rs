//! Certificates for the TLS tests, generated with rcgen, and a TLS client built on openssl
//! that reports what the server presented.

#![allow(dead_code)]

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A certificate authority that issues server and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and key in PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// Write `NAME.crt` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, &self.cert).unwrap();
        std::fs::write(&k, &self.key).unwrap();
        (c, k)
    }

    /// SHA-256 of the leaf, lowercase hex (what gatehouse forwards for client certificates).
    pub fn fingerprint(&self) -> String {
        let x = X509::from_pem(self.cert.as_bytes()).unwrap();
        hex(&x.digest(openssl::hash::MessageDigest::sha256()).unwrap())
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names`, valid for `days` from now.
    pub fn server(&self, names: &[&str], days: i64) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client certificate with subject `CN=cn,O=org`.
    pub fn client(&self, cn: &str, org: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// How the test client connects.
#[derive(Default)]
pub struct ClientOpts<'a> {
    pub sni: Option<&'a str>,
    /// CA to verify the server with; `None` skips verification.
    pub ca: Option<&'a str>,
    pub max_version: Option<SslVersion>,
    pub alpn: Option<&'a [u8]>,
    pub client: Option<&'a Issued>,
    /// Bytes sent before the handshake (a PROXY protocol header).
    pub prefix: Option<&'a [u8]>,
}

/// A TLS connection to 127.0.0.1:`port`.
pub fn connect(port: u16, o: &ClientOpts) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    match o.ca {
        Some(pem) => {
            let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
            store
                .add_cert(X509::from_pem(pem.as_bytes()).unwrap())
                .unwrap();
            b.set_cert_store(store.build());
        }
        None => b.set_verify(SslVerifyMode::NONE),
    }
    if let Some(v) = o.max_version {
        // Let the client offer old versions at all (OpenSSL 3 refuses them at level 1+).
        b.set_security_level(0);
        b.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        b.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
        b.set_max_proto_version(Some(v)).unwrap();
    }
    if let Some(alpn) = o.alpn {
        b.set_alpn_protos(alpn).unwrap();
    }
    if let Some(c) = o.client {
        let cert = X509::from_pem(c.cert.as_bytes()).unwrap();
        let key = openssl::pkey::PKey::private_key_from_pem(c.key.as_bytes()).unwrap();
        b.set_certificate(&cert).unwrap();
        b.set_private_key(&key).unwrap();
    }
    let mut config = b.build().configure().unwrap();
    match o.sni {
        Some(_) => {}
        None => config.set_use_server_name_indication(false),
    }
    config.set_verify_hostname(o.sni.is_some() && o.ca.is_some());
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if let Some(prefix) = o.prefix {
        std::io::Write::write_all(&mut tcp, prefix).map_err(|e| e.to_string())?;
    }
    config
        .connect(o.sni.unwrap_or("none"), tcp)
        .map_err(|e| e.to_string())
}

/// DNS names of the certificate the server presented.
pub fn served_names(s: &SslStream<TcpStream>) -> Vec<String> {
    let cert = s.ssl().peer_certificate().unwrap();
    cert.subject_alt_names()
        .map(|n| {
            n.iter()
                .filter_map(|g| g.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// SHA-256 of the certificate the server presented.
pub fn served_fingerprint(s: &SslStream<TcpStream>) -> String {
    let cert = s.ssl().peer_certificate().unwrap();
    hex(&cert.digest(openssl::hash::MessageDigest::sha256()).unwrap())
}

/// One HTTP/1.1 request on an open connection (kept alive); returns status, head and body.
pub fn request(
    s: &mut SslStream<TcpStream>,
    host: &str,
    path: &str,
    extra: &str,
) -> Result<(u16, String, String), String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = text[end + 4..end + 4 + len].to_string();
                return Ok((status, head.to_string(), body));
            }
        }
    }
    Err(format!(
        "connection closed: {}",
        String::from_utf8_lossy(&buf)
    ))
}
