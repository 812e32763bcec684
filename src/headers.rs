//! Header names that more than one concern reads or writes, and [`EditHeaders`], the one way to
//! write Pingora's header types. They live in this leaf so that
//! the proxy, the authorizers and the snapshot agree on them without importing each other.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

/// The request id, sent upstream, to external authorizers and back to the client.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The host the client asked for, sent upstream and to external authorizers.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Subject of a verified client certificate, set by the gateway only.
pub static CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");

/// SHA-256 of a verified client certificate, set by the gateway only.
pub static CLIENT_CERT_FINGERPRINT: HeaderName = HeaderName::from_static("x-client-cert-sha256");

/// Header edits through Pingora's own methods, which keep its header-case map in step with the
/// header map (writing the `HeaderMap` directly would desynchronise them).
pub trait EditHeaders {
    fn map(&self) -> &HeaderMap;
    fn set(&mut self, name: &HeaderName, value: HeaderValue);
    fn remove(&mut self, name: &HeaderName);
    fn append(&mut self, name: &HeaderName, value: HeaderValue);
}

macro_rules! impl_edit_headers {
    ($t:ty) => {
        impl EditHeaders for $t {
            fn map(&self) -> &HeaderMap {
                &self.headers
            }
            fn set(&mut self, name: &HeaderName, value: HeaderValue) {
                // Only fails for invalid values, which a HeaderValue cannot be.
                let _ = self.insert_header(name.clone(), value);
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            fn append(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = self.append_header(name.clone(), value);
            }
        }
    };
}

impl_edit_headers!(RequestHeader);
impl_edit_headers!(ResponseHeader);

impl EditHeaders for HeaderMap {
    fn map(&self) -> &HeaderMap {
        self
    }
    fn set(&mut self, name: &HeaderName, value: HeaderValue) {
        self.insert(name.clone(), value);
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
    fn append(&mut self, name: &HeaderName, value: HeaderValue) {
        HeaderMap::append(self, name.clone(), value);
    }
}
