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
