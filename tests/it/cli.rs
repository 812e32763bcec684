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

/// The README's ```toml blocks, each with the line it starts on.
fn readme_toml_blocks(readme: &str) -> Vec<(usize, &str)> {
    let mut blocks = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("```toml\n") {
        let line = readme[..readme.len() - rest.len() + start].lines().count() + 1;
        let body = &rest[start + 8..];
        let end = body.find("```").expect("an unterminated toml block");
        blocks.push((line, &body[..end]));
        rest = &body[end + 3..];
    }
    blocks
}

/// `block` made runnable here: a listener added when it shows only other sections, its
/// absolute paths moved under `root` with the files they name created (certificates and
/// keys signed by `ca`, a key list, a certificate directory, log directories), and its
/// `.internal` hosts in addresses and URLs (the examples' private zone) resolved as
/// localhost.
fn provide_readme_block(block: &str, root: &std::path::Path, ca: &crate::pki::Ca) -> String {
    let mut text = if block.contains("[[listeners]]") {
        block.to_string()
    } else {
        format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{block}")
    };
    for dir in ["/etc/gatehouse/", "/var/log/gatehouse/"] {
        text = text.replace(&format!("\"{dir}"), &format!("\"{}{dir}", root.display()));
    }
    let text = regex::Regex::new(r"[a-z0-9-]+\.internal([:/])")
        .unwrap()
        .replace_all(&text, "localhost$1")
        .into_owned();
    let quoted = regex::Regex::new(&format!(
        r#""({}/[^"]+)""#,
        regex::escape(&root.display().to_string())
    ))
    .unwrap();
    for path in quoted.captures_iter(&text) {
        let path = std::path::Path::new(&path[1]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let pair = |crt: std::path::PathBuf| {
            if !crt.exists() {
                // Each certificate its own name: two for one name are refused.
                let stem = crt.file_stem().unwrap().to_string_lossy();
                let issued = ca.server(&[&format!("{stem}.example.com")], 30);
                std::fs::write(&crt, &issued.cert).unwrap();
                std::fs::write(crt.with_extension("key"), &issued.key).unwrap();
            }
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") | Some("key") => pair(path.with_extension("crt")),
            Some("pem") => std::fs::write(path, ca.pem()).unwrap(),
            Some("txt") => {
                std::fs::write(path, format!("partner-a {}\n", "ab".repeat(32))).unwrap()
            }
            Some("log") => {}
            // An OpenAPI document (`[apis.NAME] openapi`) with one operation.
            Some("yaml") => std::fs::write(
                path,
                "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /pets/{petId}:\n    get:\n      \
                 operationId: getPet\n      security: [{apiKey: []}]\n      parameters: [{name: petId, \
                 in: path, required: true, schema: {type: integer}}]\n      responses: {200: {description: ok}}\n  \
                 /pets/{petId}/photo:\n    put:\n      operationId: uploadPhoto\n      responses: {200: {description: ok}}\n\
                 components:\n  securitySchemes:\n    apiKey: {type: apiKey, in: header, name: x-api-key}\n",
            )
            .unwrap(),
            // A directory (certificate_dir): one certificate in it.
            None | Some("d") => {
                std::fs::create_dir_all(path).unwrap();
                pair(path.join("api.crt"));
            }
            Some(other) => {
                panic!("a README path with an extension this test cannot provide: {other}")
            }
        }
    }
    text
}

/// Every ```toml block in the README passes `gatehouse check` (the binary: read, validated
/// and compiled, as at startup), with the files, variables and hosts it names provided, so
/// the docs cannot drift from the schema or from what a file must contain.
#[test]
fn every_readme_toml_block_passes_gatehouse_check() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let ca = crate::pki::Ca::new("readme ca");
    let blocks = readme_toml_blocks(&readme);
    assert!(blocks.len() >= 5, "found only {} toml blocks", blocks.len());
    let mut problems = Vec::new();
    for (line, block) in blocks {
        let file = root.path().join(format!("readme-{line}.toml"));
        std::fs::write(&file, provide_readme_block(block, root.path(), &ca)).unwrap();
        let out = Command::new(BIN)
            .args(["check", "-c"])
            .arg(&file)
            .env("GATEHOUSE_REDIS_URL", "redis://127.0.0.1:6379/0")
            .env("ACME_API_KEY", "acme-example-key-0123456789")
            .env("OTLP_API_KEY", "otlp-example-key")
            .env("GATEHOUSE_ADMIN_TOKEN", "admin-example-token-0123456789")
            .env("GATEHOUSE_READ_TOKEN", "read-example-token-0123456789")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains(": ok, version ") {
            problems.push(format!(
                "README.md:{line}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The config tour (the README's first toml block) shows every `[server]` key, set or as a
/// commented example: the list is the one gatehouse itself gives for an unknown key.
#[test]
fn the_config_tour_shows_every_server_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let (_, tour) = readme_toml_blocks(&readme)[0];
    let server = tour
        .split("\n[")
        .find(|s| s.starts_with("[server]") || s.starts_with("server]"))
        .expect("the tour has a [server] section");
    let (_, errors) = gatehouse::config::check("[server]\nno_such_key = 1\n");
    let message = errors
        .iter()
        .map(|e| e.to_string())
        .find(|m| m.contains("expected one of"))
        .expect("an unknown key lists the known ones");
    let keys: Vec<&str> = message
        .split("expected one of")
        .nth(1)
        .unwrap()
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    assert!(keys.len() >= 10, "{message}");
    let shown = |key: &str| {
        server.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let missing: Vec<&str> = keys.into_iter().filter(|k| !shown(k)).collect();
    assert!(
        missing.is_empty(),
        "[server] keys missing from the tour: {missing:?}"
    );
}

/// A config with one of each decision `explain` reports.
fn explain_config(upstream: &Upstream) -> String {
    format!(
        "[upstreams.app]\ntargets = [{{ address = \"{up}\" }}]\n\
         [limits.per_ip]\nrate = 100\nperiod = \"1s\"\nkey = [\"client_ip\"]\n\
         [authorizers.partners]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{{ consumer = \"globex\", sha256 = \"{sha}\" }}]\n\
         [hosts.\"secure.test\"]\nhttps_redirect = true\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nstrip_prefix = true\n\
         methods = [\"GET\"]\nupstream = \"app\"\nauth = \"partners\"\nlimits = [\"per_ip\"]\n\
         [[routes]]\nname = \"internal\"\npath_prefix = \"/internal\"\nip_allow = [\"10.0.0.0/8\"]\n\
         respond = {{ body = \"in\" }}\n\
         [[routes]]\nname = \"small\"\npath = \"/small\"\nmax_body_bytes = 100\n\
         respond = {{ body = \"s\" }}\n",
        up = upstream.address(),
        sha = "2a570fed1461570bf2a13db7f539939da4357b393cf9395c74c4e0a313a945a5",
    )
}

/// `gatehouse explain` for each kind of decision, on a config whose upstream counts the
/// connections it gets: none.
#[tokio::test(flavor = "multi_thread")]
async fn explain_reports_each_kind_of_decision_without_sending_anything() {
    let upstream = Upstream::named("app").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("g.toml");
    std::fs::write(
        &file,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n{}",
            explain_config(&upstream)
        ),
    )
    .unwrap();
    let explain = |method: &str, url: &str, extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["explain", "-c"])
            .arg(&file)
            .args([method, url])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let step = |v: &serde_json::Value, name: &str| {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} step: {v}"))
    };

    let v = explain("GET", &format!("{base}/api/users?id=7"), &[]);
    assert_eq!(v["outcome"]["result"], "proxied", "{v}");
    assert_eq!(v["outcome"]["upstream"], "app");
    assert_eq!(v["outcome"]["upstream_path"], "/users?id=7");
    assert_eq!(step(&v, "auth")["authorizer"], "partners");
    assert_eq!(
        step(&v, "limits")["before_auth"],
        serde_json::json!(["per_ip"])
    );
    assert_eq!(step(&v, "upstream")["targets"][0]["healthy"], true);

    let v = explain("DELETE", &format!("{base}/api/users"), &[]);
    assert_eq!(v["outcome"]["status"], 405, "{v}");
    assert_eq!(step(&v, "route")["allow"], "GET, HEAD");
    assert_eq!(step(&v, "route")["route"], "api");

    let v = explain("GET", &format!("{base}/nothing"), &[]);
    assert_eq!(v["outcome"]["status"], 404, "{v}");

    let v = explain(
        "GET",
        &format!("{base}/api/x"),
        &["-H", "Host: secure.test"],
    );
    assert_eq!(v["outcome"]["status"], 308, "{v}");
    assert_eq!(v["outcome"]["location"], "https://secure.test/api/x");

    let internal = format!("{base}/internal/x");
    let v = explain("GET", &internal, &["--client-ip", "203.0.113.9"]);
    assert_eq!(v["outcome"]["status"], 403, "{v}");
    let v = explain("GET", &internal, &["--client-ip", "10.1.2.3"]);
    assert_eq!(v["outcome"]["result"], "answered by the gateway", "{v}");

    let v = explain(
        "POST",
        &format!("{base}/small"),
        &["-H", "Content-Length: 500"],
    );
    assert_eq!(v["outcome"]["status"], 413, "{v}");

    let v = explain("GET", &format!("{base}/api/a%2Fb"), &[]);
    assert_eq!(v["outcome"]["result"], "refused", "{v}");
    assert_eq!(step(&v, "path")["allowed"], false);

    let v = explain("GET", &format!("https://127.0.0.1:{port}/api/x"), &[]);
    assert_eq!(v["outcome"]["result"], "no listener", "{v}");

    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "explain sent nothing upstream"
    );
}
