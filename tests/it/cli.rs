//! The command line: `check`, `version`, startup errors, and the shipped config.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn check_accepts_a_valid_file_with_a_summary() {
    let (ok, stdout, _) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.a]\ntargets = [{ address = \"localhost:80\" }]\n\
         [[routes]]\nname = \"r\"\nupstream = \"a\"\n",
    );
    assert!(ok);
    assert!(stdout.starts_with("FILE: ok, version "), "{stdout}");
    assert!(stdout.contains("1 route, 1 upstream pool"), "{stdout}");
}

#[test]
fn check_lists_every_problem_with_its_key_path() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.a]\ntargets = [{ address = \"127.0.0.1:80\", weight = 0 }]\nbalance = \"random\"\n\
         [upstreams.b]\ntargets = [{ address = \"127.0.0.1:80\" }]\nhealth_check = { path = \"health\", interval = \"0s\" }\n\
         [[routes]]\nname = \"r\"\nupstream = \"mian\"\nrate_limt = 5\n\
         [[routes]]\nname = \"s\"\npath = \"/x\"\npath_prefix = \"/y\"\nrespond = {}\n",
    );
    assert!(!ok);
    // Reading problems and semantic problems in one run; the two entries that could not be
    // read (pool `a`, route 0) are left out of the checks that would only repeat them.
    let expected = [
        "FILE: 5 errors in configuration",
        "FILE: upstreams.a.balance: unknown variant `random`, expected `round_robin` or `consistent_hash`",
        "FILE: routes[0].rate_limt: unknown field `rate_limt`",
        "FILE: upstreams.b.health_check.path: must start with `/`",
        "FILE: upstreams.b.health_check.interval: must be between 100ms and 1h",
        "FILE: routes[1]: set either `path` or `path_prefix`, not both",
    ];
    for e in expected {
        assert!(stderr.contains(e), "missing {e:?} in\n{stderr}");
    }
    assert!(!stderr.contains("mian"), "{stderr}");

    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.b]\ntargets = [{ address = \"127.0.0.1:80\" }]\nhealth_check = { path = \"health\", interval = \"0s\" }\n\
         [[routes]]\nname = \"r\"\nupstream = \"mian\"\n\
         [[routes]]\nname = \"s\"\npath = \"/x\"\npath_prefix = \"/y\"\nrespond = {}\n",
    );
    assert!(!ok);
    for e in [
        "FILE: 4 errors in configuration",
        "FILE: upstreams.b.health_check.path: must start with `/`",
        "FILE: upstreams.b.health_check.interval: must be between 100ms and 1h",
        "FILE: routes[0].upstream: unknown upstream \"mian\"",
        "FILE: routes[1]: set either `path` or `path_prefix`, not both",
    ] {
        assert!(stderr.contains(e), "missing {e:?} in\n{stderr}");
    }
}

#[test]
fn check_reports_syntax_errors_with_line_and_column() {
    let (ok, _, stderr) =
        check_config("[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"r\n");
    assert!(!ok);
    assert!(stderr.contains("FILE: line 4, column"), "{stderr}");
    assert!(stderr.contains("syntax error"), "{stderr}");
}

#[test]
fn check_reports_unresolvable_targets() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.a]\ntargets = [{ address = \"no-such-host.invalid:80\" }]\n",
    );
    assert!(!ok);
    assert!(
        stderr
            .contains("upstreams.a.targets[0].address: cannot resolve \"no-such-host.invalid:80\""),
        "{stderr}"
    );
}

#[test]
fn check_of_a_missing_file_names_it() {
    let out = Command::new(BIN)
        .args(["check", "-c", "/nonexistent/g.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/g.toml") && stderr.contains("cannot read file"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("gatehouse {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check", "version"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn run_refuses_an_invalid_config_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(&path, "[[routes]]\nname = \"r\"\nupstream = \"none\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listeners: at least one `[[listeners]]` entry is required"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[0].upstream: unknown upstream \"none\""),
        "{stderr}"
    );
}

#[test]
fn run_names_a_busy_listener() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    let body = "[[routes]]\nname = \"r\"\nrespond = {}\n";
    std::fs::write(&path, Gateway::config(dir.path(), port, free_port(), body)).unwrap();
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "listeners[0].address: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_config_is_valid_and_serves_its_routes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .args(["check", "-c", &format!("{root}/conf/gatehouse.toml")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Same file with test ports, so the test does not depend on 8080/9901 being free.
    let shipped = std::fs::read_to_string(format!("{root}/conf/gatehouse.toml")).unwrap();
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let text = shipped
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace(
            "[server]",
            &format!(
                "[server]\npid_file = \"{}/p\"\nupgrade_sock = \"{}/s\"",
                dir.path().display(),
                dir.path().display()
            ),
        );
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains(&format!("127.0.0.1:{admin}"))
    );
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = client();
    let hello = format!("http://127.0.0.1:{port}/hello");
    let up = eventually(Duration::from_secs(20), || {
        let c = c.clone();
        let hello = hello.clone();
        async move { c.get(hello).send().await.is_ok() }
    })
    .await;
    assert!(up, "shipped config did not start");
    let resp = c.get(&hello).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "hello from gatehouse");
    let status = c
        .get(format!("http://127.0.0.1:{port}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    assert_eq!(status.text().await.unwrap(), r#"{"status":"ok"}"#);
    let private = format!("http://127.0.0.1:{port}/private");
    assert_eq!(c.get(&private).send().await.unwrap().status(), 401);
    let resp = c
        .get(&private)
        .header("x-api-key", "demo-key-please-change")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_readme_check_example_is_what_check_prints() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start = readme
        .find("```\nconf/examples/bad.toml:")
        .expect("the README shows the example")
        + 4;
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let out = Command::new(BIN)
        .args(["check", "-c", "conf/examples/bad.toml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), block);
}

#[test]
fn several_typos_in_one_table_are_all_reported() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.a]\ntargets = [{ address = \"127.0.0.1:2\" }]\nrate_limt = 1\nconect_timeout = \"1s\"\n\
         read_timeout = \"soon\"\n",
    );
    assert!(!ok);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "FILE: 3 errors in configuration", "{stderr}");
    for e in [
        "upstreams.a.conect_timeout: unknown field `conect_timeout`",
        "upstreams.a.rate_limt: unknown field `rate_limt`",
        "upstreams.a.read_timeout: invalid value: string \"soon\", expected a duration",
    ] {
        assert!(stderr.contains(e), "missing {e:?} in\n{stderr}");
    }
}

#[test]
fn a_missing_env_variable_is_one_error_among_the_others() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [authorizers.keys]\ntype = \"api_key\"\n\
         keys = [{ consumer = \"a\", key = \"env:GATEHOUSE_TEST_UNSET_VARIABLE\" }]\n\
         [[routes]]\nname = \"r\"\nrespond = {}\nauth = \"keys\"\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nupstream = \"nope\"\n",
    );
    assert!(!ok);
    assert_eq!(
        stderr,
        "FILE: 2 errors in configuration\n\
         \x20 FILE: authorizers.keys.keys[0].key: environment variable GATEHOUSE_TEST_UNSET_VARIABLE is not set\n\
         \x20 FILE: routes[1].upstream: unknown upstream \"nope\"\n"
    );
}

#[test]
fn a_bad_digest_or_an_unresolvable_name_causes_no_follow_on_errors() {
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [authorizers.keys]\ntype = \"api_key\"\nkeys = [{ consumer = \"a\", sha256 = \"abc\" }]\n\
         [upstreams.far]\ntargets = [{ address = \"no-such-host.invalid:80\" }]\n\
         [[routes]]\nname = \"r\"\nrespond = {}\nauth = \"keys\"\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nupstream = \"far\"\n",
    );
    assert!(!ok);
    // Both problems, each once: the route naming the authorizer and the route naming the
    // pool get no "unknown authorizer" or "unknown upstream" of their own.
    assert_eq!(
        stderr,
        "FILE: 2 errors in configuration\n\
         \x20 FILE: authorizers.keys.keys[0].sha256: not a hex SHA-256 (64 hex digits)\n\
         \x20 FILE: upstreams.far.targets[0].address: cannot resolve \"no-such-host.invalid:80\"\n"
    );
    let (ok, _, stderr) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.far]\ntargets = [{ address = \"no-such-host.invalid:80\" }]\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nupstream = \"far\"\n",
    );
    assert!(!ok);
    assert_eq!(
        stderr,
        "FILE: 1 error in configuration\n\
         \x20 FILE: upstreams.far.targets[0].address: cannot resolve \"no-such-host.invalid:80\"\n"
    );
}

/// Every ```toml block in the README is valid TOML and valid gatehouse configuration: read and
/// validated (not compiled, so the files and hosts it names need not exist), with a listener
/// added to blocks that show only other sections.
#[test]
fn every_readme_toml_block_is_a_valid_config() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // The secrets the examples read from the environment. No other test reads these names.
    for (name, value) in [
        ("GATEHOUSE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("ACME_API_KEY", "acme-example-key-0123456789"),
        ("GATEHOUSE_ADMIN_TOKEN", "admin-example-token-0123456789"),
        ("GATEHOUSE_READ_TOKEN", "read-example-token-0123456789"),
    ] {
        std::env::set_var(name, value);
    }
    let mut problems = Vec::new();
    let mut rest = readme.as_str();
    let mut blocks = 0;
    while let Some(start) = rest.find("```toml\n") {
        let line = readme[..readme.len() - rest.len() + start].lines().count() + 1;
        let body = &rest[start + 8..];
        let end = body.find("```").expect("an unterminated toml block");
        let block = &body[..end];
        rest = &body[end + 3..];
        blocks += 1;
        let text = if block.contains("[[listeners]]") {
            block.to_string()
        } else {
            format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{block}")
        };
        let (_, errors) = gatehouse::config::check(&text);
        for e in errors {
            problems.push(format!("README.md:{line}: {e}"));
        }
    }
    assert!(blocks >= 5, "found only {blocks} toml blocks");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
