//! `[tracing]`.

use super::{duration_in, Config, KeyPath, Problems, MINUTE, MS};
use crate::config::{OtlpProtocol, TracingConfig};

/// Most spans buffered for export: at about 1 KiB each, 1 GiB.
const MAX_QUEUE: usize = 1 << 20;

pub(super) fn validate(config: &Config, p: &mut Problems) {
    let Some(tracing) = &config.tracing else {
        return;
    };
    let at = KeyPath::top("tracing");
    endpoint(tracing, &at, p);
    if !(0.0..=1.0).contains(&tracing.ratio) {
        p.at(at.key("ratio"), "must be between 0 and 1");
    }
    if tracing.service_name.trim().is_empty() {
        p.at(at.key("service_name"), "must not be empty");
    }
    for name in tracing.resource.keys() {
        if name.is_empty() || name.chars().any(char::is_control) {
            p.at(
                at.key("resource").key(name),
                "attribute names must be non-empty text",
            );
        }
    }
    for (name, value) in &tracing.headers {
        let path = at.key("headers").key(name);
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            p.at(path, "not a valid header name");
        } else if http::HeaderValue::from_str(value.expose()).is_err() {
            p.at(path, "the value has characters a header cannot carry");
        }
    }
    if let Some(file) = &tracing.ca_file {
        let read = std::fs::read(file).map_err(|e| e.to_string());
        let parsed = read.and_then(|pem| {
            openssl::x509::X509::stack_from_pem(&pem).map_err(|e| format!("not PEM: {e}"))
        });
        match parsed {
            Ok(certs) if certs.is_empty() => p.at(
                at.key("ca_file"),
                format!("{}: no certificate", file.display()),
            ),
            Ok(_) => {}
            Err(e) => p.at(at.key("ca_file"), format!("{}: {e}", file.display())),
        }
    }
    if !(1..=MAX_QUEUE).contains(&tracing.queue_size) {
        p.at(
            at.key("queue_size"),
            format!("must be between 1 and {MAX_QUEUE}"),
        );
    }
    if tracing.batch_size == 0 || tracing.batch_size > tracing.queue_size {
        p.at(
            at.key("batch_size"),
            "must be at least 1 and at most `queue_size`",
        );
    }
    let interval = at.key("export_interval");
    duration_in(p, interval, tracing.export_interval, MS, MINUTE);
    let timeout = at.key("export_timeout");
    duration_in(p, timeout, tracing.export_timeout, MS, MINUTE);
}

/// An `http` or `https` URL with a host; for gRPC, without a path (the service path is
/// fixed by the protocol).
fn endpoint(tracing: &TracingConfig, at: &KeyPath, p: &mut Problems) {
    let path = at.key("endpoint");
    let url = match url::Url::parse(&tracing.endpoint) {
        Ok(url) => url,
        Err(e) => return p.at(path, format!("not a URL: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return p.at(path, "must be an http:// or https:// URL with a host");
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return p.at(
            path,
            "must not carry a query, fragment or credentials (use `headers`)",
        );
    }
    if tracing.protocol == OtlpProtocol::Grpc && !matches!(url.path(), "" | "/") {
        p.at(
            path,
            "a gRPC endpoint has no path (the collector's address only, such as http://collector:4317)",
        );
    }
}
