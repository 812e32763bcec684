//! Assembles the Pingora server: proxy service, admin service, background services.

use crate::admin::AdminApp;
use crate::config::{self, Config, KeyPath};
use crate::edge::connections::{self, Connections};
use crate::observe::access_log::AccessLog;
use crate::proxy::{EdgeApp, Gateway};
use crate::reload::Reloader;
use crate::services::ban_sync::BanSync;
use crate::services::health_checks::HealthChecker;
use crate::services::key_refresh::KeyRefresher;
use crate::services::signals::{ReloadTriggers, ShutdownSignals};
use crate::services::trace_flush::TraceFlush;
use crate::snapshot::{self, Loaded, Registries, SnapshotStore};
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the process was started.
pub struct RunOptions {
    pub config_path: PathBuf,
    /// Take the listening sockets over from a running instance (graceful upgrade).
    pub upgrade: bool,
    pub daemon: bool,
}

/// Load the config and serve until shutdown. Returns only on a startup error.
pub fn run(opts: RunOptions) -> Result<(), Box<dyn std::error::Error>> {
    let registries = Arc::new(Registries::new()?);
    let Loaded {
        config, snapshot, ..
    } = snapshot::load(&opts.config_path, &registries)?;
    if !opts.upgrade {
        check_listeners_free(&config, &opts.config_path)?;
    }
    tracing::info!(file = %opts.config_path.display(), summary = %snapshot.summary(), "config loaded");
    for warning in snapshot.certificate_warnings() {
        tracing::warn!("{warning}");
    }
    registries
        .metrics
        .config_loaded(true, Some(&snapshot.version));
    let store = Arc::new(SnapshotStore::activated(snapshot, &registries));
    let access_log = Arc::new(
        AccessLog::start(
            config.access_log.path.as_deref(),
            registries.metrics.access_log_dropped.clone(),
        )
        .map_err(|e| format!("access_log.path: {e}"))?,
    );
    // SIGUSR1 reopens the access log (after logrotate renamed it), as nginx's USR1 does.
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, access_log.reopen_flag())
        .map_err(|e| format!("cannot install the SIGUSR1 handler: {e}"))?;
    let (spans, trace_export) = match &config.tracing {
        Some(tracing) => {
            let counters = registries.metrics.span_counters();
            let (sink, handle) = crate::observe::trace::export::start(tracing, counters)?;
            (Some(Arc::new(sink)), Some(handle))
        }
        None => (None, None),
    };
    let fd_budget = connections::budget_from_fd_limit(connections::raise_fd_limit());
    let connections = Connections::new(config.listeners.iter().map(|l| l.address));

    let pingora_opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server =
        Server::new_with_opt_and_conf(pingora_opt, server_conf(&config, &opts.config_path));
    server.bootstrap();
    if !opts.daemon {
        // Pingora writes the pid file only when it daemonizes; in the foreground (systemd
        // `Type=simple`, containers) it is written here, so `kill -USR1 $(cat PIDFILE)` from
        // logrotate and scripts work either way. An upgraded process overwrites it.
        let pid_file = &server.configuration.pid_file;
        if let Err(e) = write_pid_file(Path::new(pid_file)) {
            tracing::warn!(file = %pid_file, error = %e, "cannot write the pid file");
        }
    }
    let (watch_config, watch_certificates) = (config.server.watch_config, config.tls.watch);
    let watch = (watch_config || watch_certificates).then_some(config.server.watch_interval);
    let shutdown_delay = config.server.shutdown_delay;
    let graceful_shutdown_timeout = config.server.graceful_shutdown_timeout;
    let handshake_threads = config.server.tls_handshake_threads;
    let listeners: Vec<(
        std::net::SocketAddr,
        Option<crate::config::ListenerTlsConfig>,
        bool,
    )> = config
        .listeners
        .iter()
        .map(|l| (l.address, l.tls.clone(), l.proxy_protocol))
        .collect();
    let admin = config
        .admin
        .enabled
        .then(|| config.admin.address.to_string());
    let h2_limits = config.edge.limits();
    // Requests already on their way when the listeners stop get this long to arrive.
    let drain = config.server.grace_period;
    let reloader = Arc::new(Reloader::new(
        opts.config_path,
        store.clone(),
        registries.clone(),
        config,
    ));

    let mut gateway = http_proxy(
        &server.configuration,
        Gateway::new(store.clone(), Some(access_log.clone()), spans),
    );
    // HTTP/2 heads are read by Pingora (h2), not `proxy::conn`: the same size limit there,
    // and idle connections closed after the keep-alive timeout.
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(u32::try_from(h2_limits.max_header_bytes).unwrap_or(u32::MAX));
    gateway.h2_options = Some(h2);
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(h2_limits.keepalive_timeout.max(Duration::from_secs(1)));
    gateway.server_options = Some(options);
    let mut app = EdgeApp::new(
        gateway,
        drain,
        store.clone(),
        connections,
        fd_budget,
        Some(access_log),
    );
    let startup_error = |e| config::ConfigErrors {
        file: reloader.path.clone(),
        errors: vec![e],
    };
    // A TLS listener behind PROXY protocol listens as TCP; `EdgeApp` reads the header and
    // then does the handshake itself.
    let mut tcp = Vec::new();
    let mut tls_listeners = Vec::new();
    for (i, (address, tls, proxy_protocol)) in listeners.iter().enumerate() {
        let path = KeyPath::top("listeners").index(i).key("tls");
        match (tls, proxy_protocol) {
            (Some(tls), true) => {
                let proxied = crate::tls::listener::ProxiedTls::new(tls, &path, store.clone())
                    .map_err(startup_error)?;
                app.add_proxied_tls(*address, proxied);
                tcp.push(address.to_string());
            }
            (Some(tls), false) => {
                let settings =
                    crate::tls::listener::settings(tls, &path, store.clone(), handshake_threads)
                        .map_err(startup_error)?;
                tls_listeners.push((address.to_string(), settings));
            }
            (None, _) => tcp.push(address.to_string()),
        }
    }
    let mut proxy = Service::new("gatehouse proxy".to_string(), app);
    for address in &tcp {
        proxy.add_tcp(address);
    }
    for (address, settings) in tls_listeners {
        proxy.add_tls_with_settings(&address, None, settings);
    }
    server.add_service(proxy);

    if let Some(address) = admin {
        let app = AdminApp::new(reloader.clone());
        let mut admin = Service::new("gatehouse admin".to_string(), app);
        admin.threads = Some(1);
        admin.add_tcp(&address);
        server.add_service(admin);
    }
    server.add_service(background_service(
        "health checks",
        HealthChecker::new(store.clone()),
    ));
    server.add_service(background_service(
        "ban sync",
        BanSync::new(store.clone(), registries.clone()),
    ));
    server.add_service(background_service(
        "OCSP stapling",
        crate::services::ocsp::OcspStapler::new(store.clone(), registries.metrics.clone()),
    ));
    server.add_service(background_service(
        "ACME certificates",
        crate::services::acme::AcmeService::new(store.clone(), registries.metrics.clone()),
    ));
    server.add_service(background_service("key refresh", KeyRefresher::new(store)));
    if let Some(handle) = trace_export {
        server.add_service(background_service("trace export", TraceFlush::new(handle)));
    }
    server.add_service(background_service(
        "config reload",
        ReloadTriggers {
            reloader: reloader.clone(),
            watch,
            watch_config,
            watch_certificates,
        },
    ));
    server.run(RunArgs {
        shutdown_signal: Box::new(ShutdownSignals {
            reloader,
            delay: shutdown_delay,
            grace_period: drain,
            graceful_shutdown_timeout,
        }),
    });
    Ok(())
}

/// Pingora settings from `[server]`, with the defaults measured to be fastest here
/// (see PERF-NOTES.md).
fn server_conf(config: &Config, config_path: &Path) -> ServerConf {
    let s = &config.server;
    let threads = match s.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    ServerConf {
        threads,
        work_stealing: s.work_stealing,
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        grace_period_seconds: Some(s.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout.as_secs()),
        pid_file: instance_path(&s.pid_file, config_path, "pid")
            .display()
            .to_string(),
        upgrade_sock: instance_path(&s.upgrade_sock, config_path, "sock")
            .display()
            .to_string(),
        ..ServerConf::default()
    }
}

/// `configured`, or when it is empty `/tmp/gatehouse-<12 hex digits of the SHA-256 of the
/// config file's absolute path>.<ext>`: the same for every process started from that file
/// (an upgrade finds its predecessor), different for another instance on the host.
pub fn instance_path(configured: &Path, config_path: &Path, ext: &str) -> PathBuf {
    if !configured.as_os_str().is_empty() {
        return configured.to_path_buf();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(config_path.as_os_str().as_encoded_bytes());
    let hex = crate::text::hex(&digest[..6]);
    PathBuf::from(format!("/tmp/gatehouse-{hex}.{ext}"))
}

/// Write this process's pid to `path` through a new file renamed over it: the new file is
/// created exclusively (a symlink planted at its name in a shared directory is refused, not
/// followed), and the rename replaces a symlink at `path` instead of writing through it.
fn write_pid_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let pid = std::process::id();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{pid}.tmp"));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    file.write_all(format!("{pid}\n").as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Fail with a clear message before Pingora would abort on a busy port.
fn check_listeners_free(config: &Config, file: &Path) -> Result<(), String> {
    let mut addrs: Vec<(String, std::net::SocketAddr)> = config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("listeners[{i}].address"), l.address))
        .collect();
    if config.admin.enabled {
        addrs.push(("admin.address".into(), config.admin.address));
    }
    for (key, addr) in addrs {
        std::net::TcpListener::bind(addr)
            .map_err(|e| format!("{}: {key}: cannot listen on {addr}: {e}", file.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths_follow_the_config_file_unless_set() {
        let a = instance_path(Path::new(""), Path::new("/etc/a.toml"), "pid");
        let b = instance_path(Path::new(""), Path::new("/etc/b.toml"), "pid");
        assert_ne!(a, b);
        assert_eq!(
            a,
            instance_path(Path::new(""), Path::new("/etc/a.toml"), "pid")
        );
        assert!(a.to_string_lossy().starts_with("/tmp/gatehouse-"));
        assert!(a.to_string_lossy().ends_with(".pid"));
        let set = Path::new("/run/g.pid");
        assert_eq!(instance_path(set, Path::new("/etc/a.toml"), "pid"), set);
    }
}
