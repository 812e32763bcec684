//! Observability: Prometheus metrics and the JSON access log.

pub mod access_log;
mod handles;
pub mod log_limit;
pub mod log_noise;
pub mod metrics;
