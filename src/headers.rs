//! Header names that more than one concern reads or writes. They live in this leaf so that
//! the proxy, the authorizers and the snapshot agree on them without importing each other.

use http::HeaderName;

/// The request id, sent upstream, to external authorizers and back to the client.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The host the client asked for, sent upstream and to external authorizers.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Subject of a verified client certificate, set by the gateway only.
pub static CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");

/// SHA-256 of a verified client certificate, set by the gateway only.
pub static CLIENT_CERT_FINGERPRINT: HeaderName = HeaderName::from_static("x-client-cert-sha256");
