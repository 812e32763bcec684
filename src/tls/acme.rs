//! ACME (RFC 8555) pieces that handshakes, the proxy and the ordering service share: the
//! certificates issued so far and the challenges being answered ([`AcmeState`]), the files of
//! the storage directory ([`Storage`]), keys, CSRs and TLS-ALPN-01 certificates, and when a
//! certificate is renewed. The ordering itself is `services::acme`.

use super::{CertEntry, CertError};
use crate::config::{AcmeChallenge, AcmeConfig, Config};
use arc_swap::ArcSwap;
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Extension, X509NameBuilder, X509ReqBuilder, X509};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ALPN_PROTOCOL: &[u8] = b"acme-tls/1";
/// Where HTTP-01 tokens are fetched (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// A lock older than this belongs to an instance that died mid-order.
pub const STALE_LOCK_SECS: u64 = 600;

/// What `[acme]` and `[hosts."NAME"] acme = true` ask for, as the ordering service uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmePlan {
    pub directory: String,
    /// `mailto:` URIs.
    pub contact: Vec<String>,
    /// Key id and the decoded MAC key.
    pub external_account: Option<(String, Vec<u8>)>,
    pub storage: PathBuf,
    /// Exact lowercase names, sorted, without duplicates.
    pub hosts: Vec<String>,
    pub challenge: AcmeChallenge,
    pub ca_bundle: Option<PathBuf>,
}

impl AcmePlan {
    /// The plan of `config`; `None` without `[acme]`. Validation has checked every value.
    pub fn of(config: &Config) -> Option<Self> {
        let a: &AcmeConfig = config.acme.as_ref()?;
        let mut hosts: Vec<String> = a
            .hosts
            .iter()
            .map(String::as_str)
            .chain(
                config
                    .hosts
                    .iter()
                    .filter(|(_, h)| h.acme)
                    .map(|(n, _)| n.as_str()),
            )
            .map(|h| crate::host::host_key(h).into_owned())
            .collect();
        hosts.sort();
        hosts.dedup();
        Some(Self {
            directory: a.directory.clone(),
            contact: a
                .email
                .iter()
                .map(|e| format!("mailto:{}", e.trim_start_matches("mailto:")))
                .collect(),
            external_account: a
                .external_account
                .as_ref()
                .and_then(|e| Some((e.kid.clone(), e.mac_key()?))),
            storage: a.storage.clone(),
            hosts,
            challenge: a.challenge,
            ca_bundle: a.ca_bundle.clone(),
        })
    }
}

/// Problems with the files `[acme]` names, for `check`, startup and reloads.
pub fn file_problems(config: &Config) -> Vec<crate::config::ConfigError> {
    let Some(bundle) = config.acme.as_ref().and_then(|a| a.ca_bundle.as_ref()) else {
        return Vec::new();
    };
    match super::read_certificates(bundle) {
        Ok(_) => Vec::new(),
        Err(e) => vec![crate::config::ConfigError::new(
            crate::config::KeyPath::top("acme").key("ca_bundle"),
            e.to_string(),
        )],
    }
}

/// How the last attempt for a host went, for the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostStatus {
    /// `issued`, `loaded` (from storage), `failed` or `waiting` (another instance orders).
    pub result: &'static str,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds of the last attempt or pickup.
    pub at: i64,
    /// Unix seconds when the certificate is renewed next (or the next retry).
    pub next_attempt: i64,
}

/// A TLS-ALPN-01 answer: the key authorization it was made for, and its certificate.
struct AlpnAnswer {
    key_authorization: Arc<str>,
    certificate: Arc<CertEntry>,
}

/// Issued certificates and open challenges, read by handshakes and requests without a lock
/// (copy-on-write maps: they change a few times a month).
#[derive(Default)]
pub struct AcmeState {
    certificates: ArcSwap<HashMap<String, Arc<CertEntry>>>,
    /// HTTP-01: token to key authorization.
    tokens: ArcSwap<HashMap<String, Arc<str>>>,
    /// TLS-ALPN-01: host to its challenge certificate.
    alpn: ArcSwap<HashMap<String, Arc<AlpnAnswer>>>,
    /// Per host; read by the admin API, written by the ordering service.
    status: Mutex<BTreeMap<String, HostStatus>>,
}

impl AcmeState {
    /// The issued certificate for `host`.
    pub fn certificate(&self, host: &str) -> Option<Arc<CertEntry>> {
        let map = self.certificates.load();
        if map.is_empty() {
            return None;
        }
        map.get(crate::host::host_key(host).as_ref()).cloned()
    }

    /// Serve `entry` for its host from the next handshake on.
    pub fn set_certificate(&self, host: &str, entry: Arc<CertEntry>) {
        self.certificates.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(host.to_string(), entry.clone());
            m
        });
    }

    /// Stop serving certificates for hosts no longer managed.
    pub fn retain_hosts(&self, hosts: &[String]) {
        if self.certificates.load().keys().all(|h| hosts.contains(h)) {
            return;
        }
        self.certificates.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|h, _| hosts.contains(h));
            m
        });
        if let Ok(mut s) = self.status.lock() {
            s.retain(|h, _| hosts.contains(h));
        }
    }

    /// Every issued certificate being served.
    pub fn certificates(&self) -> Vec<Arc<CertEntry>> {
        self.certificates.load().values().cloned().collect()
    }

    /// The key authorization to answer a `GET` of `path`, if it is an open HTTP-01 token.
    pub fn http01(&self, path: &str) -> Option<Arc<str>> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        let map = self.tokens.load();
        map.get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `sni`, if its validation is open.
    pub fn alpn_certificate(&self, sni: &str) -> Option<Arc<CertEntry>> {
        let map = self.alpn.load();
        map.get(crate::host::host_key(sni).as_ref())
            .map(|a| a.certificate.clone())
    }

    /// Answer exactly `challenges` (from the storage directory, shared by every instance).
    /// TLS-ALPN-01 certificates are made only for new key authorizations.
    pub fn set_challenges(&self, challenges: &Challenges) {
        let tokens: HashMap<String, Arc<str>> = challenges
            .http01
            .iter()
            .map(|(t, k)| (t.clone(), Arc::from(k.as_str())))
            .collect();
        if **self.tokens.load() != tokens {
            self.tokens.store(Arc::new(tokens));
        }
        let current = self.alpn.load();
        let unchanged = current.len() == challenges.tls_alpn01.len()
            && challenges
                .tls_alpn01
                .iter()
                .all(|(h, k)| current.get(h).is_some_and(|a| *a.key_authorization == **k));
        if unchanged {
            return;
        }
        let mut alpn = HashMap::new();
        for (host, key_authorization) in &challenges.tls_alpn01 {
            let reuse = current
                .get(host)
                .filter(|a| *a.key_authorization == **key_authorization)
                .cloned();
            let answer = match reuse {
                Some(a) => a,
                None => match challenge_certificate(host, key_authorization) {
                    Ok(certificate) => Arc::new(AlpnAnswer {
                        key_authorization: Arc::from(key_authorization.as_str()),
                        certificate: Arc::new(certificate),
                    }),
                    Err(e) => {
                        tracing::warn!(host, error = %e, "cannot make the TLS-ALPN-01 certificate");
                        continue;
                    }
                },
            };
            alpn.insert(host.clone(), answer);
        }
        self.alpn.store(Arc::new(alpn));
    }

    pub fn set_status(&self, host: &str, status: HostStatus) {
        if let Ok(mut s) = self.status.lock() {
            s.insert(host.to_string(), status);
        }
    }

    pub fn status(&self, host: &str) -> Option<HostStatus> {
        self.status.lock().ok()?.get(host).cloned()
    }
}

/// Open challenges as the storage directory holds them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Challenges {
    /// Token to key authorization.
    pub http01: BTreeMap<String, String>,
    /// Host to key authorization.
    pub tls_alpn01: BTreeMap<String, String>,
}

/// A fresh ECDSA P-256 key, the key type every ACME CA issues for.
pub fn new_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// `CN=host`, or an empty subject for a name longer than a CommonName may be (64
/// characters): the SANs carry the names anyway.
fn subject(host: &str) -> Result<openssl::x509::X509Name, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    if !host.is_empty() && host.len() <= 64 {
        name.append_entry_by_nid(Nid::COMMONNAME, host)?;
    }
    Ok(name.build())
}

/// A DER certificate signing request for `hosts`, signed with `key`.
pub fn csr_der(
    key: &PKey<Private>,
    hosts: &[String],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut req = X509ReqBuilder::new()?;
    let name = subject(hosts.first().map_or("", String::as_str))?;
    req.set_subject_name(&name)?;
    let mut san = SubjectAlternativeName::new();
    for h in hosts {
        san.dns(h);
    }
    let mut extensions = Stack::new()?;
    extensions.push(san.build(&req.x509v3_context(None))?)?;
    req.add_extensions(&extensions)?;
    req.set_pubkey(key)?;
    req.sign(key, MessageDigest::sha256())?;
    req.build().to_der()
}

/// The self-signed certificate a TLS-ALPN-01 validation must see for `host` (RFC 8737
/// section 3): the name as its only SAN and the critical `acmeIdentifier` extension holding
/// the SHA-256 of the key authorization.
pub fn challenge_certificate(
    host: &str,
    key_authorization: &str,
) -> Result<CertEntry, openssl::error::ErrorStack> {
    let key = new_key()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let name = subject(host)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(7)?)?;
    let san = SubjectAlternativeName::new()
        .dns(host)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    let digest = openssl::sha::sha256(key_authorization.as_bytes());
    // The extension's value is the DER of an OCTET STRING holding the digest.
    let mut value = vec![0x04, 0x20];
    value.extend_from_slice(&digest);
    let oid = Asn1Object::from_str("1.3.6.1.5.5.7.1.31")?;
    let value = Asn1OctetString::new_from_bytes(&value)?;
    b.append_extension(X509Extension::new_from_der(&oid, true, &value)?)?;
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    Ok(CertEntry {
        name: format!("acme-tls-alpn:{host}"),
        not_after: 0,
        hosts: vec![host.to_string()],
        fingerprint: super::fingerprint(&cert)?,
        chain: vec![cert],
        key,
    })
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its
/// lifetime, moved earlier by `jitter` (0..1) times a twentieth of it, so that instances and
/// hosts issued together do not all renew in the same second.
pub fn renewal_time(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let spread = (lifetime as f64 / 20.0 * jitter.clamp(0.0, 1.0)) as i64;
    not_before + lifetime * 2 / 3 - spread
}

/// The moment `fraction` (0..1) of the way through a renewal window the CA suggested
/// (RFC 9773 section 4.2: a uniformly random point in it).
pub fn in_window(start: i64, end: i64, fraction: f64) -> i64 {
    start + ((end - start).max(0) as f64 * fraction.clamp(0.0, 1.0)) as i64
}

/// The ARI certificate identifier (RFC 9773 section 4.1): the base64url `keyIdentifier` of
/// the leaf's Authority Key Identifier and of its serial number's DER content octets.
pub fn ari_identifier(entry: &CertEntry) -> Option<(String, String)> {
    use base64::Engine;
    let leaf = entry.chain.first()?;
    let aki = leaf.authority_key_id()?.as_slice().to_vec();
    let mut serial = leaf.serial_number().to_bn().ok()?.to_vec();
    // DER INTEGERs are two's complement: a leading 1 bit needs a zero octet before it.
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Some((b64.encode(aki), b64.encode(serial)))
}

/// Unix seconds of the leaf's notBefore.
pub fn not_before(entry: &CertEntry) -> Option<i64> {
    super::unix_of(entry.chain.first()?.not_before())
}

/// The storage directory: `account-<id>.json` per CA directory, `certificates/HOST.crt` and
/// `.key`, `locks/HOST.lock` while an instance orders, `challenges/http-01/TOKEN` and
/// `challenges/tls-alpn-01/HOST` while a validation is open. Keys and the account are 0600.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

/// An order lock; removed when dropped, unless another instance took it over meanwhile.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    /// Written into the file: whose lock it is.
    owner: String,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|o| o.trim() == self.owner);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A name no other process or instance writes at the same time: instances in containers
/// often share a pid.
fn unique() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = crate::clock::unix_nanos();
    let mut seed = [0u8; 8];
    let _ = openssl::rand::rand_bytes(&mut seed);
    format!(
        "{}-{nanos:x}-{n}-{}",
        std::process::id(),
        crate::text::hex(&seed)
    )
}

impl Storage {
    pub fn new(root: &Path) -> Self {
        Self { root: root.into() }
    }

    /// The account file for the CA at `directory`: one account per CA.
    pub fn account_file(&self, directory: &str) -> PathBuf {
        let id = crate::text::hex(&openssl::sha::sha256(directory.as_bytes())[..6]);
        self.root.join(format!("account-{id}.json"))
    }

    pub fn certificate_files(&self, host: &str) -> (PathBuf, PathBuf) {
        let dir = self.root.join("certificates");
        (
            dir.join(format!("{host}.crt")),
            dir.join(format!("{host}.key")),
        )
    }

    /// The stored certificate for `host`; `None` when there is none yet.
    pub fn load(&self, host: &str) -> Result<Option<CertEntry>, CertError> {
        let (cert, key) = self.certificate_files(host);
        if !cert.exists() {
            return Ok(None);
        }
        let mut entry = super::load_pair(host, &cert, &key)?;
        entry.hosts = vec![host.to_string()];
        Ok(Some(entry))
    }

    /// When the stored certificate of `host` last changed (to notice another instance's).
    pub fn modified(&self, host: &str) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.certificate_files(host).0)
            .and_then(|m| m.modified())
            .ok()
    }

    /// Store a certificate chain and its key: the key first, each written whole and renamed
    /// into place, so a reader never sees half a file.
    pub fn save(&self, host: &str, chain_pem: &[u8], key_pem: &[u8]) -> std::io::Result<()> {
        let (cert, key) = self.certificate_files(host);
        write_private(&key, key_pem)?;
        write_file(&cert, chain_pem, 0o644)
    }

    /// Write a file only this user may read.
    pub fn write_private(&self, path: &Path, content: &[u8]) -> std::io::Result<()> {
        write_private(path, content)
    }

    /// Take the lock `name` (a host, or `_account`): `None` while another live instance
    /// holds it. A lock older than [`STALE_LOCK_SECS`] is taken over by renaming it away
    /// first, so of several instances seeing it stale only one takes it.
    pub fn lock(&self, name: &str) -> std::io::Result<Option<Lock>> {
        let dir = self.root.join("locks");
        create_dir(&dir)?;
        let path = dir.join(format!("{name}.lock"));
        let owner = unique();
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())?;
                    return Ok(Some(Lock { path, owner }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_none_or(|a| a.as_secs() <= STALE_LOCK_SECS) {
                        return Ok(None);
                    }
                    let aside = dir.join(format!(".{name}.{owner}.stale"));
                    if std::fs::rename(&path, &aside).is_err() {
                        // Another instance moved it first: that one takes over.
                        return Ok(None);
                    }
                    let _ = std::fs::remove_file(aside);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn retry_file(&self, host: &str) -> PathBuf {
        self.root.join("locks").join(format!("{host}.retry"))
    }

    /// When `host` may be ordered again after failures, and the backoff that led there:
    /// shared, so instances taking turns at the lock do not each start from the shortest wait
    /// (CAs limit failed validations per name).
    pub fn retry(&self, host: &str) -> Option<(i64, i64)> {
        let text = std::fs::read_to_string(self.retry_file(host)).ok()?;
        let (at, backoff) = text.trim().split_once(' ')?;
        Some((at.parse().ok()?, backoff.parse().ok()?))
    }

    /// Record a failed order's next attempt (`None`: the last order worked).
    pub fn set_retry(&self, host: &str, retry: Option<(i64, i64)>) -> std::io::Result<()> {
        let path = self.retry_file(host);
        match retry {
            Some((at, backoff)) => write_file(&path, format!("{at} {backoff}\n").as_bytes(), 0o644),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    fn challenge_path(&self, kind: AcmeChallenge, name: &str) -> PathBuf {
        self.root.join("challenges").join(kind_dir(kind)).join(name)
    }

    /// Open a validation: every instance answers it once it reads the directory.
    pub fn publish_challenge(
        &self,
        kind: AcmeChallenge,
        name: &str,
        key_authorization: &str,
    ) -> std::io::Result<PathBuf> {
        let path = self.challenge_path(kind, name);
        write_file(&path, key_authorization.as_bytes(), 0o644)?;
        Ok(path)
    }

    /// The open challenges. Names that could not be a token or host are skipped.
    pub fn challenges(&self) -> Challenges {
        let read = |kind: AcmeChallenge| -> BTreeMap<String, String> {
            let dir = self.root.join("challenges").join(kind_dir(kind));
            let Ok(entries) = std::fs::read_dir(dir) else {
                return BTreeMap::new();
            };
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    if name.starts_with('.') {
                        return None;
                    }
                    let value = std::fs::read_to_string(e.path()).ok()?;
                    Some((name, value.trim().to_string()))
                })
                .collect()
        };
        Challenges {
            http01: read(AcmeChallenge::Http01),
            tls_alpn01: read(AcmeChallenge::TlsAlpn01),
        }
    }
}

fn kind_dir(kind: AcmeChallenge) -> &'static str {
    match kind {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
    }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    write_file(path, content, 0o600)
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", unique()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_moved_earlier_by_jitter() {
        assert_eq!(renewal_time(0, 90, 0.0), 60);
        assert_eq!(renewal_time(0, 900, 1.0), 555);
        assert!(renewal_time(1000, 1000 + 7_776_000, 0.5) < 1000 + 5_184_000);
    }

    #[test]
    fn the_challenge_certificate_carries_the_digest_in_a_critical_extension() {
        let entry = challenge_certificate("a.example.com", "token.thumb").unwrap();
        let der = entry.chain[0].to_der().unwrap();
        let digest = openssl::sha::sha256(b"token.thumb");
        // OID 1.3.6.1.5.5.7.1.31, critical TRUE, OCTET STRING { OCTET STRING(32) }.
        let mut ext = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        ext.extend_from_slice(&[0x01, 0x01, 0xff, 0x04, 0x22, 0x04, 0x20]);
        ext.extend_from_slice(&digest);
        assert!(der.windows(ext.len()).any(|w| w == ext.as_slice()));
        assert_eq!(entry.hosts, ["a.example.com"]);
        assert!(entry.chain[0].public_key().unwrap().public_eq(&entry.key));
    }

    #[test]
    fn http01_answers_only_open_tokens_under_the_well_known_path() {
        let state = AcmeState::default();
        let mut c = Challenges::default();
        c.http01.insert("tok-1".into(), "tok-1.thumb".into());
        state.set_challenges(&c);
        assert_eq!(
            state.http01("/.well-known/acme-challenge/tok-1").as_deref(),
            Some("tok-1.thumb")
        );
        assert!(state.http01("/.well-known/acme-challenge/tok-2").is_none());
        assert!(state.http01("/tok-1").is_none());
        state.set_challenges(&Challenges::default());
        assert!(state.http01("/.well-known/acme-challenge/tok-1").is_none());
    }

    #[test]
    fn an_alpn_certificate_is_made_once_per_key_authorization() {
        let state = AcmeState::default();
        let mut c = Challenges::default();
        c.tls_alpn01.insert("a.example.com".into(), "k1".into());
        state.set_challenges(&c);
        let first = state.alpn_certificate("A.example.com").unwrap();
        state.set_challenges(&c);
        assert!(Arc::ptr_eq(
            &first,
            &state.alpn_certificate("a.example.com").unwrap()
        ));
        c.tls_alpn01.insert("a.example.com".into(), "k2".into());
        state.set_challenges(&c);
        assert!(!Arc::ptr_eq(
            &first,
            &state.alpn_certificate("a.example.com").unwrap()
        ));
    }

    #[test]
    fn storage_keeps_keys_private_and_one_lock_per_host() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path());
        let key = new_key().unwrap();
        let csr = csr_der(&key, &["a.example.com".into()]).unwrap();
        assert!(openssl::x509::X509Req::from_der(&csr).is_ok());
        storage.save("a.example.com", b"chain", b"key").unwrap();
        let (cert, key_file) = storage.certificate_files("a.example.com");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_file), 0o600);
        assert_eq!(std::fs::read(&cert).unwrap(), b"chain");
        let first = storage.lock("a.example.com").unwrap();
        assert!(first.is_some());
        assert!(storage.lock("a.example.com").unwrap().is_none());
        assert!(storage.lock("b.example.com").unwrap().is_some());
        drop(first);
        let held = storage.lock("a.example.com").unwrap().unwrap();
        // Taken over after it went stale: dropping the old one leaves the new owner's.
        let file = dir.path().join("locks/a.example.com.lock");
        let old =
            std::time::SystemTime::now() - std::time::Duration::from_secs(STALE_LOCK_SECS + 5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let new = storage.lock("a.example.com").unwrap().unwrap();
        drop(held);
        assert!(file.exists());
        assert!(storage.lock("a.example.com").unwrap().is_none());
        drop(new);
        assert!(!file.exists());
        let long = format!("{}.example.com", "a".repeat(60));
        assert!(csr_der(&key, std::slice::from_ref(&long)).is_ok());
        assert!(challenge_certificate(&long, "k").is_ok());
        assert_eq!(storage.retry("a.example.com"), None);
        storage
            .set_retry("a.example.com", Some((1000, 120)))
            .unwrap();
        assert_eq!(storage.retry("a.example.com"), Some((1000, 120)));
        storage.set_retry("a.example.com", None).unwrap();
        storage.set_retry("a.example.com", None).unwrap();
        assert_eq!(storage.retry("a.example.com"), None);
        storage
            .publish_challenge(AcmeChallenge::Http01, "tok", "tok.thumb\n")
            .unwrap();
        assert_eq!(storage.challenges().http01["tok"], "tok.thumb");
    }

    #[test]
    fn ari_identifiers_follow_rfc_9773() {
        // RFC 9773 section 4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:
        // DE:01:C8:D4 and serial 00:87:65:43:21 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
        let ca_key = new_key().unwrap();
        let mut ca = X509::builder().unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "ca").unwrap();
        let name = name.build();
        ca.set_subject_name(&name).unwrap();
        ca.set_issuer_name(&name).unwrap();
        ca.set_pubkey(&ca_key).unwrap();
        let ski = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ];
        let ski_hex: Vec<String> = ski.iter().map(|b| format!("{b:02X}")).collect();
        #[allow(deprecated)]
        let ext = X509Extension::new_nid(
            None,
            Some(&ca.x509v3_context(None, None)),
            Nid::SUBJECT_KEY_IDENTIFIER,
            &ski_hex.join(":"),
        )
        .unwrap();
        ca.append_extension(ext).unwrap();
        ca.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        ca.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = ca.build();

        let key = new_key().unwrap();
        let mut leaf = X509::builder().unwrap();
        leaf.set_subject_name(&name).unwrap();
        leaf.set_issuer_name(ca.subject_name()).unwrap();
        leaf.set_pubkey(&key).unwrap();
        let serial = openssl::bn::BigNum::from_hex_str("87654321").unwrap();
        leaf.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        let aki = openssl::x509::extension::AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&leaf.x509v3_context(Some(&ca), None))
            .unwrap();
        leaf.append_extension(aki).unwrap();
        leaf.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        leaf.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        leaf.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let entry = CertEntry {
            name: "x".into(),
            chain: vec![leaf.build()],
            key,
            not_after: 0,
            hosts: Vec::new(),
            fingerprint: [0; 32],
        };
        let (aki, serial) = ari_identifier(&entry).unwrap();
        assert_eq!(
            format!("{aki}.{serial}"),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        assert_eq!(in_window(100, 200, 0.25), 125);
        assert_eq!(in_window(100, 50, 0.5), 100);
    }

    #[test]
    fn the_acme_plan_joins_the_list_and_the_host_policies() {
        let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
                    [acme]\ndirectory = \"https://ca.example/dir\"\nstorage = \"s\"\n\
                    email = \"ops@example.com\"\nhosts = [\"B.example.com\", \"a.example.com\"]\n\
                    external_account = { kid = \"k1\", hmac_key = \"AQID\" }\n\
                    [hosts.\"a.example.com\"]\nacme = true\n[hosts.\"c.example.com\"]\nacme = true\n";
        let config = crate::config::parse(text).unwrap();
        let plan = AcmePlan::of(&config).unwrap();
        assert_eq!(
            plan.hosts,
            ["a.example.com", "b.example.com", "c.example.com"]
        );
        assert_eq!(plan.contact, ["mailto:ops@example.com"]);
        assert_eq!(
            plan.external_account,
            Some(("k1".to_string(), vec![1, 2, 3]))
        );
        assert_eq!(plan.challenge, crate::config::AcmeChallenge::Http01);
        let key = |k: &str| {
            crate::config::ExternalAccountConfig {
                kid: "k".into(),
                hmac_key: crate::config::Secret::try_from(k.to_string()).unwrap(),
            }
            .mac_key()
        };
        assert_eq!(key("AQI=").unwrap(), [1, 2]);
        assert!(key("not base64!").is_none());
    }
}
