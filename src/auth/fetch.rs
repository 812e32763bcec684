//! Fetching remote keys: where a key set comes from ([`RemoteSource`]), OIDC discovery of the
//! JWKS URL, and the bounded GET of a small JSON document. Parsing the document, and when to
//! fetch, are [`super::jwks`]'s.

use super::http_client;
use std::time::Duration;

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why a document could not be fetched. Messages name the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no JWKS source")]
    NoSource,
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{url}: {message}")]
    Fetch { url: String, message: String },
}

impl FetchError {
    fn fetch(url: &str, message: impl Into<String>) -> Self {
        Self::Fetch {
            url: url.to_string(),
            message: message.into(),
        }
    }
}

/// Where a remote key set comes from and how often it is fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteSource {
    /// OIDC issuer whose discovery document names the JWKS.
    pub discovery_issuer: Option<String>,
    pub jwks_url: Option<String>,
    pub allow_http: bool,
    pub refresh: Duration,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub timeout: Duration,
}

impl RemoteSource {
    /// Whether both fetch from the same place (timings aside).
    pub fn same_origin(&self, other: &Self) -> bool {
        self.discovery_issuer == other.discovery_issuer
            && self.jwks_url == other.jwks_url
            && self.allow_http == other.allow_http
    }
}

/// The JWKS document of `remote`: its URL, its body and `Cache-Control: max-age`.
/// `discovered` keeps the JWKS URL that discovery found, for the next fetch to reuse.
pub(super) async fn jwks_document(
    remote: &RemoteSource,
    discovered: &mut Option<String>,
) -> Result<(String, Vec<u8>, Option<Duration>), FetchError> {
    let url = match (
        &remote.jwks_url,
        discovered.as_ref(),
        &remote.discovery_issuer,
    ) {
        (Some(url), _, _) => url.clone(),
        (None, Some(url), _) => url.clone(),
        (None, None, Some(issuer)) => {
            let url = discover(issuer, remote.timeout).await?;
            // The discovery document must not downgrade the key transport.
            crate::config::check_url(&url, remote.allow_http)
                .map_err(|e| FetchError::fetch(&url, format!("discovered jwks_uri: {e}")))?;
            *discovered = Some(url.clone());
            url
        }
        (None, None, None) => return Err(FetchError::NoSource),
    };
    let (body, max_age) = get(&url, remote.timeout).await?;
    Ok((url, body, max_age))
}

/// Fetch the OIDC discovery document and return its `jwks_uri`. The document's `issuer` must be
/// the configured one (OpenID Connect Discovery 1.0, section 4.3).
async fn discover(issuer: &str, timeout: Duration) -> Result<String, FetchError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let (body, _) = get(&url, timeout).await?;
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| FetchError::fetch(&url, format!("not JSON: {e}")))?;
    let found = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
    if found != issuer {
        return Err(FetchError::fetch(
            &url,
            format!("issuer {found:?} does not match the configured {issuer:?}"),
        ));
    }
    doc.get("jwks_uri")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| FetchError::fetch(&url, "no jwks_uri"))
}

/// GET a small document; returns the body and `Cache-Control: max-age`.
async fn get(url: &str, timeout: Duration) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let client = http_client().map_err(FetchError::Client)?;
    let mut resp = client
        .get(url)
        .timeout(timeout)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::fetch(url, error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(FetchError::fetch(url, format!("status {}", resp.status())));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::fetch(url, error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(FetchError::fetch(
                url,
                format!("larger than {MAX_DOCUMENT} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// The error and its causes on one line (reqwest's top-level message alone hides the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `max-age` of a Cache-Control value; `no-cache`/`no-store` count as 0.
pub fn max_age(value: &str) -> Option<Duration> {
    let mut out = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}
