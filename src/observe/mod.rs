//! Observability: Prometheus metrics, the JSON access log, and OpenTelemetry traces.

pub mod access_log;
mod handles;
pub mod log_limit;
pub mod log_noise;
pub mod metrics;
pub mod trace;
