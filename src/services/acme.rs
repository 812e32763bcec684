//! Automatic certificates (`[acme]`): every second, each managed host's stored certificate is
//! picked up when it changed on disk (after a restart, or another instance's order), and a
//! host without one, or past its renewal time, is ordered by whichever instance takes its lock
//! in the storage directory: at two thirds of its lifetime, or earlier when the CA's renewal
//! information (RFC 9773) suggests a window that starts sooner. Orders run as their own tasks; a failure keeps the certificate
//! being served, is counted and logged, and is retried with backoff (a minute doubling to six
//! hours). Open challenges are read from the storage directory, so every instance sharing it
//! answers the CA, whichever one ordered.

use crate::observe::metrics::Metrics;
use crate::snapshot::SnapshotStore;
use crate::tls::acme::{self, AcmePlan, HostStatus, Storage};
use crate::tls::CertEntry;
use async_trait::async_trait;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, Mutex};

const FIRST_RETRY: i64 = 60;
const LONGEST_RETRY: i64 = 6 * 3600;
/// How long a published challenge is left for the other instances sharing the storage
/// directory to read (they look every second) before the CA is asked to validate.
const SHARE_DELAY: Duration = Duration::from_millis(1500);
/// How long the CA gets to validate, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(90);
/// The most an order (or a renewal information request) may take in all: a CA that accepts
/// connections and never answers must not stall a host's renewal. Well under
/// `acme::STALE_LOCK_SECS`, so no other instance takes over a lock still in use.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Background service ordering and renewing the certificates `[acme]` asks for.
pub struct AcmeService {
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
}

impl AcmeService {
    pub fn new(store: Arc<SnapshotStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }
}

/// One host's schedule.
#[derive(Default)]
struct Schedule {
    /// The stored certificate's modification time when it was last read.
    seen: Option<SystemTime>,
    /// Unix seconds of the next order (renewal, or retry after a failure).
    next: i64,
    backoff: i64,
    ordering: bool,
    /// Unix seconds when the CA's renewal information (ARI) is asked next.
    ask_window: i64,
    asking: bool,
    /// Unix seconds of the first of the failures in a row.
    failing_since: Option<i64>,
}

/// What a background task reports to the schedule.
enum Done {
    Order(String, Result<Outcome, String>),
    Window(String, Result<Window, String>),
}

/// The CA's renewal information for a certificate.
enum Window {
    /// Renew within `start..end` (Unix seconds); ask again after `ask_again` seconds.
    Suggested {
        start: i64,
        end: i64,
        ask_again: i64,
    },
    /// The CA does not offer renewal information.
    Unsupported,
}

/// What an order task ended with.
enum Outcome {
    /// A new certificate from the CA.
    Issued(CertEntry),
    /// Another instance renewed it while this one waited for the lock.
    Stored(CertEntry),
}

/// The account per CA directory, made or read once per process.
type Accounts = Arc<Mutex<HashMap<String, Account>>>;

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (done_tx, mut done) = mpsc::unbounded_channel::<Done>();
        let accounts: Accounts = Arc::default();
        let jitter = std::collections::hash_map::RandomState::new();
        let mut schedules: HashMap<String, Schedule> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(report) = done.recv() => {
                    match report {
                        Done::Order(host, result) => {
                            let s = schedules.entry(host.clone()).or_default();
                            self.finished(&host, s, result, jitter.hash_one(&host));
                        }
                        Done::Window(host, result) => {
                            let s = schedules.entry(host.clone()).or_default();
                            self.window(&host, s, result, jitter.hash_one((&host, "ari")));
                        }
                    }
                    continue;
                }
                _ = shutdown.changed() => return,
            }
            let snapshot = self.store.load();
            let managed = snapshot
                .acme
                .as_ref()
                .map_or(&[][..], |p| p.hosts.as_slice());
            for (gone, _) in schedules.extract_if(|h, s| !s.ordering && !managed.contains(h)) {
                let file_named = snapshot.certificates.get(&gone).is_some();
                self.metrics.forget_acme_host(&gone, file_named);
            }
            let Some(plan) = snapshot.acme.clone() else {
                self.store.acme.retain_hosts(&[]);
                continue;
            };
            let storage = Storage::new(&plan.storage);
            self.store.acme.set_challenges(&storage.challenges());
            self.store.acme.retain_hosts(&plan.hosts);
            let now = crate::clock::unix_secs() as i64;
            let task_for = |host: &String| Order {
                plan: plan.clone(),
                host: host.clone(),
                accounts: accounts.clone(),
                store: self.store.clone(),
            };
            for host in &plan.hosts {
                let s = schedules.entry(host.clone()).or_default();
                // Also while ordering: another instance may have stored one first.
                self.pick_up(&storage, host, s, jitter.hash_one(host));
                if s.ordering {
                    continue;
                }
                if !s.asking && s.ask_window <= now {
                    let identifier = self
                        .store
                        .acme
                        .certificate(host)
                        .and_then(|c| acme::ari_identifier(&c));
                    if let Some(identifier) = identifier {
                        s.asking = true;
                        let task = task_for(host);
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let window =
                                tokio::time::timeout(ORDER_TIMEOUT, task.window(identifier))
                                    .await
                                    .unwrap_or_else(|_| Err("the CA did not answer".into()));
                            let _ = done.send(Done::Window(task.host, window));
                        });
                    }
                }
                if s.next > now {
                    continue;
                }
                // Another instance's failed order sets when anyone tries next.
                if let Some((at, backoff)) = storage.retry(host).filter(|(at, _)| *at > now) {
                    s.next = at;
                    s.backoff = s.backoff.max(backoff);
                    continue;
                }
                match storage.lock(host) {
                    Ok(Some(lock)) => {
                        s.ordering = true;
                        let task = task_for(host);
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let result = tokio::time::timeout(ORDER_TIMEOUT, task.run())
                                .await
                                .unwrap_or_else(|_| {
                                    Err(format!("no answer from the CA within {ORDER_TIMEOUT:?}"))
                                });
                            // The retry time is stored before the lock goes, so no instance
                            // orders again in between.
                            task.share_retry(&result);
                            drop(lock);
                            let _ = done.send(Done::Order(task.host, result));
                        });
                    }
                    // Another instance orders; its certificate is picked up when stored.
                    Ok(None) => self.store.acme.set_status(
                        host,
                        HostStatus {
                            result: "waiting",
                            error: None,
                            at: now,
                            next_attempt: now + 1,
                        },
                    ),
                    Err(e) => {
                        let reason = format!("cannot take the order lock: {e}");
                        self.failed(host, s, reason, now);
                    }
                }
            }
        }
    }
}

impl AcmeService {
    /// Serve the stored certificate of `host` if it changed on disk since last read.
    fn pick_up(&self, storage: &Storage, host: &str, s: &mut Schedule, seed: u64) {
        let modified = storage.modified(host);
        if modified.is_none() || modified == s.seen {
            return;
        }
        s.seen = modified;
        match storage.load(host) {
            Ok(Some(entry)) => {
                let served = self.store.acme.certificate(host);
                if served.is_none_or(|c| c.fingerprint != entry.fingerprint) {
                    tracing::info!(
                        host,
                        not_after = entry.not_after,
                        "serving the stored ACME certificate"
                    );
                    self.adopt(host, s, entry, "loaded", seed);
                }
            }
            Ok(None) => {}
            // Half-written by another instance, or damaged: read again when it changes.
            Err(e) => tracing::warn!(host, error = %e, "cannot read the stored ACME certificate"),
        }
    }

    /// Serve `entry` for `host` and schedule its renewal.
    fn adopt(
        &self,
        host: &str,
        s: &mut Schedule,
        entry: CertEntry,
        result: &'static str,
        seed: u64,
    ) {
        let now = crate::clock::unix_secs() as i64;
        let from = acme::not_before(&entry).unwrap_or(now);
        s.next = acme::renewal_time(from, entry.not_after, fraction(seed));
        s.backoff = 0;
        // A new certificate: ask the CA about its renewal window.
        s.ask_window = 0;
        s.failing_since = None;
        self.metrics.acme_failing_since(host, 0);
        self.metrics.certificate_expiry(host, entry.not_after);
        self.metrics.acme_renewal(host, s.next);
        self.store.acme.set_certificate(host, Arc::new(entry));
        self.store.acme.set_status(
            host,
            HostStatus {
                result,
                error: None,
                at: now,
                next_attempt: s.next,
            },
        );
    }

    fn finished(&self, host: &str, s: &mut Schedule, result: Result<Outcome, String>, seed: u64) {
        s.ordering = false;
        // The next look reads the file again; it is what is served, so nothing changes.
        s.seen = None;
        match result {
            Ok(Outcome::Issued(entry)) => {
                tracing::info!(host, not_after = entry.not_after, "ACME certificate issued");
                self.metrics.acme_order(host, true);
                self.adopt(host, s, entry, "issued", seed);
            }
            Ok(Outcome::Stored(entry)) => self.adopt(host, s, entry, "loaded", seed),
            Err(reason) => self.failed(host, s, reason, crate::clock::unix_secs() as i64),
        }
    }

    /// Move the renewal earlier when the CA's suggested window starts before it.
    fn window(&self, host: &str, s: &mut Schedule, result: Result<Window, String>, seed: u64) {
        s.asking = false;
        let now = crate::clock::unix_secs() as i64;
        match result {
            Ok(Window::Suggested {
                start,
                end,
                ask_again,
            }) => {
                let at = acme::in_window(start, end, fraction(seed));
                if at < s.next && !s.ordering {
                    tracing::info!(host, at, "renewal moved by the CA's renewal information");
                    s.next = at;
                    self.metrics.acme_renewal(host, at);
                }
                s.ask_window = now + ask_again.clamp(60, 86_400);
            }
            Ok(Window::Unsupported) => s.ask_window = i64::MAX,
            Err(reason) => {
                tracing::debug!(host, %reason, "no renewal information");
                s.ask_window = now + 3600;
            }
        }
    }

    fn failed(&self, host: &str, s: &mut Schedule, reason: String, now: i64) {
        s.backoff = backoff_after(s.backoff);
        s.next = now + s.backoff;
        let since = *s.failing_since.get_or_insert(now);
        self.metrics.acme_failing_since(host, since);
        let serving = self.store.acme.certificate(host);
        tracing::warn!(
            host,
            %reason,
            retry_in_secs = s.backoff,
            serving_until = serving.as_ref().map(|c| c.not_after),
            "ACME order failed; the certificate being served stays"
        );
        self.metrics.acme_order(host, false);
        self.metrics.acme_renewal(host, s.next);
        self.store.acme.set_status(
            host,
            HostStatus {
                result: "failed",
                error: Some(reason),
                at: now,
                next_attempt: s.next,
            },
        );
    }
}

/// A host's random share (0..1) of its jitter, from its seed.
fn fraction(seed: u64) -> f64 {
    (seed % 1_000_000) as f64 / 1_000_000.0
}

/// The wait after a failure that followed a wait of `previous` seconds (0: the first).
fn backoff_after(previous: i64) -> i64 {
    (previous * 2).clamp(FIRST_RETRY, LONGEST_RETRY)
}

/// One host's order, run while holding its lock.
struct Order {
    plan: Arc<AcmePlan>,
    host: String,
    accounts: Accounts,
    store: Arc<SnapshotStore>,
}

impl Order {
    /// Run while holding the host's lock.
    async fn run(&self) -> Result<Outcome, String> {
        let storage = Storage::new(&self.plan.storage);
        // Another instance may have renewed between this instance's last look and the lock.
        let now = crate::clock::unix_secs() as i64;
        if let Ok(Some(stored)) = storage.load(&self.host) {
            let from = acme::not_before(&stored).unwrap_or(now);
            let served = self.store.acme.certificate(&self.host);
            let newer = served.is_none_or(|c| c.fingerprint != stored.fingerprint);
            if newer && acme::renewal_time(from, stored.not_after, 0.0) > now {
                return Ok(Outcome::Stored(stored));
            }
        }
        let account = self.account(&storage).await?;
        let mut published = Vec::new();
        let issued = self.order(&account, &storage, &mut published).await;
        for path in published {
            let _ = std::fs::remove_file(path);
        }
        self.store.acme.set_challenges(&storage.challenges());
        issued
    }

    /// Tell the other instances when to try again (or that they need not wait).
    fn share_retry(&self, result: &Result<Outcome, String>) {
        let storage = Storage::new(&self.plan.storage);
        let retry = match result {
            Ok(_) => None,
            Err(_) => {
                let now = crate::clock::unix_secs() as i64;
                let backoff = backoff_after(storage.retry(&self.host).map_or(0, |(_, b)| b));
                Some((now + backoff, backoff))
            }
        };
        if let Err(e) = storage.set_retry(&self.host, retry) {
            tracing::warn!(host = %self.host, error = %e, "cannot store the ACME retry time");
        }
    }

    /// The CA's renewal information (RFC 9773) for the certificate `identifier` names.
    async fn window(&self, identifier: (String, String)) -> Result<Window, String> {
        let storage = Storage::new(&self.plan.storage);
        let account = self.account(&storage).await?;
        let id = CertificateIdentifier {
            authority_key_identifier: identifier.0.into(),
            serial: identifier.1.into(),
        };
        match account.renewal_info(&id).await {
            Ok((info, ask_again)) => Ok(Window::Suggested {
                start: info.suggested_window.start.unix_timestamp(),
                end: info.suggested_window.end.unix_timestamp(),
                ask_again: ask_again.as_secs() as i64,
            }),
            Err(instant_acme::Error::Unsupported(_)) => Ok(Window::Unsupported),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The account with this CA: stored, else registered (with the external account binding
    /// when configured) and stored 0600.
    async fn account(&self, storage: &Storage) -> Result<Account, String> {
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.get(&self.plan.directory) {
            return Ok(a.clone());
        }
        let builder = match &self.plan.ca_bundle {
            Some(bundle) => Account::builder_with_root(bundle),
            None => Account::builder(),
        }
        .map_err(|e| format!("ACME client: {e}"))?;
        let file = storage.account_file(&self.plan.directory);
        // One instance registers; the others wait for its file (a single-use external
        // account key would refuse a second registration).
        let mut registering = None;
        for _ in 0..60 {
            if file.exists() {
                break;
            }
            registering = storage
                .lock("_account")
                .map_err(|e| format!("cannot take the account lock: {e}"))?;
            if registering.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let account = match std::fs::read(&file) {
            Ok(bytes) => {
                let credentials: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                builder
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| format!("ACME directory {}: {e}", self.plan.directory))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && registering.is_some() => {
                self.register(builder, storage, &file).await?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("another instance is registering the ACME account".into())
            }
            // Unreadable is not absent: registering anew would replace the account.
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        accounts.insert(self.plan.directory.clone(), account.clone());
        Ok(account)
    }

    /// Register with the CA (with the external account binding when configured) and store
    /// the account 0600.
    async fn register(
        &self,
        builder: instant_acme::AccountBuilder,
        storage: &Storage,
        file: &std::path::Path,
    ) -> Result<Account, String> {
        let contact: Vec<&str> = self.plan.contact.iter().map(String::as_str).collect();
        let eab = self
            .plan
            .external_account
            .as_ref()
            .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = builder
            .create(&new, self.plan.directory.clone(), eab.as_ref())
            .await
            .map_err(|e| format!("registering with {}: {e}", self.plan.directory))?;
        let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
        storage
            .write_private(file, &json)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        tracing::info!(directory = %self.plan.directory, "ACME account registered");
        Ok(account)
    }

    /// Order, answer the challenge, finalize with a fresh key, store the chain and key.
    async fn order(
        &self,
        account: &Account,
        storage: &Storage,
        published: &mut Vec<std::path::PathBuf>,
    ) -> Result<Outcome, String> {
        let host = &self.host;
        let acme_err = |what: &str| {
            let what = what.to_string();
            move |e: instant_acme::Error| format!("{what}: {e}")
        };
        let identifiers = [Identifier::Dns(host.clone())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(acme_err("new order"))?;
        let kind = match self.plan.challenge {
            crate::config::AcmeChallenge::Http01 => ChallengeType::Http01,
            crate::config::AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme_err("authorization"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let key_authorization = challenge.key_authorization();
            let name = match self.plan.challenge {
                crate::config::AcmeChallenge::Http01 => {
                    let token = challenge.token.clone();
                    let safe = !token.is_empty()
                        && token
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !safe {
                        return Err("the CA sent a token that is not base64url".into());
                    }
                    token
                }
                crate::config::AcmeChallenge::TlsAlpn01 => host.clone(),
            };
            let path = storage
                .publish_challenge(self.plan.challenge, &name, key_authorization.as_str())
                .map_err(|e| format!("storing the challenge: {e}"))?;
            published.push(path);
            self.store.acme.set_challenges(&storage.challenges());
            tokio::time::sleep(SHARE_DELAY).await;
            challenge
                .set_ready()
                .await
                .map_err(acme_err("challenge ready"))?;
        }
        let patience = RetryPolicy::new().timeout(VALIDATION_TIMEOUT);
        let status = order
            .poll_ready(&patience)
            .await
            .map_err(acme_err("validation"))?;
        if status != OrderStatus::Ready {
            return Err(format!(
                "validation failed: {}",
                why_invalid(&mut order).await
            ));
        }
        let key = acme::new_key().map_err(|e| format!("key: {e}"))?;
        let csr =
            acme::csr_der(&key, std::slice::from_ref(host)).map_err(|e| format!("CSR: {e}"))?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(acme_err("finalize"))?;
        let chain = order
            .poll_certificate(&patience)
            .await
            .map_err(acme_err("certificate"))?;
        let key_pem = key
            .private_key_to_pem_pkcs8()
            .map_err(|e| format!("key: {e}"))?;
        storage
            .save(host, chain.as_bytes(), &key_pem)
            .map_err(|e| format!("storing the certificate: {e}"))?;
        match storage.load(host) {
            Ok(Some(entry)) => Ok(Outcome::Issued(entry)),
            Ok(None) => Err("the stored certificate disappeared".into()),
            Err(e) => Err(format!("the issued certificate: {e}")),
        }
    }
}

/// The CA's reasons an order's validation failed, from its challenges' errors.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    if let Some(problem) = &order.state().error {
        reasons.push(problem.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        reasons.extend(
            authz
                .challenges
                .iter()
                .filter_map(|c| c.error.as_ref().map(|p| p.to_string())),
        );
    }
    if reasons.is_empty() {
        "the order became invalid".into()
    } else {
        reasons.join("; ")
    }
}
