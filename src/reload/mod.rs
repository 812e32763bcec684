//! Applying configs while serving: the [`Reloader`] ([`snapshot::load`], the checks of what
//! a running process cannot change, then swap and activation, with [`audit`] and a record of
//! the last attempt). Settings read only at startup are reported as [`restart`]-only. The
//! triggers that call it (SIGHUP, a file watch) are in `services::signals`; the admin API calls
//! it directly.

pub mod audit;
pub mod restart;

use crate::config::{self, Config, ConfigErrors, KeyPath};
use crate::snapshot::{self, LoadError, Loaded, Registries, SnapshotStore};
use audit::{AuditEntry, AuditLog, Changes};
use restart::RestartOnly;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// What asked for a config load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Startup,
    Signal,
    Admin,
    Watch,
}

/// The outcome of the last load attempt, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRecord {
    pub time: String,
    pub source: Source,
    pub ok: bool,
    /// Version of the file that was tried (also when it failed to apply).
    pub version: Option<String>,
    pub error: Option<String>,
}

struct State {
    /// The config behind the current snapshot, for diffs.
    config: Config,
    /// Source of the snapshot in use.
    applied_by: Source,
    last: LoadRecord,
    /// Version of file content that failed to parse or validate: the file watch skips it until
    /// the content changes. Failures that may pass on retry (name resolution) are not recorded.
    rejected: Option<String>,
    /// Certificate files' content hash that failed to load: the watch waits for another change.
    rejected_files: Option<u64>,
    /// Restart-only settings of the applied config that differ from those the process runs.
    pending_restart: Vec<RestartOnly>,
}

type AdminTokens = (Option<config::Secret>, Option<config::Secret>);

/// Owns config changes after startup. Reloads are serialized by one mutex; the request path
/// never touches it (it reads the snapshot store).
pub struct Reloader {
    pub path: PathBuf,
    pub store: Arc<SnapshotStore>,
    pub registries: Arc<Registries>,
    audit: Option<AuditLog>,
    /// Fixed at startup, like the admin listener's address: a reload must not be able to open
    /// an admin API that is bound beyond loopback by dropping its tokens.
    tokens: AdminTokens,
    /// Default certificate of each TLS listener, as started: listeners keep their settings
    /// until a restart, so a reload must keep these certificates.
    listener_defaults: Vec<(usize, String)>,
    /// The config the process started with: what restart-only settings are compared with.
    started: Config,
    state: Mutex<State>,
    ready: AtomicBool,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Reloader {
    /// Take over the config the process started with, and audit it.
    pub fn new(
        path: PathBuf,
        store: Arc<SnapshotStore>,
        registries: Arc<Registries>,
        config: Config,
    ) -> Self {
        // Absolute, because `--daemon` changes the working directory to `/`.
        let audit =
            config.admin.audit_log.as_deref().map(|p| {
                AuditLog::new(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
            });
        let version = store.load().version.clone();
        let tokens = (
            config.admin.read_token.clone(),
            config.admin.admin_token.clone(),
        );
        let listener_defaults = config
            .listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let name = l.tls.as_ref()?.default_certificate.clone()?;
                Some((i, name))
            })
            .collect();
        let reloader = Self {
            path,
            store,
            registries,
            audit,
            tokens,
            listener_defaults,
            started: config.clone(),
            state: Mutex::new(State {
                rejected: None,
                rejected_files: None,
                pending_restart: Vec::new(),
                config: Config::default(),
                applied_by: Source::Startup,
                last: LoadRecord {
                    time: now_rfc3339(),
                    source: Source::Startup,
                    ok: true,
                    version: Some(version.clone()),
                    error: None,
                },
            }),
            ready: AtomicBool::new(true),
        };
        let changes = audit::diff(&Config::default(), &config);
        reloader.write_audit(&version, None, Source::Startup, &changes);
        reloader.lock().config = config;
        reloader
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_audit(
        &self,
        version: &str,
        previous: Option<&str>,
        source: Source,
        changes: &Changes,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        let entry = AuditEntry {
            time: now_rfc3339(),
            version,
            previous_version: previous,
            source,
            file: &self.path,
            changes,
        };
        if let Err(e) = audit.append(&entry) {
            tracing::error!(error = %e, "cannot write the config audit log");
        }
    }

    /// Refuse what a running process cannot do: listeners keep the settings they started with,
    /// so the certificate each one serves by default must stay.
    fn check_running_listeners(&self, loaded: &Loaded) -> Result<(), LoadError> {
        let missing: Vec<config::ConfigError> = self
            .listener_defaults
            .iter()
            .filter(|(_, name)| loaded.snapshot.certificates.get(name).is_none())
            .map(|(i, name)| {
                config::ConfigError::new(
                    KeyPath::top("listeners")
                        .index(*i)
                        .key("tls")
                        .key("default_certificate"),
                    format!(
                        "the running listener serves certificate {name:?} by default; keep it \
                         (listener settings change with a restart or upgrade)"
                    ),
                )
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(LoadError {
            errors: ConfigErrors {
                file: self.path.clone(),
                errors: missing,
            },
            version: Some(loaded.snapshot.version.clone()),
            // Certificates may come from `[tls] certificate_dir`: a file added there can make
            // the same text pass.
            invalid_text: false,
        })
    }

    /// Load the file and apply it, or keep the current config when it is invalid. Either way
    /// the attempt is logged, counted and recorded for `/-/config`.
    pub fn reload(&self, source: Source) -> Result<String, ConfigErrors> {
        let mut state = self.lock();
        let loaded = snapshot::load(&self.path, &self.registries).and_then(|loaded| {
            self.check_running_listeners(&loaded)?;
            Ok(loaded)
        });
        let metrics = &self.registries.metrics;
        match loaded {
            Ok(Loaded { config, snapshot }) => {
                let version = snapshot.version.clone();
                let summary = snapshot.summary();
                let previous = self.store.load().version.clone();
                let changes = audit::diff(&state.config, &config);
                let pending = restart::pending(&self.started, &config);
                if !pending.is_empty() {
                    tracing::warn!(
                        pending_restart = %restart::list(&pending),
                        "settings changed that apply on the next upgrade or restart; the \
                         running process keeps the values it started with"
                    );
                }
                self.store.swap(snapshot, &self.registries);
                metrics.config_loaded(true, Some(&version));
                self.write_audit(&version, Some(&previous), source, &changes);
                state.config = config;
                state.applied_by = source;
                state.rejected = None;
                state.rejected_files = None;
                state.pending_restart = pending;
                state.last = LoadRecord {
                    time: now_rfc3339(),
                    source,
                    ok: true,
                    version: Some(version),
                    error: None,
                };
                tracing::info!(file = %self.path.display(), ?source, %summary, "config reloaded");
                for warning in self.store.load().certificate_warnings() {
                    tracing::warn!("{warning}");
                }
                Ok(summary)
            }
            Err(e) => {
                metrics.config_loaded(false, None);
                state.rejected = if e.invalid_text {
                    e.version.clone()
                } else {
                    None
                };
                state.last = LoadRecord {
                    time: now_rfc3339(),
                    source,
                    ok: false,
                    version: e.version,
                    error: Some(e.errors.to_string()),
                };
                tracing::error!(error = %e.errors, ?source, "config reload failed, keeping the current config");
                Err(e.errors)
            }
        }
    }

    /// Reload when the file's content differs from both the config in use and the last
    /// attempt (so a broken file is reported once, not every interval).
    pub fn reload_if_changed(&self, config: bool, certificates: bool) {
        if config {
            let Ok(text) = std::fs::read_to_string(&self.path) else {
                return;
            };
            let version = snapshot::version_of(&text);
            let unchanged = {
                let state = self.lock();
                version == self.store.load().version || state.rejected.as_deref() == Some(&version)
            };
            if !unchanged {
                let _ = self.reload(Source::Watch);
                return;
            }
        }
        if certificates {
            let current = self.store.load();
            let hash = crate::hash::files_hash(&current.certificates.files);
            if hash == current.certificate_files_hash || self.lock().rejected_files == Some(hash) {
                return;
            }
            tracing::info!("certificate files changed");
            if let Err(e) = self.reload(Source::Watch) {
                // Only certificate problems wait for the next change; anything else (a name
                // that did not resolve) is retried on the next tick.
                let certificate_error = e
                    .errors
                    .iter()
                    .any(|x| x.path.is_under("certificates") || x.path.is_under("tls"));
                if certificate_error {
                    self.lock().rejected_files = Some(hash);
                }
            }
        }
    }

    /// The last load attempt and the source of the config in use.
    pub fn last(&self) -> (LoadRecord, Source) {
        let state = self.lock();
        (state.last.clone(), state.applied_by)
    }

    /// The audit log file, when `[admin] audit_log` is set.
    pub fn audit_path(&self) -> Option<&std::path::Path> {
        self.audit.as_ref().map(AuditLog::path)
    }

    /// Run `f` on the snapshot in use, the config it was compiled from (taken together under
    /// the reload lock so they agree) and the config the process started with.
    pub fn with_current<R>(
        &self,
        f: impl FnOnce(&crate::snapshot::Snapshot, &Config, &Config) -> R,
    ) -> R {
        let state = self.lock();
        let snapshot = self.store.load();
        f(&snapshot, &state.config, &self.started)
    }

    /// Restart-only settings that the applied config changed: they take effect on the next
    /// upgrade or restart.
    pub fn pending_restart(&self) -> Vec<RestartOnly> {
        self.lock().pending_restart.clone()
    }

    /// Admin tokens, as loaded at startup.
    pub fn admin_tokens(&self) -> &AdminTokens {
        &self.tokens
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Report not ready from now on (`/-/ready` answers 503): shutdown has begun.
    pub fn set_draining(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}
