//! Default values of optional keys, named so serde attributes can point at them.

use crate::config::{CredentialSource, Header, KeyPart};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_keepalive_pool() -> usize {
    4096
}
pub(super) fn default_shutdown_delay() -> Duration {
    Duration::from_secs(0)
}
pub(super) fn default_grace_period() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_watch_interval() -> Duration {
    Duration::from_secs(2)
}
/// Empty: derived from the config file's path when the server starts (`server::instance_path`),
/// so two instances with different configs never share a pid file or an upgrade socket.
pub(super) fn default_pid_file() -> PathBuf {
    PathBuf::new()
}
pub(super) fn default_upgrade_sock() -> PathBuf {
    PathBuf::new()
}
pub(super) fn default_log_level() -> String {
    "info".into()
}
pub(super) fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
pub(super) fn default_io_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_retries() -> u8 {
    1
}
pub(super) fn default_weight() -> u32 {
    1
}
pub(super) fn default_health_path() -> String {
    "/".to_string()
}
pub(super) fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}
pub(super) fn default_healthy_threshold() -> u32 {
    2
}
pub(super) fn default_unhealthy_threshold() -> u32 {
    3
}
pub(super) fn default_max_fails() -> u32 {
    3
}
pub(super) fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
pub(super) fn default_redis_prefix() -> String {
    "gatehouse:".to_string()
}
pub(super) fn default_limit_period() -> Duration {
    Duration::from_secs(1)
}
pub(super) fn default_limit_key() -> Vec<KeyPart> {
    vec![KeyPart::ClientIp]
}
pub(super) fn default_max_keys() -> usize {
    100_000
}
pub(super) fn default_status() -> u16 {
    200
}
pub(super) fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_token_sources() -> Vec<CredentialSource> {
    vec![CredentialSource::Bearer]
}
pub(super) fn default_api_key_sources() -> Vec<CredentialSource> {
    vec![CredentialSource::Header(http::HeaderName::from_static(
        "x-api-key",
    ))]
}
pub(super) fn default_consumer_claim() -> String {
    "sub".to_string()
}
pub(super) fn default_consumer_header() -> Header {
    Header::from_static("x-consumer-id")
}
pub(super) fn default_identity_headers() -> Vec<Header> {
    vec![Header(http::header::AUTHORIZATION)]
}
pub(super) fn default_refresh_interval() -> Duration {
    Duration::from_secs(600)
}
pub(super) fn default_min_refresh() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_max_refresh() -> Duration {
    Duration::from_secs(86_400)
}
pub(super) fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_auth_cache_size() -> usize {
    10_000
}
pub(super) fn default_external_timeout() -> Duration {
    Duration::from_millis(500)
}
pub(super) fn default_external_ttl() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_external_deny_ttl() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_tls_min() -> String {
    "1.2".to_string()
}
pub(super) fn default_https_port() -> u16 {
    443
}
pub(super) fn default_hsts_max_age() -> Duration {
    Duration::from_secs(365 * 86_400)
}
pub(super) fn default_external_concurrency() -> usize {
    256
}

pub(super) fn default_trace_ratio() -> f64 {
    0.01
}

pub(super) fn default_service_name() -> String {
    "gatehouse".into()
}

pub(super) fn default_trace_queue() -> usize {
    8192
}

pub(super) fn default_trace_batch() -> usize {
    512
}

pub(super) fn default_trace_interval() -> Duration {
    Duration::from_secs(2)
}

pub(super) fn default_trace_timeout() -> Duration {
    Duration::from_secs(5)
}
