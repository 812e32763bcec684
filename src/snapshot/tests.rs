// Unit tests of the parent module, compiled only under #[cfg(test)] (see `mod tests;`).
use super::*;

const CHECKED: &str = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
    [upstreams.p]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
    [upstreams.p.health_check]\npath = \"/h\"\n\
    [[routes]]\nname = \"r\"\nupstream = \"p\"\n";

fn compiled(text: &str, reg: &Registries) -> Snapshot {
    compile(&config::parse(text).unwrap(), text, reg).unwrap()
}

#[test]
fn compiling_leaves_health_counters_and_key_sets_to_the_snapshot_in_use() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
        [upstreams.p]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
        [limits.l]\nrate = 1\nburst = 0\nkey = [\"route\"]\n\
        [authorizers.j]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
        jwks_url = \"http://127.0.0.1:9/jwks\"\n\
        [[routes]]\nname = \"r\"\nupstream = \"p\"\nlimits = [\"l\"]\nauth = \"j\"\n";
    let reg = Registries::new().unwrap();
    let first = compiled(text, &reg);
    let second = compiled(text, &reg);
    let target = |s: &Snapshot| s.pools[0].targets[0].state.clone();
    let keys = |s: &Snapshot| s.authorizers[0].remote_keys().cloned().unwrap();
    // Neither is in use: each has its own state, and the registries hold none of it.
    assert!(!Arc::ptr_eq(&target(&first), &target(&second)));
    assert!(!Arc::ptr_eq(&keys(&first), &keys(&second)));
    let addr = "127.0.0.1:2".parse().unwrap();
    assert!(!Arc::ptr_eq(&reg.health.state("p", addr), &target(&first)));
    let limited = |s: &Snapshot| {
        let input = crate::limit::LimitInput {
            route: "r",
            client_ip: None,
            consumer: None,
            headers: &http::HeaderMap::new(),
        };
        let mut state = crate::limit::LimitState::default();
        let now = crate::clock::unix_nanos();
        futures_lite(crate::limit::check(&s.policies, &input, now, &mut state)).is_err()
    };
    assert!(!limited(&first), "the first request passes");
    assert!(!limited(&second), "an unused compile shares no counters");
    // Once one is in use, the next compile starts from its state.
    let store = SnapshotStore::activated(first, &reg);
    let third = compiled(text, &reg);
    assert!(Arc::ptr_eq(&target(&store.load()), &target(&third)));
    assert!(Arc::ptr_eq(&keys(&store.load()), &keys(&third)));
    assert!(limited(&third), "counters carried over");
}

/// Runs a future that never waits (local limits only).
fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a local limit check waited"),
    }
}

#[test]
fn target_health_changes_at_activation_not_at_compile() {
    let reg = Registries::new().unwrap();
    let store = SnapshotStore::activated(compiled(CHECKED, &reg), &reg);
    let state = reg.health.state("p", "127.0.0.1:2".parse().unwrap());
    let hc = store.load().pools[0].health_check.clone().unwrap();
    for _ in 0..hc.unhealthy_threshold {
        state.record_check(false, &hc);
    }
    assert!(!state.is_healthy());
    let unchecked = CHECKED.replace("[upstreams.p.health_check]\npath = \"/h\"\n", "");
    let next = compiled(&unchecked, &reg);
    assert!(
        !state.is_healthy(),
        "compiling a config changed the running config's target health"
    );
    store.swap(next, &reg);
    assert!(
        state.is_healthy(),
        "checks were dropped: nothing would bring it back"
    );
    let metrics = String::from_utf8(reg.metrics.render()).unwrap();
    assert!(
        metrics.contains(r#"gatehouse_upstream_healthy{target="127.0.0.1:2",upstream="p"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_new_redis_client_is_kept_only_once_its_config_is_in_use() {
    let reg = Registries::new().unwrap();
    let with = |port: u16| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
             [redis]\nurl = \"redis://127.0.0.1:{port}/\"\n"
        )
    };
    let client = |s: &Snapshot| s.redis.as_ref().map(|(_, r)| r.clone()).unwrap();
    let store = SnapshotStore::activated(compiled(&with(1), &reg), &reg);
    let running = client(&store.load());
    // Compiled and never applied (a refused reload).
    let refused = compiled(&with(2), &reg);
    assert!(!Arc::ptr_eq(&running, &client(&refused)));
    drop(refused);
    let again = compiled(&with(1), &reg);
    assert!(
        Arc::ptr_eq(&running, &client(&again)),
        "a refused config replaced the client that the running one keeps"
    );
    store.swap(compiled(&with(2), &reg), &reg);
    let applied = client(&store.load());
    assert!(Arc::ptr_eq(&applied, &client(&compiled(&with(2), &reg))));
}

#[test]
fn route_paths_may_be_templates() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
        [upstreams.p]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
        [[routes]]\nname = \"user\"\npath = \"/users/{id}\"\nupstream = \"p\"\n\
        [[routes]]\nname = \"me\"\npath = \"/users/me\"\nupstream = \"p\"\n\
        [[routes]]\nname = \"avatar\"\npath = \"/users/{id}/avatar.{ext}\"\nupstream = \"p\"\n";
    let snapshot = compiled(text, &Registries::new().unwrap());
    let name = |path: &str| match snapshot
        .router
        .lookup(None, &http::Method::GET, path.as_bytes())
    {
        crate::routing::RouteMatch::Found { value, .. } => Some(value.name.clone()),
        _ => None,
    };
    assert_eq!(name("/users/7").as_deref(), Some("user"));
    assert_eq!(name("/users/me").as_deref(), Some("me"));
    assert_eq!(name("/users/7/avatar.png").as_deref(), Some("avatar"));
    assert_eq!(name("/users/7/x"), None);
    assert_eq!(name("/users/"), None);
    let errors = config::parse(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"a\"\npath = \"/a/{b\"\n\
         respond = {}\n[[routes]]\nname = \"b\"\npath_prefix = \"/b/{c}\"\nrespond = {}\n",
    )
    .unwrap_err();
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "routes[0].path: \"/a/{b\" is not a path template: segment \"{b\": unbalanced `{` or `}`",
            "routes[1].path_prefix: templates (`{name}`) are for `path`, not prefixes",
        ]
    );
}

/// The pet store API with the keys authorizer reading `key_sources` and `routes` before it.
fn petstore_config(key_sources: &str, routes: &str) -> String {
    let openapi = format!(
        "{}/tests/it/fixtures/petstore/openapi.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [upstreams.p]\ntargets = [{{ address = \"127.0.0.1:2\" }}]\n\
         [authorizers.jwt]\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\n\
         secret = \"0123456789abcdef0123456789abcdef-secret\"\n\
         [authorizers.keys]\ntype = \"api_key\"\nsources = {key_sources}\n\
         keys = [{{ consumer = \"c\", key = \"key-0123456789abcdef\" }}]\n\
         {routes}\
         [apis.pets]\nopenapi = {openapi:?}\nupstream = \"p\"\nbase_path = \"/v1\"\n\
         authorizers = {{ petsAuth = \"jwt\", apiKey = \"keys\" }}\n"
    )
}

#[test]
fn a_credential_the_authorizer_does_not_read_is_refused() {
    let reg = Registries::new().unwrap();
    // The document sends the key in the `x-api-key` header (and tokens as bearer).
    let text = petstore_config("[\"query:api_key\"]", "");
    let config = config::parse(&text).unwrap();
    let Err(errors) = compile(&config, &text, &reg) else {
        panic!("compiled")
    };
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "apis.pets.authorizers.apiKey: the document's scheme \"apiKey\" sends its credential \
          as `header:x-api-key`, but authorizer \"keys\" reads only query:api_key: add \
          `header:x-api-key` to its `sources`"
        ]
    );
    // Reading more places than the document names is fine.
    let text = petstore_config("[\"query:api_key\", \"header:X-Api-Key\"]", "");
    let config = config::parse(&text).unwrap();
    assert!(compile(&config, &text, &reg).is_ok());
}

#[test]
fn an_operation_a_route_would_shadow_is_refused() {
    let text = petstore_config(
        "[\"header:x-api-key\"]",
        "[[routes]]\nname = \"old\"\npath = \"/v1/pets/{petId}\"\nmethods = [\"GET\"]\nupstream = \"p\"\n",
    );
    let config = config::parse(&text).unwrap();
    let reg = Registries::new().unwrap();
    let Err(errors) = compile(&config, &text, &reg) else {
        panic!("compiled")
    };
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        ["apis.pets.openapi: operation \"getPet\": GET /v1/pets/{petId} is already served by routes[0] \"old\""]
    );
}
