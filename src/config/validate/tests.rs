use super::*;
use crate::config::parse;

fn errors_of(text: &str) -> Vec<String> {
    let full = format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{text}");
    parse(&full)
        .expect_err("config should be invalid")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn names_with_control_or_bidi_characters_are_refused() {
    for name in ["a\\nb", "admin\\u202e", "x\\u200by", "tab\\there"] {
        let errs = errors_of(&format!("[[routes]]\nname = \"{name}\"\nrespond = {{}}\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("routes[0].name: route name contains the control or formatting"),
            "{errs:?}"
        );
    }
    let errs = errors_of("[[routes]]\nname = \"\"\nrespond = {}\n");
    assert_eq!(errs, ["routes[0].name: route name must not be empty"]);
    assert!(hidden_char('\u{2066}') && !hidden_char('é') && !hidden_char(' '));
}

#[test]
fn intervals_and_timeouts_have_ranges() {
    let errs = errors_of(
        "[upstreams.a]\ntargets = [{ address = \"127.0.0.1:2\" }]\nconnect_timeout = \"1000000000y\"\n\
         health_check = { interval = \"1ns\", timeout = \"2m\" }\n",
    );
    assert_eq!(
        errs,
        [
            "upstreams.a.connect_timeout: must be between 1ms and 1day",
            "upstreams.a.health_check.interval: must be between 100ms and 1h",
            "upstreams.a.health_check.timeout: must be between 1ms and 1m",
        ]
    );
}

#[test]
fn consumers_need_a_name_without_control_characters() {
    let errs = errors_of(
        "[authorizers.k]\ntype = \"api_key\"\nkeys = [{ consumer = \"\", key = \"0123456789abcdefgh\" }, \
         { consumer = \"bob\\u0000\", key = \"0123456789abcdefgz\" }]\n",
    );
    assert_eq!(
        errs,
        [
            "authorizers.k.keys[0].consumer: consumer name must not be empty",
            "authorizers.k.keys[1].consumer: consumer name contains the control or formatting \
             character U+0000",
        ]
    );
}

#[test]
fn scopes_and_claim_paths_are_checked() {
    let errs = errors_of(
        "[authorizers.j]\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\n\
         secret = \"0123456789abcdef0123456789abcdef\"\n\
         [[routes]]\nname = \"r\"\nrespond = {}\n\
         auth = { authorizer = \"j\", scopes = [\"bad scope\", \"ok\"], claims = { \"a..b\" = 1 } }\n",
    );
    assert_eq!(
        errs,
        [
            "routes[0].auth.scopes[0]: \"bad scope\" is not a valid scope",
            "routes[0].auth.claims.\"a..b\": not a claim name or dotted path",
        ]
    );
}

#[test]
fn edge_settings_are_checked_with_their_key_paths() {
    let errs = errors_of(
        "[edge]\ntrusted_proxies = [\"10.0.0.1/8\", \"nope\"]\nheader_timeout = \"1ms\"\n\
         max_header_bytes = 10\nmax_headers = 0\n\
         [hosts.\"api.example.com\"]\nip_deny = [\"300.1.1.1\"]\n\
         [[routes]]\nname = \"r\"\nrespond = {}\nip_allow = [\"2001:db8::1/32\"]\n\
         body_timeout = \"0s\"\n",
    );
    assert_eq!(
        errs,
        [
            "edge.trusted_proxies[0]: host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?",
            "edge.trusted_proxies[1]: \"nope\" is not an IP address or CIDR",
            "edge.header_timeout: must be between 100ms and 10m",
            "edge.max_header_bytes: must be between 1024 and 1048576",
            "edge.max_headers: must be between 1 and 256",
            "edge.max_uri_bytes: must be between 64 and max_header_bytes (10)",
            "hosts.\"api.example.com\".ip_deny[0]: \"300.1.1.1\" is not an IP address or CIDR",
            "routes[0].ip_allow[0]: host bits set in 2001:db8::1/32: did you mean 2001:db8::/32?",
            "routes[0].body_timeout: must be between 100ms and 1h",
        ]
    );
}

#[test]
fn listener_exceptions_are_checked_once() {
    let full = "[[listeners]]\naddress = \"127.0.0.1:1\"\nproxy_protocol = true\n\
                [listeners.edge]\nmax_headers = 1000\n";
    let errs: Vec<String> = parse(full)
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errs.contains(&"listeners[0].edge.max_headers: must be between 1 and 256".to_string()),
        "{errs:?}"
    );
    assert!(!errs.iter().any(|e| e.starts_with("edge.")), "{errs:?}");
}

#[test]
fn unknown_path_exceptions_name_the_choices() {
    let errs = errors_of("[[routes]]\nname = \"r\"\nrespond = {}\nallow_in_path = [\"slashes\"]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("routes[0].allow_in_path"), "{errs:?}");
    assert!(errs[0].contains("encoded_slash"), "{errs:?}");
}

#[test]
fn firewall_problems_are_reported_with_their_key_paths() {
    let mut errs = errors_of(
        r#"
[firewall]
managed = ["sqli"]
count_only = ["xss"]
body_inspect_bytes = 100000
inspect_headers = ["bad header"]
[[firewall.rules]]
name = "a"
action = "deny"
path_regex = "(unclosed"
[[firewall.rules]]
name = "a"
action = "limit"
path_glob = "no-slash"
[[firewall.rules]]
name = "c"
action = "deny"
[[firewall.rules]]
name = "d"
action = "log"
routes = ["nope"]
rate = 5
ips = ["10.0.0.1/8"]
headers = [{ name = "x", present = true, regex = "y" }]
json = [{ name = "user", present = true }]
[firewall.bans]
threshold = 0
window = "10ms"
status = 404
statuses = [200]
shared = true
[[routes]]
name = "r"
respond = {}
"#,
    );
    errs.sort();
    assert_eq!(
        errs,
        [
            "firewall.bans.shared: shared bans need a `[redis]` section",
            "firewall.bans.status: must be 403 or 429",
            "firewall.bans.statuses[0]: 200 is not an error status (400-599)",
            "firewall.bans.threshold: must be at least 1",
            "firewall.bans.window: must be between 1s and 1day",
            "firewall.body_inspect_bytes: must be between 1 and 65536",
            "firewall.count_only[0]: \"xss\" is not in `managed`",
            "firewall.inspect_headers[0]: \"bad header\" is not a header name",
            "firewall.rules[0].path_regex: invalid regular expression: unclosed group",
            "firewall.rules[1].name: duplicate rule name \"a\"",
            "firewall.rules[1].path_glob: must start with `/`",
            "firewall.rules[1]: `limit` needs `rate` and `per`",
            "firewall.rules[2]: a rule needs at least one condition (it would match every request)",
            "firewall.rules[3].action: `rate`, `per` and `burst` only apply to `action = \"limit\"`",
            "firewall.rules[3].headers[0]: needs exactly one of `present = true`, `absent = true` or `regex`",
            "firewall.rules[3].ips[0]: host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?",
            "firewall.rules[3].json[0].name: \"user\" is not a JSON pointer (it starts with `/`)",
            "firewall.rules[3].routes[0]: unknown route \"nope\"",
        ]
    );
}

#[test]
fn redis_is_one_server_one_cluster_or_one_sentinel_set() {
    assert_eq!(
        errors_of("[redis]\ntimeout = \"50ms\"\n"),
        [
            "redis: needs `url` (one Redis), `cluster` (the nodes of a Redis Cluster) or \
             `sentinel` (the sentinels watching a primary)"
        ]
    );
    assert_eq!(
        errors_of(
            "[redis]\nurl = \"redis://127.0.0.1:1/\"\ncluster = [\"redis://127.0.0.1:2/\"]\n"
        ),
        ["redis.cluster: only one of `url`, `cluster` and `sentinel` can be set; found url, cluster"]
    );
    assert_eq!(
        errors_of(
            "[redis]\nurl = \"redis://127.0.0.1:1/\"\n\
             [redis.sentinel]\nmaster = \"m\"\nnodes = [\"redis://127.0.0.1:26379\"]\n"
        ),
        ["redis.sentinel: only one of `url`, `cluster` and `sentinel` can be set; found url, sentinel"]
    );
    assert_eq!(
        errors_of("[redis]\ncluster = [\"redis://127.0.0.1:2/\", \"http://x\"]\n"),
        ["redis.cluster[1]: not a valid redis:// url"]
    );
    assert_eq!(
        errors_of(
            "[redis.sentinel]\nmaster = \" \"\nnodes = [\"redis://127.0.0.1:26379\", \"x\"]\ndb = -1\n"
        ),
        [
            "redis.sentinel.master: empty: give the name the sentinels monitor the primary under",
            "redis.sentinel.db: must not be negative",
            "redis.sentinel.nodes[1]: not a valid redis:// url",
        ]
    );
    assert_eq!(
        errors_of("[redis.sentinel]\nmaster = \"m\"\nnodes = []\n"),
        ["redis.sentinel.nodes: at least one sentinel is required"]
    );
    let ok = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
              [redis]\ncluster = [\"redis://127.0.0.1:2/\", \"redis://127.0.0.1:3/\"]\n";
    assert!(parse(ok).is_ok());
    let ok = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
              [redis.sentinel]\nmaster = \"m\"\nnodes = [\"redis://127.0.0.1:26379\"]\n\
              password = \"env:HOME\"\ndb = 2\n";
    assert!(parse(ok).is_ok());
}

#[test]
fn the_process_log_level_must_be_a_filter() {
    assert_eq!(
        errors_of("[server]\nlog_level = \"gatehouse=loud\"\n")
            .iter()
            .map(|e| e.split(':').next().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["server.log_level"]
    );
    let ok = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
              [server]\nlog_level = \"warn,gatehouse=debug\"\nlog_format = \"json\"\n";
    assert!(parse(ok).is_ok());
}

#[test]
fn tracing_settings_are_checked_each_with_its_key() {
    let errs = errors_of(
        "[tracing]\nendpoint = \"collector:4318\"\nratio = 1.5\nservice_name = \" \"\n\
         headers = { \"bad header\" = \"x\", ok = \"line\\nbreak\" }\nqueue_size = 0\n\
         batch_size = 0\nexport_interval = \"0s\"\nexport_timeout = \"2h\"\n\
         ca_file = \"/nonexistent/ca.pem\"\n",
    );
    assert_eq!(
        errs,
        [
            "tracing.endpoint: must be an http:// or https:// URL with a host",
            "tracing.ratio: must be between 0 and 1",
            "tracing.service_name: must not be empty",
            "tracing.headers.\"bad header\": not a valid header name",
            "tracing.headers.ok: the value has characters a header cannot carry",
            "tracing.ca_file: /nonexistent/ca.pem: No such file or directory (os error 2)",
            "tracing.queue_size: must be between 1 and 1048576",
            "tracing.batch_size: must be at least 1 and at most `queue_size`",
            "tracing.export_interval: must be between 1ms and 1m",
            "tracing.export_timeout: must be between 1ms and 1m",
        ]
    );
    let errs = errors_of(
        "[tracing]\nendpoint = \"http://c:4317/v1/traces\"\nprotocol = \"grpc\"\n\
         sampler = \"sometimes\"\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("tracing.sampler: unknown variant `sometimes`"),
        "{errs:?}"
    );
    let errs =
        errors_of("[tracing]\nendpoint = \"http://c:4317/v1/traces\"\nprotocol = \"grpc\"\n");
    assert_eq!(
        errs,
        ["tracing.endpoint: a gRPC endpoint has no path (the collector's address only, such as http://collector:4317)"]
    );
    let errs = errors_of("[tracing]\nendpoint = \"https://user:pw@c/v1/traces\"\n");
    assert_eq!(
        errs,
        ["tracing.endpoint: must not carry a query, fragment or credentials (use `headers`)"]
    );
    let errs = errors_of("[tracing]\nprotocol = \"grpc\"\n");
    assert_eq!(errs, ["tracing: missing field `endpoint`"]);
}

#[test]
fn acme_settings_are_checked_each_under_its_key() {
    let errs = errors_of(
        "[acme]\ndirectory = \"http://ca.example/dir\"\nemail = \"not an address\"\n\
         storage = \"/var/lib/gatehouse/acme\"\nhosts = [\"*.example.com\", \"10.0.0.1\", \"ok.example.com\"]\n\
         challenge = \"tls-alpn-01\"\nexternal_account = { kid = \"\", hmac_key = \"no!\" }\n\
         [hosts.\"api.example.com\"]\nacme = true\n",
    );
    assert_eq!(
        errs,
        [
            "acme.directory: an ACME directory is an https:// URL (RFC 8555)",
            "acme.email: expected one address like ops@example.com",
            "acme.external_account.kid: must not be empty",
            "acme.external_account.hmac_key: expected the base64url MAC key the CA gave",
            "acme.hosts[0]: a wildcard name needs the DNS-01 challenge, which gatehouse does not answer; list the exact names",
            "acme.hosts[1]: an IP address, not a DNS name",
            "acme.challenge: \"tls-alpn-01\" is answered on a TLS listener (port 443) that does not require client certificates, and there is none",
        ]
    );
    let errs = errors_of("[hosts.\"api.example.com\"]\nacme = true\n");
    assert_eq!(
        errs,
        ["hosts.\"api.example.com\".acme: needs an [acme] section (directory, storage)"]
    );
    let errs = errors_of("[acme]\ndirectory = \"https://ca.example/dir\"\nstorage = \"s\"\n");
    assert_eq!(
        errs,
        ["acme.hosts: no host gets a certificate: list them here or set `acme = true` in [hosts.\"NAME\"]"]
    );
    let errs =
        errors_of("[acme]\ndirectory = \"https://ca.example/dir\"\nstorage = \"s\"\nport = 80\n");
    assert!(
        errs[0].starts_with("acme.port: unknown field `port`"),
        "{errs:?}"
    );
}
