// Unit tests of the contract module against the pet store document of the integration tests.
use super::check::{self, Refused};
use super::*;
use crate::config::ApiConfig;
use serde_json::json;

fn api() -> ApiConfig {
    let text = format!(
        "openapi = \"{}/tests/it/fixtures/petstore/openapi.yaml\"\nupstream = \"p\"\n\
         base_path = \"/v1\"\nauthorizers = {{ petsAuth = \"jwt\", apiKey = \"keys\" }}\n",
        env!("CARGO_MANIFEST_DIR")
    );
    toml::from_str(&text).unwrap()
}

fn operations() -> Vec<Operation> {
    load("pets", &api()).unwrap()
}

fn op<'a>(ops: &'a [Operation], id: &str) -> &'a Operation {
    ops.iter().find(|o| o.id == id).unwrap()
}

fn params(op: &Operation, path: &str, query: &str, headers: &[(&str, &str)]) -> Vec<Problem> {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let mut out = Vec::new();
    let query = (!query.is_empty()).then_some(query.as_bytes());
    check::parameters(op, path.as_bytes(), query, &map, &mut out);
    out
}

fn places(problems: &[Problem]) -> Vec<(&str, &str)> {
    problems
        .iter()
        .map(|p| (p.location, p.pointer.as_str()))
        .collect()
}

#[test]
fn operations_have_templates_security_and_parameters() {
    let ops = operations();
    let ids: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "health",
            "listPets",
            "createPet",
            "getPet",
            "deletePet",
            "getOwner"
        ]
    );
    let get = op(&ops, "getPet");
    assert_eq!(get.template, "/v1/pets/{petId}");
    assert_eq!(get.method, http::Method::GET);
    let auth = get.auth.as_ref().unwrap();
    assert_eq!((auth.authorizer.as_str(), auth.scopes.len()), ("keys", 0));
    let create = op(&ops, "createPet").auth.as_ref().unwrap();
    assert_eq!(create.authorizer, "jwt");
    assert_eq!(create.scopes, ["pets:write"]);
    // The document-wide requirement applies where an operation has none; `[]` opens one.
    assert_eq!(
        op(&ops, "listPets").auth.as_ref().unwrap().scopes,
        ["pets:read"]
    );
    assert!(op(&ops, "health").auth.is_none());
}

#[test]
fn parameters_of_every_location_are_checked() {
    let ops = operations();
    let list = op(&ops, "listPets");
    let ok = params(
        list,
        "/v1/pets",
        "limit=10&tags=a&tags=b&status=sold",
        &[("x-client-version", "2.1")],
    );
    assert_eq!(ok, []);
    let bad = params(
        list,
        "/v1/pets",
        "limit=abc&tags=&status=lost",
        &[("x-client-version", "v2")],
    );
    assert_eq!(
        places(&bad),
        [
            ("header", "/X-Client-Version"),
            ("query", "/limit"),
            ("query", "/status"),
            ("query", "/tags/0"),
        ]
    );
    assert_eq!(
        places(&params(list, "/v1/pets", "limit=1000", &[])),
        [("query", "/limit")]
    );
    let get = op(&ops, "getPet");
    assert_eq!(
        params(
            get,
            "/v1/pets/7",
            "fields=name,tag",
            &[("cookie", "prefs=full")]
        ),
        []
    );
    assert_eq!(
        places(&params(
            get,
            "/v1/pets/x",
            "fields=name,age",
            &[("cookie", "a=1; prefs=huge")]
        )),
        [
            ("query", "/fields/1"),
            ("path", "/petId"),
            ("cookie", "/prefs")
        ]
    );
    assert_eq!(
        places(&params(get, "/v1/pets/0", "", &[])),
        [("path", "/petId")]
    );
    let delete = op(&ops, "deletePet");
    let missing = params(delete, "/v1/pets/7", "", &[]);
    assert_eq!(places(&missing), [("header", "/X-Request-Reason")]);
    assert_eq!(missing[0].message, "required parameter is missing");
}

#[test]
fn bodies_are_checked_with_all_of_one_of_and_formats() {
    let ops = operations();
    let create = op(&ops, "createPet");
    let body = |ct: Option<&str>, b: &serde_json::Value| {
        check::body(create, ct, Some(b.to_string().as_bytes()))
    };
    let json_ct = Some("application/json; charset=utf-8");
    let good = json!({"name": "rex", "kind": {"barks": true}, "owner": {"email": "a@b.example", "id": "7f1c2a9e-0b1d-4c3e-9f00-123456789abc"}, "tag": null});
    assert_eq!(body(json_ct, &good), Ok(()));
    let refused = body(json_ct, &json!({"kind": {"lives": 12}, "owner": {"email": "nope", "id": "x"}, "birthday": "2020-13-40"})).unwrap_err();
    assert_eq!(refused.status, 400);
    let mut got = places(&refused.problems);
    got.sort();
    assert_eq!(
        got,
        [
            ("body", ""),
            ("body", "/birthday"),
            ("body", "/kind"),
            ("body", "/owner/email"),
            ("body", "/owner/id"),
        ],
        "{:#?}",
        refused.problems
    );
    assert_eq!(body(Some("text/plain"), &good).unwrap_err().status, 415);
    assert_eq!(body(None, &good).unwrap_err().status, 415);
    let Refused { status, problems } = check::body(create, json_ct, None).unwrap_err();
    assert_eq!(
        (status, problems[0].message.as_str()),
        (400, "request body is required")
    );
    let not_json = check::body(create, json_ct, Some(b"{name")).unwrap_err();
    assert!(
        not_json.problems[0].message.starts_with("not JSON"),
        "{not_json:?}"
    );
}

#[test]
fn responses_are_checked_against_their_status() {
    let ops = operations();
    let get = op(&ops, "getPet");
    let ct = Some("application/json");
    assert_eq!(
        check::response(get, 200, ct, br#"{"id": 7, "name": "rex"}"#),
        Ok(())
    );
    let bad = check::response(get, 200, ct, br#"{"id": "7"}"#).unwrap_err();
    assert!(bad.iter().all(|p| p.location == "response"), "{bad:?}");
    assert_eq!(bad.len(), 2, "{bad:?}");
    // `default` has no content: anything goes.
    assert_eq!(
        check::response(get, 500, Some("text/html"), b"<h1>"),
        Ok(())
    );
    let list = op(&ops, "listPets");
    assert!(check::response(list, 404, None, b"").is_err());
}

#[test]
fn document_problems_name_the_file_and_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.yaml");
    let load_doc = |doc: &str, extra: &str| {
        std::fs::write(&file, doc).unwrap();
        let text = format!(
            "openapi = {:?}\nupstream = \"p\"\n{extra}",
            file.display().to_string()
        );
        let api: ApiConfig = toml::from_str(&text).unwrap();
        load("a", &api).err().map(|e| e.to_string())
    };
    let head = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n";
    let err = load_doc(&format!("{head}paths:\n  /a:\n    get:\n      parameters: [{{$ref: '#/components/parameters/Nope'}}]\n"), "").unwrap();
    assert!(err.ends_with("api.yaml#/paths/~1a/get/parameters/0: $ref \"#/components/parameters/Nope\" points to nothing"), "{err}");
    let err = load_doc(&format!("{head}paths:\n  /a:\n    get:\n      security: [{{oidc: [read]}}]\ncomponents:\n  securitySchemes:\n    oidc: {{type: openIdConnect, openIdConnectUrl: 'https://x'}}\n"), "").unwrap();
    assert!(
        err.contains("#/paths/~1a/get/security/0/oidc: security scheme \"oidc\" is not mapped"),
        "{err}"
    );
    let err = load_doc(
        &format!("{head}paths: {{}}\n"),
        "authorizers = { petAuth = \"jwt\" }\n",
    )
    .unwrap();
    assert!(
        err.ends_with("#/components/securitySchemes: has no scheme \"petAuth\", which the API's `authorizers` maps"),
        "{err}"
    );
    let err = load_doc("swagger: '2.0'\npaths: {}\n", "").unwrap();
    assert!(
        err.contains("#/openapi: \"\": OpenAPI 3.0 and 3.1"),
        "{err}"
    );
    let err = load_doc(&format!("{head}paths:\n  /a/{{id}}:\n    get:\n      parameters: [{{name: other, in: path, required: true}}]\n"), "").unwrap();
    assert!(
        err.contains("parameter \"other\" is not in the path template"),
        "{err}"
    );
    let err = load_doc(&format!("{head}paths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {{type: 12}}\n"), "").unwrap();
    assert!(
        err.contains(
            "#/paths/~1a/post/requestBody/content/application~1json/schema: invalid schema"
        ),
        "{err}"
    );
    assert_eq!(
        load_doc(&format!("{head}paths:\n  /a:\n    get: {{}}\n"), ""),
        None
    );
}

#[test]
fn credentials_say_where_each_scheme_is_sent() {
    use crate::config::CredentialSource;
    let ops = operations();
    let sources = |id: &str| -> Vec<(String, CredentialSource)> {
        op(&ops, id)
            .credentials
            .iter()
            .map(|c| (c.scheme.clone(), c.source.clone()))
            .collect()
    };
    assert_eq!(
        sources("getPet"),
        [(
            "apiKey".to_string(),
            CredentialSource::Header(http::HeaderName::from_static("x-api-key"))
        )]
    );
    assert_eq!(
        sources("listPets"),
        [("petsAuth".to_string(), CredentialSource::Bearer)]
    );
    assert!(sources("health").is_empty(), "an open operation sends none");
}
