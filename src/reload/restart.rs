//! Settings the process reads once, when it starts: sockets, worker threads, the admin API,
//! the access log file, the watches. A reload applies the rest of the file and reports these
//! as pending until the next upgrade or restart.

use crate::config::{AccessLogConfig, AdminConfig, Config, ServerConfig, TlsConfig, TracingConfig};
use serde::{Serialize, Serializer};
use std::fmt;

/// Whether two listener lists bind the same sockets with the same TLS settings; their `edge`
/// settings, and `proxy_protocol` of plain listeners, apply on reload. A TLS listener behind
/// PROXY protocol listens differently (gatehouse does its handshake), so that needs a restart.
fn same_sockets(a: &[crate::config::ListenerConfig], b: &[crate::config::ListenerConfig]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.address == y.address
                && x.tls == y.tls
                && (x.tls.is_none() || x.proxy_protocol == y.proxy_protocol)
        })
}

/// One setting that only a restart (or a graceful upgrade) applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestartOnly {
    /// Addresses and TLS settings of `[[listeners]]` (sockets are bound at startup).
    Listeners,
    ServerThreads,
    ServerWorkStealing,
    ServerUpstreamKeepalivePoolSize,
    ServerShutdownDelay,
    ServerGracePeriod,
    ServerGracefulShutdownTimeout,
    ServerWatchConfig,
    ServerWatchInterval,
    ServerTlsHandshakeThreads,
    ServerPidFile,
    ServerUpgradeSock,
    ServerLogFormat,
    ServerLogLevel,
    AdminEnabled,
    AdminAddress,
    AdminReadToken,
    AdminAdminToken,
    AdminAuditLog,
    AccessLogPath,
    /// `[tracing]` added or removed: the exporter starts with the process.
    Tracing,
    TracingEndpoint,
    TracingProtocol,
    TracingServiceName,
    TracingResource,
    TracingHeaders,
    TracingCaFile,
    TracingQueueSize,
    TracingBatchSize,
    TracingExportInterval,
    TracingExportTimeout,
    TlsWatch,
}

impl RestartOnly {
    /// The key as written in the file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Listeners => "listeners",
            Self::ServerThreads => "server.threads",
            Self::ServerWorkStealing => "server.work_stealing",
            Self::ServerUpstreamKeepalivePoolSize => "server.upstream_keepalive_pool_size",
            Self::ServerShutdownDelay => "server.shutdown_delay",
            Self::ServerGracePeriod => "server.grace_period",
            Self::ServerGracefulShutdownTimeout => "server.graceful_shutdown_timeout",
            Self::ServerWatchConfig => "server.watch_config",
            Self::ServerWatchInterval => "server.watch_interval",
            Self::ServerTlsHandshakeThreads => "server.tls_handshake_threads",
            Self::ServerPidFile => "server.pid_file",
            Self::ServerLogFormat => "server.log_format",
            Self::ServerLogLevel => "server.log_level",
            Self::ServerUpgradeSock => "server.upgrade_sock",
            Self::AdminEnabled => "admin.enabled",
            Self::AdminAddress => "admin.address",
            Self::AdminReadToken => "admin.read_token",
            Self::AdminAdminToken => "admin.admin_token",
            Self::AdminAuditLog => "admin.audit_log",
            Self::AccessLogPath => "access_log.path",
            Self::Tracing => "tracing",
            Self::TracingEndpoint => "tracing.endpoint",
            Self::TracingProtocol => "tracing.protocol",
            Self::TracingServiceName => "tracing.service_name",
            Self::TracingResource => "tracing.resource",
            Self::TracingHeaders => "tracing.headers",
            Self::TracingCaFile => "tracing.ca_file",
            Self::TracingQueueSize => "tracing.queue_size",
            Self::TracingBatchSize => "tracing.batch_size",
            Self::TracingExportInterval => "tracing.export_interval",
            Self::TracingExportTimeout => "tracing.export_timeout",
            Self::TlsWatch => "tls.watch",
        }
    }
}

impl fmt::Display for RestartOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl Serialize for RestartOnly {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

/// The restart-only settings whose value in `new` differs from the one the process runs with
/// (`started`, the config it started on), in a stable order.
pub fn pending(started: &Config, new: &Config) -> Vec<RestartOnly> {
    use RestartOnly as R;
    // Destructured without `..`: a field added to one of these sections does not compile until
    // it is listed here as restart-only or marked reloadable.
    let ServerConfig {
        threads,
        work_stealing,
        upstream_keepalive_pool_size,
        shutdown_delay,
        grace_period,
        graceful_shutdown_timeout,
        watch_config,
        watch_interval,
        tls_handshake_threads,
        pid_file,
        upgrade_sock,
        log_format,
        log_level,
    } = &started.server;
    let AdminConfig {
        enabled: admin_enabled,
        address,
        read_token,
        admin_token,
        audit_log,
    } = &started.admin;
    let AccessLogConfig {
        // Reloadable: each snapshot says whether its requests are logged.
        enabled: _,
        path: access_log_path,
    } = &started.access_log;
    let TlsConfig {
        // Reloadable: certificates are read by every load.
        certificate_dir: _,
        watch: tls_watch,
        // Reloadable: each snapshot says whether its certificates are stapled.
        ocsp_stapling: _,
    } = &started.tls;
    let (s, a) = (&new.server, &new.admin);
    // In declaration order, which is the order of the file's sections.
    [
        (
            R::Listeners,
            !same_sockets(&started.listeners, &new.listeners),
        ),
        (R::ServerThreads, *threads != s.threads),
        (R::ServerWorkStealing, *work_stealing != s.work_stealing),
        (
            R::ServerUpstreamKeepalivePoolSize,
            *upstream_keepalive_pool_size != s.upstream_keepalive_pool_size,
        ),
        (R::ServerShutdownDelay, *shutdown_delay != s.shutdown_delay),
        (R::ServerGracePeriod, *grace_period != s.grace_period),
        (
            R::ServerGracefulShutdownTimeout,
            *graceful_shutdown_timeout != s.graceful_shutdown_timeout,
        ),
        (R::ServerWatchConfig, *watch_config != s.watch_config),
        (R::ServerWatchInterval, *watch_interval != s.watch_interval),
        (
            R::ServerTlsHandshakeThreads,
            *tls_handshake_threads != s.tls_handshake_threads,
        ),
        (R::ServerPidFile, *pid_file != s.pid_file),
        (R::ServerUpgradeSock, *upgrade_sock != s.upgrade_sock),
        (R::ServerLogFormat, *log_format != s.log_format),
        (R::ServerLogLevel, *log_level != s.log_level),
        (R::AdminEnabled, *admin_enabled != a.enabled),
        (R::AdminAddress, *address != a.address),
        (R::AdminReadToken, *read_token != a.read_token),
        (R::AdminAdminToken, *admin_token != a.admin_token),
        (R::AdminAuditLog, *audit_log != a.audit_log),
        (R::AccessLogPath, *access_log_path != new.access_log.path),
    ]
    .into_iter()
    .chain(tracing_changes(
        started.tracing.as_ref(),
        new.tracing.as_ref(),
    ))
    .chain([(R::TlsWatch, *tls_watch != new.tls.watch)])
    .filter_map(|(setting, changed)| changed.then_some(setting))
    .collect()
}

/// The exporter's settings: it starts with the process. The sampler applies on reload.
fn tracing_changes(
    started: Option<&TracingConfig>,
    new: Option<&TracingConfig>,
) -> Vec<(RestartOnly, bool)> {
    use RestartOnly as R;
    let (Some(started), Some(t)) = (started, new) else {
        return vec![(R::Tracing, started.is_some() != new.is_some())];
    };
    let TracingConfig {
        endpoint,
        protocol,
        // Reloadable: each snapshot samples with its own.
        sampler: _,
        ratio: _,
        trust_incoming: _,
        service_name,
        resource,
        headers,
        ca_file,
        queue_size,
        batch_size,
        export_interval,
        export_timeout,
    } = started;
    vec![
        (R::TracingEndpoint, *endpoint != t.endpoint),
        (R::TracingProtocol, *protocol != t.protocol),
        (R::TracingServiceName, *service_name != t.service_name),
        (R::TracingResource, *resource != t.resource),
        (R::TracingHeaders, *headers != t.headers),
        (R::TracingCaFile, *ca_file != t.ca_file),
        (R::TracingQueueSize, *queue_size != t.queue_size),
        (R::TracingBatchSize, *batch_size != t.batch_size),
        (
            R::TracingExportInterval,
            *export_interval != t.export_interval,
        ),
        (R::TracingExportTimeout, *export_timeout != t.export_timeout),
    ]
}

/// `a, b, c`, for log lines.
pub fn list(settings: &[RestartOnly]) -> String {
    settings
        .iter()
        .map(|s| s.key())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(&format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{text}")).unwrap()
    }

    #[test]
    fn names_exactly_the_settings_read_at_startup() {
        let old = config("[access_log]\npath = \"/tmp/a.log\"\n");
        let new = config(
            "[access_log]\npath = \"/tmp/b.log\"\nenabled = false\n\
             [server]\nthreads = 3\n\
             [admin]\naudit_log = \"/tmp/audit.log\"\n\
             [[routes]]\nname = \"r\"\nrespond = {}\n",
        );
        let pending = pending(&old, &new);
        assert_eq!(
            pending,
            [
                RestartOnly::ServerThreads,
                RestartOnly::AdminAuditLog,
                RestartOnly::AccessLogPath
            ]
        );
        assert_eq!(
            list(&pending),
            "server.threads, admin.audit_log, access_log.path"
        );
        assert_eq!(
            serde_json::to_value(&pending).unwrap(),
            serde_json::json!(["server.threads", "admin.audit_log", "access_log.path"])
        );
        assert!(super::pending(&new, &new).is_empty());
    }

    #[test]
    fn listener_changes_are_restart_only() {
        let old = config("");
        let new = crate::config::parse(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[listeners]]\naddress = \"127.0.0.1:2\"\n",
        )
        .unwrap();
        assert_eq!(pending(&old, &new), [RestartOnly::Listeners]);
    }

    #[test]
    fn the_sampler_reloads_and_the_exporter_waits_for_a_restart() {
        let off = config("");
        let on = config("[tracing]\nendpoint = \"http://c:4318\"\n");
        assert_eq!(pending(&off, &on), [RestartOnly::Tracing]);
        assert_eq!(pending(&on, &off), [RestartOnly::Tracing]);
        let resampled = config(
            "[tracing]\nendpoint = \"http://c:4318\"\nsampler = \"always_off\"\nratio = 0.5\n\
             trust_incoming = false\n",
        );
        assert!(pending(&on, &resampled).is_empty());
        let moved = config(
            "[tracing]\nendpoint = \"http://d:4317\"\nprotocol = \"grpc\"\nqueue_size = 1000\n",
        );
        assert_eq!(
            list(&pending(&on, &moved)),
            "tracing.endpoint, tracing.protocol, tracing.queue_size"
        );
    }
}
