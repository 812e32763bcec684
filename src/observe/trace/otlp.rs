//! The OTLP span exporter for `[tracing]`: HTTP/protobuf through the reqwest client gatehouse
//! already uses for JWKS and authorizers, or gRPC through tonic. No retries inside the
//! exporter: a failed batch is dropped and counted by `export`, and the next one is tried.

use crate::config::{OtlpProtocol, TracingConfig};
use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SpanExporter as _;
use opentelemetry_sdk::Resource;

/// The exporter for `config`, with its resource (`service.name`, `service.version`, the
/// configured attributes) set. Must run inside a Tokio runtime (the gRPC channel).
pub fn exporter(config: &TracingConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let ca = match &config.ca_file {
        Some(file) => Some(
            std::fs::read(file).map_err(|e| format!("tracing.ca_file: {}: {e}", file.display()))?,
        ),
        None => None,
    };
    let built =
        match config.protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut client = reqwest::Client::builder().timeout(config.export_timeout);
                if let Some(pem) = &ca {
                    for cert in reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| format!("tracing.ca_file: {e}"))?
                    {
                        client = client.add_root_certificate(cert);
                    }
                }
                let client = client
                    .build()
                    .map_err(|e| format!("tracing: cannot build the HTTP client: {e}"))?;
                let headers = config
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.expose().to_string()))
                    .collect();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(Reqwest(client))
                    .with_endpoint(http_endpoint(&config.endpoint))
                    .with_timeout(config.export_timeout)
                    .with_headers(headers)
                    .with_retry_policy(RetryPolicy::disabled())
                    .build()
            }
            OtlpProtocol::Grpc => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in &config.headers {
                    let name = tonic::metadata::MetadataKey::from_bytes(
                        name.to_ascii_lowercase().as_bytes(),
                    )
                    .map_err(|_| format!("tracing.headers.{name}: not a valid metadata name"))?;
                    let value = value.expose().parse().map_err(|_| {
                        format!("tracing.headers.{name}: not a valid metadata value")
                    })?;
                    metadata.insert(name, value);
                }
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(config.endpoint.trim_end_matches('/'))
                    .with_timeout(config.export_timeout)
                    .with_metadata(metadata)
                    .with_retry_policy(RetryPolicy::disabled());
                if config.endpoint.starts_with("https://") {
                    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                    if let Some(pem) = &ca {
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    builder = builder.with_tls_config(tls);
                }
                builder.build()
            }
        };
    let mut exporter = built.map_err(|e| format!("tracing.endpoint: {e}"))?;
    exporter.set_resource(&resource(config));
    Ok(exporter)
}

/// The HTTP endpoint: `/v1/traces` added to a URL without a path, as for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; a URL with a path is used as it is.
pub fn http_endpoint(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(url) if url.path() == "/" && !endpoint.ends_with('/') => format!("{endpoint}/v1/traces"),
        Ok(url) if url.path() == "/" => format!("{endpoint}v1/traces"),
        _ => endpoint.to_string(),
    }
}

fn resource(config: &TracingConfig) -> Resource {
    let attributes = config
        .resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
    Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(attributes)
        .build()
}

/// gatehouse's reqwest client as the exporter's HTTP client (opentelemetry-http's own
/// adapter is for another reqwest version).
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Reqwest {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let mut out = Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_base_url_gets_the_traces_path() {
        for (given, used) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("https://c/otlp/v1/traces", "https://c/otlp/v1/traces"),
        ] {
            assert_eq!(super::http_endpoint(given), used);
        }
    }
}
