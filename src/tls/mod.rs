//! TLS: certificates chosen by SNI (exact, then `*.wildcard`, then the listener's default),
//! loaded with every config load so a reload picks up replaced files; listener settings;
//! certificates issued by an ACME CA; per-domain HTTPS policies; the TLS facts a request
//! carries (SNI, verified client certificate); TLS to upstreams.

pub mod accept;
pub mod acme;
pub mod listener;
pub mod ocsp;
pub mod policy;
pub mod upstream;

use crate::config::{CertificateConfig, ConfigError, KeyPath, TlsConfig};
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One certificate chain with its key.
pub struct CertEntry {
    pub name: String,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// Unix seconds of the leaf's notAfter.
    pub not_after: i64,
    /// Names it is served for (lowercase; `*.example.com` for wildcards).
    pub hosts: Vec<String>,
    /// SHA-256 of the leaf: the key of its OCSP staple.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertEntry")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Certificates by name and by the hosts they serve.
#[derive(Default)]
pub struct CertStore {
    by_name: HashMap<String, Arc<CertEntry>>,
    exact: HashMap<String, Arc<CertEntry>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertEntry>>,
    /// Every certificate and key file read, for the file watch.
    pub files: Vec<PathBuf>,
    /// Hash of exactly the bytes these certificates were built from (see
    /// `hash::fold_hash`): the watch compares the files' current content with it.
    pub content_hash: u64,
}

impl CertStore {
    /// The certificate for an SNI name: exact, else a wildcard covering exactly one more
    /// label (RFC 6125: `*.example.com` covers `a.example.com`, not `a.b.example.com`).
    pub fn lookup(&self, sni: &str) -> Option<&Arc<CertEntry>> {
        // The same normalization as route hosts (case, trailing dot).
        let sni = crate::host::host_key(sni);
        self.exact.get(sni.as_ref()).or_else(|| {
            let (_, parent) = sni.split_once('.')?;
            self.wildcard.get(parent)
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CertEntry>> {
        self.by_name.get(name)
    }

    /// The certificate a handshake gets: the one for `sni`, else the one named `default`.
    pub fn pick(&self, sni: Option<&str>, default: Option<&str>) -> Option<&Arc<CertEntry>> {
        sni.and_then(|name| self.lookup(name))
            .or_else(|| default.and_then(|n| self.get(n)))
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<CertEntry>> {
        self.by_name.values()
    }
}

/// A PEM bundle of certificates (CAs to trust).
pub fn read_certificates(path: &Path) -> Result<Vec<X509>, CertError> {
    let pem = read(path)?;
    let certs = X509::stack_from_pem(&pem).map_err(|_| CertError::NotPem(path.into()))?;
    if certs.is_empty() {
        return Err(CertError::Empty(path.into()));
    }
    Ok(certs)
}

/// Why a certificate, key or CA file could not be used. Messages name the file; none quotes
/// file content (a key's parse error could).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate chain", .0.display())]
    NotPem(PathBuf),
    #[error("{}: no certificate in the file", .0.display())]
    Empty(PathBuf),
    #[error("{}: not a PEM private key", .0.display())]
    NotPemKey(PathBuf),
    #[error("{} does not belong to the certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: unreadable validity dates", .0.display())]
    Dates(PathBuf),
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.into(),
        source,
    })
}

/// A verification store trusting exactly `certs`.
pub fn trust_store(
    certs: &[X509],
) -> Result<openssl::x509::store::X509Store, openssl::error::ErrorStack> {
    let mut store = openssl::x509::store::X509StoreBuilder::new()?;
    for cert in certs {
        store.add_cert(cert.clone())?;
    }
    Ok(store.build())
}

/// Seconds since the Unix epoch of an ASN.1 time.
fn unix_of(t: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let d = Asn1Time::from_unix(0).ok()?.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// SHA-256 of a certificate's DER: [`CertEntry::fingerprint`].
fn fingerprint(cert: &openssl::x509::X509Ref) -> Result<[u8; 32], openssl::error::ErrorStack> {
    let mut out = [0u8; 32];
    out.copy_from_slice(&cert.digest(openssl::hash::MessageDigest::sha256())?);
    Ok(out)
}

/// The DNS names of a certificate (SAN, else the subject CN), lowercase.
fn dns_names(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase())),
        );
    }
    names
}

/// Read a PEM chain and its key, and check that they belong together.
pub fn load_pair(name: &str, cert: &Path, key: &Path) -> Result<CertEntry, CertError> {
    let (cert_pem, key_pem) = read_pair(cert, key)?;
    parse_pair(name, cert, key, &cert_pem, &key_pem)
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    Ok((read(cert)?, read(key)?))
}

fn parse_pair(
    name: &str,
    cert: &Path,
    key: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertEntry, CertError> {
    let chain = X509::stack_from_pem(cert_pem).map_err(|_| CertError::NotPem(cert.into()))?;
    let leaf = chain.first().ok_or_else(|| CertError::Empty(cert.into()))?;
    // The parse error is not shown: it could quote key material.
    let key_parsed =
        PKey::private_key_from_pem(key_pem).map_err(|_| CertError::NotPemKey(key.into()))?;
    let matches = leaf
        .public_key()
        .map(|p| p.public_eq(&key_parsed))
        .unwrap_or(false);
    if !matches {
        return Err(CertError::KeyMismatch {
            cert: cert.into(),
            key: key.into(),
        });
    }
    Ok(CertEntry {
        name: name.to_string(),
        // Only the staple cache is keyed by it; a digest OpenSSL cannot make staples nothing.
        fingerprint: fingerprint(leaf).unwrap_or([0; 32]),
        not_after: unix_of(leaf.not_after()).ok_or_else(|| CertError::Dates(cert.into()))?,
        hosts: dns_names(leaf),
        chain,
        key: key_parsed,
    })
}

/// Pairs `NAME.crt` + `NAME.key` found in a directory.
fn dir_pairs(dir: &Path) -> Result<BTreeMap<String, (PathBuf, PathBuf)>, CertError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CertError::Read {
        path: dir.into(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("crt") {
            continue;
        }
        let key = path.with_extension("key");
        if let (Some(stem), true) = (path.file_stem().and_then(|s| s.to_str()), key.exists()) {
            out.insert(stem.to_string(), (path.clone(), key));
        }
    }
    Ok(out)
}

/// Load every certificate of the config, reporting each file's problem under its key.
pub fn compile(
    certificates: &BTreeMap<String, CertificateConfig>,
    tls: &TlsConfig,
) -> Result<CertStore, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut store = CertStore::default();
    let dir_key = KeyPath::top("tls").key("certificate_dir");
    let mut sources: Vec<(KeyPath, String, PathBuf, PathBuf, Vec<String>)> = certificates
        .iter()
        .map(|(name, c)| {
            let key = KeyPath::top("certificates").key(name);
            (
                key,
                name.clone(),
                c.cert.clone(),
                c.key.clone(),
                c.hosts.clone(),
            )
        })
        .collect();
    if let Some(dir) = &tls.certificate_dir {
        match dir_pairs(dir) {
            Ok(pairs) => {
                for (name, (cert, key)) in pairs {
                    if certificates.contains_key(&name) {
                        errors.push(ConfigError::new(
                            dir_key.clone(),
                            format!("{name}.crt: certificate {name:?} is also in [certificates]"),
                        ));
                        continue;
                    }
                    sources.push((dir_key.clone(), name, cert, key, Vec::new()));
                }
            }
            Err(e) => errors.push(ConfigError::new(dir_key.clone(), e.to_string())),
        }
    }
    for (key, name, cert, key_file, hosts) in sources {
        store.files.push(cert.clone());
        store.files.push(key_file.clone());
        // Hash what is parsed, not a second read: a file replaced in between would otherwise
        // look loaded while the old certificate serves.
        let loaded = read_pair(&cert, &key_file).and_then(|(c, k)| {
            store.content_hash = crate::hash::fold_hash(store.content_hash, &c);
            store.content_hash = crate::hash::fold_hash(store.content_hash, &k);
            parse_pair(&name, &cert, &key_file, &c, &k)
        });
        let mut entry = match loaded {
            Ok(e) => e,
            Err(e) => {
                errors.push(ConfigError::new(key, e.to_string()));
                continue;
            }
        };
        if !hosts.is_empty() {
            entry.hosts = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        }
        if entry.hosts.is_empty() {
            errors.push(ConfigError::new(
                key,
                "the certificate names no DNS host; set `hosts`",
            ));
            continue;
        }
        let entry = Arc::new(entry);
        for host in &entry.hosts {
            let (table, k) = match host.strip_prefix("*.") {
                Some(suffix) => (&mut store.wildcard, suffix.to_string()),
                None => (&mut store.exact, host.clone()),
            };
            if let Some(other) = table.insert(k, entry.clone()) {
                errors.push(ConfigError::new(
                    key.clone(),
                    format!("{host} is also served by certificate {:?}", other.name),
                ));
            }
        }
        store.by_name.insert(name, entry);
    }
    if errors.is_empty() {
        Ok(store)
    } else {
        Err(errors)
    }
}

/// Certificates that expire within `within` seconds of `now` (Unix seconds), for
/// `gatehouse check` and the log.
pub fn expiring(store: &CertStore, now: i64, within: i64) -> Vec<String> {
    let mut out: Vec<String> = store
        .entries()
        .filter(|e| e.not_after - now < within)
        .map(|e| {
            let days = (e.not_after - now) as f64 / 86_400.0;
            if days < 0.0 {
                format!("certificate {:?} expired {:.1} days ago", e.name, -days)
            } else {
                format!("certificate {:?} expires in {days:.1} days", e.name)
            }
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_dir_loads_pairs_and_sni_picks_among_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_key) = pair(&["a.example.com"]);
        let (w, w_key) = pair(&["*.example.org"]);
        std::fs::write(dir.path().join("a.crt"), a).unwrap();
        std::fs::write(dir.path().join("a.key"), a_key).unwrap();
        std::fs::write(dir.path().join("w.crt"), w).unwrap();
        std::fs::write(dir.path().join("w.key"), w_key).unwrap();
        // A certificate without its key is skipped, not an error.
        std::fs::write(dir.path().join("lonely.crt"), pair(&["l.example.com"]).0).unwrap();
        let tls = TlsConfig {
            certificate_dir: Some(dir.path().to_path_buf()),
            ..TlsConfig::default()
        };
        let store = compile(&BTreeMap::new(), &tls).unwrap();
        assert_eq!(store.lookup("A.example.com.").unwrap().name, "a");
        assert_eq!(store.lookup("x.example.org").unwrap().name, "w");
        assert!(
            store.lookup("x.y.example.org").is_none(),
            "one label per RFC 6125"
        );
        assert!(store.lookup("l.example.com").is_none());
        assert_eq!(store.files.len(), 4);
        assert_ne!(store.content_hash, 0);
    }

    #[test]
    fn two_certificates_for_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["one", "two"] {
            let (c, k) = pair(&["same.example.com"]);
            std::fs::write(dir.path().join(format!("{n}.crt")), c).unwrap();
            std::fs::write(dir.path().join(format!("{n}.key")), k).unwrap();
        }
        let tls = TlsConfig {
            certificate_dir: Some(dir.path().to_path_buf()),
            ..TlsConfig::default()
        };
        let errors = compile(&BTreeMap::new(), &tls).err().unwrap();
        assert!(
            errors[0].message.contains("is also served by certificate"),
            "{errors:?}"
        );
    }
}
