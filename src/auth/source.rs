//! Where a credential is read from: `Authorization: Bearer`, a header, a query parameter or a
//! cookie. The first configured source that is present wins.

use super::Reason;
use http::header::{self, HeaderName};
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// One place a credential may be carried (parsed with the config).
pub use crate::config::CredentialSource as Source;

impl Source {
    /// The request header this source reads, which can be removed before proxying.
    pub fn header(&self) -> Option<HeaderName> {
        match self {
            Self::Bearer => Some(header::AUTHORIZATION),
            Self::Header(name) => Some(name.clone()),
            Self::Query(_) | Self::Cookie(_) => None,
        }
    }
}

/// The credential from the first source present. A source present more than once is
/// malformed: two values would let a client show one value to the gateway and another to the
/// upstream.
pub fn extract<'a>(sources: &[Source], req: &'a RequestHeader) -> Result<Cow<'a, str>, Reason> {
    for source in sources {
        if let Some(found) = extract_one(source, req)? {
            return Ok(found);
        }
    }
    Err(Reason::MissingCredentials)
}

fn single_header<'a>(req: &'a RequestHeader, name: &HeaderName) -> Result<Option<&'a str>, Reason> {
    let mut values = req.headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reason::Malformed);
    }
    first.to_str().map(Some).map_err(|_| Reason::Malformed)
}

fn extract_one<'a>(
    source: &Source,
    req: &'a RequestHeader,
) -> Result<Option<Cow<'a, str>>, Reason> {
    let value = match source {
        Source::Bearer => {
            let Some(value) = single_header(req, &header::AUTHORIZATION)? else {
                return Ok(None);
            };
            let (scheme, token) = value.split_once([' ', '\t']).unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                // Another scheme (Basic, ...) is not ours to judge: as if absent.
                return Ok(None);
            }
            Cow::Borrowed(token.trim())
        }
        Source::Header(name) => match single_header(req, name)? {
            Some(v) => Cow::Borrowed(v.trim()),
            None => return Ok(None),
        },
        Source::Query(name) => {
            let query = req.uri.query().unwrap_or("");
            let mut found = None;
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if percent_decode(k).as_deref() == Some(name.as_str()) {
                    if found.is_some() {
                        return Err(Reason::Malformed);
                    }
                    found = Some(percent_decode(v).ok_or(Reason::Malformed)?);
                }
            }
            match found {
                Some(v) => v,
                None => return Ok(None),
            }
        }
        Source::Cookie(name) => {
            let mut found = None;
            for header in req.headers.get_all(header::COOKIE) {
                let header = header.to_str().map_err(|_| Reason::Malformed)?;
                for pair in header.split(';') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k.trim() == name {
                        if found.is_some() {
                            return Err(Reason::Malformed);
                        }
                        found = Some(Cow::Borrowed(v.trim().trim_matches('"')));
                    }
                }
            }
            match found {
                Some(v) => v,
                None => return Ok(None),
            }
        }
    };
    if value.is_empty() {
        return Err(Reason::Malformed);
    }
    Ok(Some(value))
}

/// Decode `%XX` escapes and `+`; `None` when the result is not UTF-8 or an escape is broken.
pub(crate) fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // from_str_radix alone would take a sign (`%+1`).
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn get(sources: &[&str], r: &RequestHeader) -> Result<String, Reason> {
        let sources: Vec<Source> = sources.iter().map(|s| Source::parse(s).unwrap()).collect();
        extract(&sources, r).map(|c| c.into_owned())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_absent() {
        assert_eq!(
            get(&["bearer"], &req("/", &[("authorization", "bearer abc")])),
            Ok("abc".into())
        );
        assert_eq!(
            get(&["bearer"], &req("/", &[("authorization", "BEARER  abc ")])),
            Ok("abc".into())
        );
        assert_eq!(
            get(
                &["bearer"],
                &req("/", &[("authorization", "Basic dXNlcg==")])
            ),
            Err(Reason::MissingCredentials)
        );
        assert_eq!(
            get(&["bearer"], &req("/", &[("authorization", "Bearer ")])),
            Err(Reason::Malformed)
        );
    }

    #[test]
    fn duplicated_credentials_are_refused() {
        let r = req(
            "/",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        assert_eq!(get(&["bearer"], &r), Err(Reason::Malformed));
        assert_eq!(
            get(&["query:k"], &req("/?k=a&k=b", &[])),
            Err(Reason::Malformed)
        );
        assert_eq!(
            get(
                &["cookie:s"],
                &req("/", &[("cookie", "s=a"), ("cookie", "x=1; s=b")])
            ),
            Err(Reason::Malformed)
        );
    }

    #[test]
    fn sources_are_tried_in_order() {
        let r = req(
            "/p?access_token=q%2Bx&other=1",
            &[("cookie", "a=1; session=c"), ("x-token", "h")],
        );
        assert_eq!(get(&["bearer", "query:access_token"], &r), Ok("q+x".into()));
        assert_eq!(
            get(&["cookie:session", "header:x-token"], &r),
            Ok("c".into())
        );
        assert_eq!(
            get(&["header:x-token", "cookie:session"], &r),
            Ok("h".into())
        );
        assert_eq!(get(&["cookie:nope"], &r), Err(Reason::MissingCredentials));
        assert_eq!(
            get(&["query:k"], &req("/?k=%+1", &[])),
            Err(Reason::Malformed)
        );
        assert_eq!(
            get(&["bearer"], &req("/", &[("authorization", "Bearer\tabc")])),
            Ok("abc".into())
        );
    }

    #[test]
    fn parse_rejects_unknown_sources() {
        assert!(Source::parse("form:x").is_err());
        assert!(Source::parse("header:").is_err());
        assert!(Source::parse("header:bad name").is_err());
        assert_eq!(
            Source::parse("bearer").unwrap().header(),
            Some(header::AUTHORIZATION)
        );
    }
}
