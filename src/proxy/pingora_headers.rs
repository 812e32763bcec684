//! Writing the headers of Pingora's request and response types: [`EditHeaders`] (in the
//! `headers` leaf, so concerns can use it) goes through Pingora's own methods, which keep its
//! header-case map in step; the `*_without_case` functions edit the bare `http::HeaderMap` and
//! drop that map.

pub use crate::headers::EditHeaders;
use http::header::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};

/// Run `edit` on the request's headers as a plain `http::HeaderMap`, without Pingora's
/// header-case map. Pingora's own `insert_header` copies and re-parses the name of every header
/// it inserts and keeps a second map beside the `HeaderMap` (about three allocations per custom
/// header); edits on the bare map cost one hash-map insert. Header names then go upstream in
/// lower case, as HTTP/2 always sends them. The request target is kept byte for byte.
pub fn edit_request_without_case(req: &mut RequestHeader, edit: impl FnOnce(&mut HeaderMap)) {
    let from_uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let raw_target = (req.raw_path() != from_uri.as_bytes()).then(|| req.raw_path().to_vec());
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw_target {
        // The target was accepted when the request was parsed, so it parses again.
        let _ = req.set_raw_path(&raw);
    }
}

/// [`edit_request_without_case`] for a response. The reason phrase becomes the status code's
/// canonical one.
pub fn edit_response_without_case(resp: &mut ResponseHeader, edit: impl FnOnce(&mut HeaderMap)) {
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, placeholder));
    edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
}
