//! `[tracing]`: OpenTelemetry spans, exported over OTLP.

use super::defaults::*;
use super::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[tracing]`: a server span per request and a client span per upstream attempt, W3C trace
/// context taken from the client and sent upstream, spans exported over OTLP in batches.
/// Without the section nothing is traced and `traceparent` passes through untouched.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector: `http(s)://host:4318` for `http/protobuf` (`/v1/traces` is added when
    /// the URL has no path), `http(s)://host:4317` for `grpc`.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Which requests are traced; the names of `OTEL_TRACES_SAMPLER`.
    #[serde(default)]
    pub sampler: SamplerKind,
    /// Share of new traces sampled by the `*traceidratio` samplers, from 0 to 1.
    #[serde(default = "default_trace_ratio")]
    pub ratio: f64,
    /// Continue a client's `traceparent` (and `tracestate`). Off at an edge whose clients
    /// are not trusted to choose trace ids or force sampling: every request starts a trace.
    #[serde(default = "default_true")]
    pub trust_incoming: bool,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More resource attributes (`"deployment.environment.name" = "prod"`).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Headers (gRPC metadata) sent to the collector, such as an API key; `env:NAME` reads
    /// one from the environment. Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// PEM bundle of the CAs that sign an `https` collector's certificate, in addition to the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Finished spans waiting for export; beyond this they are dropped and counted
    /// (`gatehouse_trace_spans_dropped_total`), never waited for.
    #[serde(default = "default_trace_queue")]
    pub queue_size: usize,
    /// Most spans in one export request.
    #[serde(default = "default_trace_batch")]
    pub batch_size: usize,
    /// Longest time a span waits for its batch to fill.
    #[serde(default = "default_trace_interval", with = "humantime_serde")]
    pub export_interval: Duration,
    /// Longest time one export request may take; its spans are dropped after that.
    #[serde(default = "default_trace_timeout", with = "humantime_serde")]
    pub export_timeout: Duration,
}

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// The standard samplers (`OTEL_TRACES_SAMPLER` values).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    /// `ratio` of the traces, by trace id, whatever the caller decided.
    Traceidratio,
    /// The caller's decision when a valid `traceparent` came in, else always on.
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    /// The caller's decision when a valid `traceparent` came in, else `ratio` of the traces.
    #[default]
    ParentbasedTraceidratio,
}
