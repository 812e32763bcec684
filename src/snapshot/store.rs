//! [`SnapshotStore`]: the snapshot in use, swapped atomically on reload, and the certificate
//! source TLS listeners read from.

use super::{Registries, Snapshot};
use arc_swap::{ArcSwap, Guard};
use std::sync::Arc;

/// The current snapshot, swapped atomically on reload.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    /// OCSP responses of the served certificates, kept across reloads (`services::ocsp`
    /// fetches them).
    pub staples: crate::tls::ocsp::Staples,
    /// Certificates issued through `[acme]` and the challenges being answered, kept across
    /// reloads (`services::acme` orders them).
    pub acme: crate::tls::acme::AcmeState,
}

impl SnapshotStore {
    /// A store holding the process's first snapshot, activated.
    pub fn activated(snapshot: Snapshot, reg: &Registries) -> Self {
        let store = Self {
            current: ArcSwap::from_pointee(snapshot),
            staples: crate::tls::ocsp::Staples::default(),
            acme: crate::tls::acme::AcmeState::default(),
        };
        store.current.load().activate(reg, None);
        store
    }

    /// A cheap, short-lived view (background tasks).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// An owned handle a request keeps until it ends.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Put `snapshot` in use, then activate it; returns the snapshot it replaced. The only way
    /// to change the snapshot, so that no snapshot serves without its activation having run.
    pub fn swap(&self, snapshot: Snapshot, reg: &Registries) -> Arc<Snapshot> {
        let new = Arc::new(snapshot);
        let old = self.current.swap(new.clone());
        new.activate(reg, Some(&old));
        old
    }
}

impl crate::tls::accept::CertificateSource for SnapshotStore {
    fn certificate(
        &self,
        sni: Option<&str>,
        default: Option<&str>,
    ) -> Option<Arc<crate::tls::CertEntry>> {
        // An issued certificate wins over a file's for its host: it is what `[acme]` was
        // asked for, and the file (or the default) served only until it existed; but not
        // once it expired (renewal failing for long), when a file's may still be good.
        if let Some(issued) = sni.and_then(|name| self.acme.certificate(name)) {
            if issued.not_after > crate::clock::unix_secs() as i64 {
                return Some(issued);
            }
        }
        self.current.load().certificates.pick(sni, default).cloned()
    }

    fn acme_challenge(&self, sni: &str) -> Option<Arc<crate::tls::CertEntry>> {
        self.acme.alpn_certificate(sni)
    }

    fn staple(&self, entry: &crate::tls::CertEntry) -> Option<Arc<crate::tls::ocsp::Staple>> {
        self.staples
            .get(&entry.fingerprint, crate::clock::unix_secs() as i64)
    }
}
