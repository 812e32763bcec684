//! Observability: Prometheus metrics and the JSON access log.

pub mod access_log;
pub mod log_limit;
mod handles;
pub mod metrics;
