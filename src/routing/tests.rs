// Unit tests of the parent module, compiled only under #[cfg(test)] (see `mod tests;`).
use super::*;

fn spec(hosts: &[&str], path: PathPattern, methods: &[&str]) -> RouteSpec {
    RouteSpec {
        case_insensitive: false,
        hosts: hosts
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect(),
        path,
        methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
    }
}

fn exact(p: &str) -> PathPattern {
    PathPattern::Exact(p.into())
}

fn prefix(p: &str) -> PathPattern {
    PathPattern::Prefix(p.into())
}

fn router(routes: &[(&str, RouteSpec)]) -> Router<String> {
    let mut r = Router::default();
    for (name, s) in routes {
        r.insert(s, name.to_string());
    }
    r
}

fn found(r: &Router<String>, host: &str, method: &str, path: &str) -> Option<String> {
    match r.lookup(Some(host), &method.parse().unwrap(), path.as_bytes()) {
        RouteMatch::Found { value, .. } => Some(value.clone()),
        _ => None,
    }
}

#[test]
fn exact_path_beats_longest_prefix_beats_shorter_prefix() {
    let r = router(&[
        ("root", spec(&[], prefix("/"), &[])),
        ("api", spec(&[], prefix("/api"), &[])),
        ("users", spec(&[], prefix("/api/users/"), &[])),
        ("me", spec(&[], exact("/api/users/me"), &[])),
    ]);
    assert_eq!(
        found(&r, "h", "GET", "/api/users/me").as_deref(),
        Some("me")
    );
    assert_eq!(
        found(&r, "h", "GET", "/api/users/me/x").as_deref(),
        Some("users")
    );
    assert_eq!(
        found(&r, "h", "GET", "/api/users").as_deref(),
        Some("users")
    );
    assert_eq!(found(&r, "h", "GET", "/api/other").as_deref(), Some("api"));
    assert_eq!(found(&r, "h", "GET", "/api").as_deref(), Some("api"));
    assert_eq!(found(&r, "h", "GET", "/apix").as_deref(), Some("root"));
    assert_eq!(found(&r, "h", "GET", "/").as_deref(), Some("root"));
}

#[test]
fn prefixes_match_whole_segments_only() {
    let r = router(&[("api", spec(&[], prefix("/api/"), &[]))]);
    assert_eq!(found(&r, "h", "GET", "/api/").as_deref(), Some("api"));
    assert_eq!(found(&r, "h", "GET", "/apiary"), None);
}

#[test]
fn matched_len_covers_the_prefix() {
    let r = router(&[("api", spec(&[], prefix("/api"), &[]))]);
    let m = r.lookup(None, &Method::GET, b"/api/v1");
    assert_eq!(
        m,
        RouteMatch::Found {
            value: &"api".to_string(),
            matched_len: 4
        }
    );
}

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let r = router(&[
        ("any", spec(&[], prefix("/"), &[])),
        ("wild", spec(&["*.example.com"], prefix("/"), &[])),
        ("deep", spec(&["*.eu.example.com"], prefix("/"), &[])),
        ("exact", spec(&["api.example.com"], prefix("/"), &[])),
    ]);
    assert_eq!(
        found(&r, "api.example.com", "GET", "/").as_deref(),
        Some("exact")
    );
    assert_eq!(
        found(&r, "API.Example.COM:8080", "GET", "/").as_deref(),
        Some("exact")
    );
    assert_eq!(
        found(&r, "api.example.com.", "GET", "/").as_deref(),
        Some("exact")
    );
    assert_eq!(
        found(&r, "x.example.com", "GET", "/").as_deref(),
        Some("wild")
    );
    assert_eq!(
        found(&r, "a.b.example.com", "GET", "/").as_deref(),
        Some("wild")
    );
    assert_eq!(
        found(&r, "x.eu.example.com", "GET", "/").as_deref(),
        Some("deep")
    );
    assert_eq!(found(&r, "example.com", "GET", "/").as_deref(), Some("any"));
    assert_eq!(found(&r, "other.org", "GET", "/").as_deref(), Some("any"));
}

#[test]
fn host_tables_fall_through_when_they_have_no_path() {
    let r = router(&[
        ("any-health", spec(&[], exact("/health"), &[])),
        ("api", spec(&["api.example.com"], prefix("/v1"), &[])),
    ]);
    assert_eq!(
        found(&r, "api.example.com", "GET", "/health").as_deref(),
        Some("any-health")
    );
    assert_eq!(
        found(&r, "api.example.com", "GET", "/v1/x").as_deref(),
        Some("api")
    );
    assert_eq!(found(&r, "other", "GET", "/v1/x"), None);
}

#[test]
fn method_specific_beats_any_method_and_get_implies_head() {
    let r = router(&[
        ("read", spec(&[], prefix("/items"), &["GET"])),
        ("write", spec(&[], prefix("/items"), &["POST", "PUT"])),
        ("rest", spec(&[], prefix("/items"), &[])),
    ]);
    assert_eq!(found(&r, "h", "GET", "/items/1").as_deref(), Some("read"));
    assert_eq!(found(&r, "h", "HEAD", "/items/1").as_deref(), Some("read"));
    assert_eq!(found(&r, "h", "PUT", "/items/1").as_deref(), Some("write"));
    assert_eq!(
        found(&r, "h", "DELETE", "/items/1").as_deref(),
        Some("rest")
    );
}

#[test]
fn wrong_method_gives_allow_list_and_less_specific_paths_still_match() {
    let r = router(&[
        ("read", spec(&[], prefix("/items"), &["GET"])),
        ("create", spec(&[], exact("/items/new"), &["POST"])),
    ]);
    assert_eq!(
        r.lookup(None, &Method::DELETE, b"/items/new"),
        RouteMatch::MethodNotAllowed {
            allow: "GET, HEAD, POST".into(),
            path_owner: &"create".to_string()
        }
    );
    assert_eq!(found(&r, "h", "GET", "/items/new").as_deref(), Some("read"));
    assert_eq!(
        r.lookup(None, &Method::GET, b"/nothing"),
        RouteMatch::NotFound
    );
}

#[test]
fn host_patterns_are_validated() {
    assert!(HostPattern::parse("api.example.com").is_ok());
    assert_eq!(
        HostPattern::parse("*.Example.com"),
        Ok(HostPattern::Wildcard("example.com".into()))
    );
    assert!(HostPattern::parse("api.example.com:8080").is_err());
    assert!(HostPattern::parse("a.*.com").is_err());
    assert!(HostPattern::parse("").is_err());
    assert!(HostPattern::parse("*.").is_err());
}

#[test]
fn lookup_cost_does_not_depend_on_route_count() {
    // Not a timing test: with 10,000 routes the lookup must still find the right one through
    // hashing (a linear scan would also be correct, so this guards the index, not the speed).
    let mut r = Router::default();
    for i in 0..10_000 {
        r.insert(&spec(&[], prefix(&format!("/svc{i}")), &[]), i);
    }
    assert!(matches!(
        r.lookup(None, &Method::GET, b"/svc9999/x"),
        RouteMatch::Found { value: 9999, .. }
    ));
}

#[test]
fn explicit_head_route_beats_head_implied_by_get() {
    for order in [["get", "head"], ["head", "get"]] {
        let mut r = Router::default();
        for name in order {
            let m = if name == "get" { "GET" } else { "HEAD" };
            r.insert(&spec(&[], exact("/x"), &[m]), name.to_string());
        }
        assert_eq!(
            found(&r, "h", "HEAD", "/x").as_deref(),
            Some("head"),
            "{order:?}"
        );
        assert_eq!(found(&r, "h", "GET", "/x").as_deref(), Some("get"));
    }
}

#[test]
fn root_prefix_always_covers_zero_bytes() {
    let r = router(&[
        ("root", spec(&[], prefix("/"), &[])),
        ("other", spec(&[], prefix("/other"), &[])),
    ]);
    for path in ["/", "/x", "/x/y"] {
        assert!(matches!(
            r.lookup(None, &Method::GET, path.as_bytes()),
            RouteMatch::Found { matched_len: 0, .. }
        ));
    }
}

#[test]
fn long_uppercase_hosts_still_match_their_wildcard() {
    let r = router(&[
        ("any", spec(&[], prefix("/"), &[])),
        (
            "internal",
            spec(&["*.internal.example.com"], prefix("/"), &[]),
        ),
    ]);
    let host = format!("A{}.internal.example.com", ".b".repeat(150));
    assert_eq!(found(&r, &host, "GET", "/").as_deref(), Some("internal"));
}

#[test]
fn host_syntax_is_names_or_ip_literals_with_numeric_ports() {
    for good in [
        "api.example.com",
        "API.example.com:8443",
        "10.0.0.1:80",
        "[::1]:443",
        "[2001:db8::1]",
        "svc_a.internal",
        "x:65535",
    ] {
        assert!(crate::host::valid_host(good), "{good}");
    }
    for bad in [
        "a.example.com:abc",
        "a.example.com:",
        "evil%2ecom",
        "a b",
        "",
        "[::1",
        "[zz]:1",
        "a:1:2",
        "host:123456",
        "x:99999",
        "x:65536",
        "x:0",
        "x:+80",
    ] {
        assert!(!crate::host::valid_host(bad), "{bad}");
    }
}

#[test]
fn case_insensitive_routes_match_any_case_and_keep_precedence() {
    let mut r: Router<&str> = Router::default();
    r.insert(&spec(&[], PathPattern::Prefix("/".into()), &[]), "public");
    let mut private = spec(&[], PathPattern::Prefix("/Private".into()), &[]);
    private.case_insensitive = true;
    r.insert(&private, "private");
    r.insert(
        &spec(&[], PathPattern::Exact("/private/exact".into()), &[]),
        "exact",
    );
    let found = |p: &str| match r.lookup(None, &Method::GET, p.as_bytes()) {
        RouteMatch::Found { value, .. } => *value,
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(found("/PRIVATE"), "private");
    assert_eq!(found("/private/x"), "private");
    assert_eq!(found("/pRiVaTe/X/y"), "private");
    assert_eq!(found("/privatex"), "public");
    // A case-sensitive exact route is still exact.
    assert_eq!(found("/private/exact"), "exact");
    assert_eq!(found("/private/EXACT"), "private");
}

#[test]
fn case_sensitive_routes_stay_case_sensitive() {
    let mut r: Router<&str> = Router::default();
    r.insert(&spec(&[], PathPattern::Prefix("/".into()), &[]), "public");
    r.insert(
        &spec(&[], PathPattern::Prefix("/private".into()), &[]),
        "private",
    );
    match r.lookup(None, &Method::GET, b"/PRIVATE") {
        RouteMatch::Found { value, .. } => assert_eq!(*value, "public"),
        other => panic!("{other:?}"),
    }
}
