use super::*;
use crate::config::parse_origin;

fn policy(extra: &str) -> CorsPolicy {
    let text = format!("allow_origins = [\"https://app.example.com\", \"https://*.example.org\", \"http://localhost:3000\"]\n{extra}");
    let config: CorsConfig = toml::from_str(&text).unwrap();
    CorsPolicy::compile("web", &config)
}

fn origin(o: &str) -> HeaderValue {
    HeaderValue::from_str(o).unwrap()
}

fn preflight_headers(origin: &str, method: &str, headers: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
    h.insert(
        header::ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_str(method).unwrap(),
    );
    if let Some(v) = headers {
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn origins_match_exactly_or_as_subdomains() {
    let p = policy("");
    for allowed in [
        "https://app.example.com",
        "HTTPS://APP.example.com",
        "https://a.example.org",
        "https://a.b.example.org",
        "http://localhost:3000",
    ] {
        assert!(p.allows(&origin(allowed)), "{allowed}");
    }
    for refused in [
        "https://example.org",
        "http://a.example.org",
        "https://a.example.org:8443",
        "https://evil.com/.example.org",
        "https://app.example.com.evil.com",
        "https://evilexample.org",
        "https://.example.org",
        "http://localhost:3001",
        "http://localhost",
        "null",
        "https://app.example.com/",
    ] {
        assert!(!p.allows(&origin(refused)), "{refused}");
    }
}

#[test]
fn origin_patterns_are_checked() {
    assert!(parse_origin("null").is_err());
    for bad in [
        "app.example.com",
        "https://app.example.com/path",
        "https://",
        "https://host:",
        "https://host:123456",
        "https://a*.example.com",
        "https://*.[::1]",
        "https://[::1",
    ] {
        assert!(parse_origin(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_origin("HTTPS://App.Example.com:8443"),
        Ok(CorsOrigin::Exact("https://app.example.com:8443".into()))
    );
    assert_eq!(
        parse_origin("http://[::1]:8080"),
        Ok(CorsOrigin::Exact("http://[::1]:8080".into()))
    );
    assert_eq!(
        parse_origin("https://*.example.com"),
        Ok(CorsOrigin::Subdomains {
            prefix: "https://".into(),
            suffix: ".example.com".into()
        })
    );
}

#[test]
fn a_preflight_is_answered_for_allowed_origins_methods_and_headers() {
    let p = policy("allow_headers = [\"Authorization\", \"X-Trace\"]\nallow_credentials = true\nmax_age = \"1h\"");
    let h = preflight_headers(
        "https://a.example.org",
        "PUT",
        Some("authorization, content-type,x-trace"),
    );
    let Preflight::Allowed(headers) = p.preflight(&h) else {
        panic!("refused")
    };
    let get = |n: HeaderName| {
        headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        get(header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some("https://a.example.org")
    );
    assert_eq!(
        get(header::ACCESS_CONTROL_ALLOW_METHODS).as_deref(),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE")
    );
    assert_eq!(
        get(header::ACCESS_CONTROL_ALLOW_HEADERS).as_deref(),
        Some("authorization, content-type, x-trace")
    );
    assert_eq!(
        get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).as_deref(),
        Some("true")
    );
    assert_eq!(get(header::ACCESS_CONTROL_MAX_AGE).as_deref(), Some("3600"));
    assert!(get(header::VARY).unwrap().starts_with("Origin"));

    let refused = |h: HeaderMap| match p.preflight(&h) {
        Preflight::Refused(reason) => reason,
        Preflight::Allowed(_) => "allowed",
    };
    assert_eq!(
        refused(preflight_headers("https://evil.com", "GET", None)),
        "CORS preflight refused: origin not allowed"
    );
    assert_eq!(
        refused(preflight_headers("https://app.example.com", "TRACE", None)),
        "CORS preflight refused: method not allowed"
    );
    assert_eq!(
        refused(preflight_headers("https://app.example.com", "get", None)),
        "CORS preflight refused: method not allowed",
        "methods are case-sensitive"
    );
    assert_eq!(
        refused(preflight_headers(
            "https://app.example.com",
            "GET",
            Some("x-admin")
        )),
        "CORS preflight refused: header not allowed"
    );
}

#[test]
fn any_origin_without_credentials_is_a_star_and_does_not_vary() {
    let config: CorsConfig = toml::from_str(
        "allow_origins = [\"*\"]\nallow_headers = [\"*\"]\nexpose_headers = [\"x-total\"]",
    )
    .unwrap();
    let p = CorsPolicy::compile("open", &config);
    let o = origin("https://anything.test");
    let headers: Vec<_> = p.response_headers(Some(&o)).collect();
    assert_eq!(
        headers,
        [
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*")
            ),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("x-total")
            ),
        ]
    );
    let h = preflight_headers("https://anything.test", "DELETE", Some("x-anything"));
    assert!(matches!(p.preflight(&h), Preflight::Allowed(_)));
}

#[test]
fn other_answers_carry_the_origin_only_when_it_is_allowed() {
    let p = policy("allow_credentials = true\nexpose_headers = [\"x-request-id\"]");
    let o = origin("https://app.example.com");
    let headers: Vec<_> = p.response_headers(Some(&o)).collect();
    assert_eq!(
        headers,
        [
            (header::VARY, HeaderValue::from_static("Origin")),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone()),
            (
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true")
            ),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("x-request-id")
            ),
        ]
    );
    let evil = origin("https://evil.com");
    let headers: Vec<_> = p.response_headers(Some(&evil)).collect();
    assert_eq!(
        headers,
        [(header::VARY, HeaderValue::from_static("Origin"))]
    );
    assert_eq!(p.response_headers(None).count(), 1);
}

#[test]
fn only_options_with_origin_and_a_requested_method_is_a_preflight() {
    let h = preflight_headers("https://a.test", "GET", None);
    assert!(is_preflight(&Method::OPTIONS, &h));
    assert!(!is_preflight(&Method::GET, &h));
    let mut plain = HeaderMap::new();
    plain.insert(header::ORIGIN, origin("https://a.test"));
    assert!(!is_preflight(&Method::OPTIONS, &plain));
}
