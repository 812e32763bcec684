//! An OpenAPI document's operations: method, path template, parameters, request body,
//! response schemas and the authorizer its security requirements map to.

use super::document::{DocError, Documents, Loc};
use super::params::{In, Kind, Scalar, Shape, Style};
use super::schema::Schemas;
use crate::config::{ApiConfig, CredentialSource, RouteAuthConfig, ScopesMode, ValidateMode};
use crate::routing::template::{self, Segment};
use jsonschema::Validator;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One operation of the document.
pub struct Operation {
    /// The `[apis.NAME]` it belongs to.
    pub api: String,
    /// `operationId`, or `METHOD /path` when the document has none.
    pub id: String,
    pub method: http::Method,
    /// The path clients use: `base_path` and the document's template.
    pub template: String,
    pub segments: Vec<Segment>,
    /// What the security requirements map to; `None` when the operation is open.
    pub auth: Option<RouteAuthConfig>,
    /// Where the document tells clients to send each required scheme's credential.
    pub credentials: Vec<Credential>,
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
    /// Response schemas by status (`200`, `2XX`, `default`).
    pub responses: Vec<(String, Vec<Media>)>,
    pub validate: ValidateMode,
    pub validate_responses: ValidateMode,
    pub max_body_bytes: u64,
    /// Largest response body that is checked.
    pub max_response_bytes: u64,
}

/// A security scheme's credential and where the document says it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub scheme: String,
    pub source: CredentialSource,
}

/// Where a security scheme's credential travels: an `apiKey`'s `in` and `name`, or the bearer
/// token of `http` bearer, OAuth2 and OpenID Connect. `None` for what no authorizer reads
/// (`http` basic, mutual TLS).
fn credential_source(defined: &Value) -> Option<CredentialSource> {
    let field = |k: &str| defined.get(k).and_then(Value::as_str);
    match field("type")? {
        "apiKey" => {
            let name = field("name")?;
            match field("in")? {
                "header" => http::HeaderName::from_bytes(name.as_bytes())
                    .ok()
                    .map(CredentialSource::Header),
                "query" => Some(CredentialSource::Query(name.to_string())),
                "cookie" => Some(CredentialSource::Cookie(name.to_string())),
                _ => None,
            }
        }
        "http" if field("scheme")?.eq_ignore_ascii_case("bearer") => Some(CredentialSource::Bearer),
        "oauth2" | "openIdConnect" => Some(CredentialSource::Bearer),
        _ => None,
    }
}

/// A parameter and its schema.
pub struct Param {
    pub location: In,
    pub shape: Shape,
    pub required: bool,
    /// Serialized as JSON (`content: application/json`) rather than with a style.
    pub json: bool,
    pub schema: Option<Validator>,
}

/// `requestBody`.
pub struct RequestBody {
    pub required: bool,
    pub media: Vec<Media>,
}

/// A media type of a body and its schema (checked for JSON media types only).
pub struct Media {
    /// Lowercase `type/subtype`, `type/*` or `*/*`.
    pub range: String,
    pub json: bool,
    pub schema: Option<Validator>,
}

/// Read every operation of the API's document.
pub fn load(name: &str, api: &ApiConfig) -> Result<Vec<Operation>, DocError> {
    let docs = Documents::load(std::path::Path::new(&api.openapi))?;
    let root = docs.root_loc();
    let doc = docs.get(&root).unwrap_or(&Value::Null);
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    let openapi_30 = match version.get(..4) {
        Some("3.0.") => true,
        Some("3.1.") => false,
        _ => {
            return Err(root.key("openapi").error(format!(
                "{version:?}: OpenAPI 3.0 and 3.1 documents are read (Swagger 2.0 is not)"
            )))
        }
    };
    // A mapped name the document does not define is most likely a typo of one it does.
    let schemes = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object);
    for scheme in api.authorizers.keys() {
        if !schemes.is_some_and(|s| s.contains_key(scheme)) {
            return Err(root.key("components").key("securitySchemes").error(format!(
                "has no scheme {scheme:?}, which the API's `authorizers` maps"
            )));
        }
    }
    let schemas = Schemas::new(&docs, openapi_30)?;
    let reader = Reader {
        name,
        docs: &docs,
        schemas: &schemas,
        api,
    };
    reader.operations(doc, &root)
}

struct Reader<'a> {
    name: &'a str,
    docs: &'a Documents,
    schemas: &'a Schemas,
    api: &'a ApiConfig,
}

impl Reader<'_> {
    fn operations(&self, doc: &Value, root: &Loc) -> Result<Vec<Operation>, DocError> {
        let paths_loc = root.key("paths");
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return Err(paths_loc.error("the document has no `paths`"));
        };
        let base = self.api.base_path.as_deref().unwrap_or("");
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for (path, item) in paths {
            let ploc = paths_loc.key(path);
            if !path.starts_with('/') {
                return Err(ploc.error("a path starts with `/`"));
            }
            let full = format!("{base}{path}");
            let segments = template::parse(&full).map_err(|e| ploc.error(e))?;
            let (item, iloc) = self.docs.deref(item, &ploc)?;
            let common = item.get("parameters");
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let oloc = iloc.key(method);
                let (op, oloc) = self.docs.deref(op, &oloc)?;
                let id = match op.get("operationId").and_then(Value::as_str) {
                    Some(id) => id.to_string(),
                    None => format!("{} {path}", method.to_ascii_uppercase()),
                };
                if !ids.insert(id.clone()) {
                    return Err(oloc
                        .key("operationId")
                        .error(format!("operationId {id:?} is used by another operation")));
                }
                let setting = self.api.operations.get(&id);
                let (auth, credentials) = self.security(doc, root, op, &oloc)?;
                let params = self.params(common, &iloc, op, &oloc, &segments)?;
                let body = match op.get("requestBody") {
                    Some(b) => Some(self.request_body(b, &oloc.key("requestBody"))?),
                    None => None,
                };
                out.push(Operation {
                    api: self.name.to_string(),
                    method: http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                        .unwrap_or(http::Method::GET),
                    template: full.clone(),
                    segments: segments.clone(),
                    auth,
                    credentials,
                    params,
                    body,
                    responses: self.responses(op, &oloc)?,
                    validate: setting
                        .and_then(|s| s.validate)
                        .unwrap_or(self.api.validate),
                    validate_responses: setting
                        .and_then(|s| s.validate_responses)
                        .unwrap_or(self.api.validate_responses),
                    max_body_bytes: self.api.max_body_bytes,
                    max_response_bytes: self.api.max_response_bytes,
                    id,
                });
            }
        }
        Ok(out)
    }

    /// Path-level parameters, replaced by operation-level ones of the same name and place.
    fn params(
        &self,
        common: Option<&Value>,
        iloc: &Loc,
        op: &Value,
        oloc: &Loc,
        segments: &[Segment],
    ) -> Result<Vec<Param>, DocError> {
        let mut by_key: BTreeMap<(String, &'static str), Param> = BTreeMap::new();
        let lists = [
            (common, iloc.key("parameters")),
            (op.get("parameters"), oloc.key("parameters")),
        ];
        for (list, lloc) in lists {
            let Some(list) = list else { continue };
            let Some(items) = list.as_array() else {
                return Err(lloc.error("`parameters` is not a list"));
            };
            for (i, p) in items.iter().enumerate() {
                let param = self.param(p, &lloc.index(i))?;
                by_key.insert((param.shape.name.clone(), param.location.label()), param);
            }
        }
        for seg in segments {
            if let Segment::Param { name, .. } = seg {
                // The template names it, so the request always has it; check it as a string.
                by_key
                    .entry((name.clone(), In::Path.label()))
                    .or_insert_with(|| Param {
                        location: In::Path,
                        shape: Shape {
                            name: name.clone(),
                            style: Style::Simple,
                            explode: false,
                            kind: Kind::Scalar(Scalar::String),
                        },
                        required: true,
                        json: false,
                        schema: None,
                    });
            }
        }
        for ((name, location), _) in by_key.iter().filter(|(_, p)| p.location == In::Path) {
            let named = segments
                .iter()
                .any(|s| matches!(s, Segment::Param { name: n, .. } if n == name));
            if !named {
                return Err(oloc.error(format!(
                    "{location} parameter {name:?} is not in the path template"
                )));
            }
        }
        Ok(by_key.into_values().collect())
    }

    fn param(&self, p: &Value, loc: &Loc) -> Result<Param, DocError> {
        let (p, loc) = self.docs.deref(p, loc)?;
        let name = p.get("name").and_then(Value::as_str);
        let location = p.get("in").and_then(Value::as_str).and_then(In::parse);
        let (Some(name), Some(location)) = (name, location) else {
            return Err(
                loc.error("a parameter needs `name` and `in` (path, query, header or cookie)")
            );
        };
        let style = match p.get("style").and_then(Value::as_str) {
            Some(s) => Style::parse(s)
                .ok_or_else(|| loc.key("style").error(format!("unknown style {s:?}")))?,
            None => Style::default_for(location),
        };
        let explode = p
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style == Style::Form);
        let (schema_loc, json) =
            match (p.get("schema"), p.get("content").and_then(Value::as_object)) {
                (Some(_), _) => (Some(loc.key("schema")), false),
                (None, Some(content)) => match content.keys().next() {
                    Some(media) => (Some(loc.key("content").key(media).key("schema")), true),
                    None => (None, false),
                },
                (None, None) => (None, false),
            };
        let (schema, kind) = match &schema_loc {
            Some(sloc) if self.docs.get(sloc).is_some() => {
                let value = self.docs.get(sloc).unwrap_or(&Value::Null);
                let (resolved, rloc) = self.docs.deref(value, sloc)?;
                let kind = Kind::of(resolved, |sub| {
                    self.docs
                        .deref(sub, &rloc)
                        .map_or(Scalar::String, |(s, _)| Scalar::of(s))
                });
                (Some(self.schemas.validator(sloc)?), kind)
            }
            _ => (None, Kind::Scalar(Scalar::String)),
        };
        let required =
            location == In::Path || p.get("required").and_then(Value::as_bool) == Some(true);
        Ok(Param {
            location,
            shape: Shape {
                name: name.to_string(),
                style,
                explode,
                kind,
            },
            required,
            json,
            schema,
        })
    }

    fn request_body(&self, body: &Value, loc: &Loc) -> Result<RequestBody, DocError> {
        let (body, loc) = self.docs.deref(body, loc)?;
        Ok(RequestBody {
            required: body.get("required").and_then(Value::as_bool) == Some(true),
            media: self.media(body, &loc)?,
        })
    }

    /// The `content` map of a body: media ranges and the schemas of JSON ones.
    fn media(&self, holder: &Value, loc: &Loc) -> Result<Vec<Media>, DocError> {
        let Some(content) = holder.get("content").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (range, m) in content {
            let mloc = loc.key("content").key(range);
            let (m, mloc) = self.docs.deref(m, &mloc)?;
            let range = range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let json = is_json(&range);
            let schema = match m.get("schema") {
                Some(_) if json => Some(self.schemas.validator(&mloc.key("schema"))?),
                _ => None,
            };
            out.push(Media {
                range,
                json,
                schema,
            });
        }
        Ok(out)
    }

    fn responses(&self, op: &Value, oloc: &Loc) -> Result<Vec<(String, Vec<Media>)>, DocError> {
        let Some(responses) = op.get("responses").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (status, r) in responses {
            let rloc = oloc.key("responses").key(status);
            let (r, rloc) = self.docs.deref(r, &rloc)?;
            out.push((status.to_ascii_uppercase(), self.media(r, &rloc)?));
        }
        Ok(out)
    }

    /// The authorizer the operation's security requirements map to. Every alternative must
    /// lead to the same authorizer and scopes (a route has one authorizer); an empty
    /// alternative (`{}`) makes the operation open, as the document says anyone may call it.
    fn security(
        &self,
        doc: &Value,
        root: &Loc,
        op: &Value,
        oloc: &Loc,
    ) -> Result<(Option<RouteAuthConfig>, Vec<Credential>), DocError> {
        let (requirements, sloc) = match op.get("security") {
            Some(s) => (s, oloc.key("security")),
            None => match doc.get("security") {
                Some(s) => (s, root.key("security")),
                None => return Ok((None, Vec::new())),
            },
        };
        let mut credentials = Vec::new();
        let Some(alternatives) = requirements.as_array() else {
            return Err(sloc.error("`security` is not a list"));
        };
        let schemes_loc = root.key("components").key("securitySchemes");
        let mut chosen: Option<(String, Vec<String>)> = None;
        for (i, alt) in alternatives.iter().enumerate() {
            let aloc = sloc.index(i);
            let Some(alt) = alt.as_object() else {
                return Err(aloc.error("a security requirement is a map of scheme names"));
            };
            if alt.is_empty() {
                return Ok((None, Vec::new()));
            }
            for (scheme, scopes) in alt {
                let defined = doc.pointer(&format!(
                    "/components/securitySchemes/{}",
                    scheme.replace('~', "~0").replace('/', "~1")
                ));
                let Some(defined) = defined else {
                    return Err(aloc.key(scheme).error(format!(
                        "security scheme {scheme:?} is not in components.securitySchemes"
                    )));
                };
                let (defined, _) = self.docs.deref(defined, &schemes_loc.key(scheme))?;
                let Some(authorizer) = self.api.authorizers.get(scheme) else {
                    return Err(aloc.key(scheme).error(format!(
                        "security scheme {scheme:?} is not mapped to an authorizer: add it to \
                         the API's `authorizers`"
                    )));
                };
                if defined.get("type").and_then(Value::as_str).is_none() {
                    return Err(schemes_loc
                        .key(scheme)
                        .error("a security scheme needs `type`"));
                }
                if let Some(source) = credential_source(defined) {
                    let credential = Credential {
                        scheme: scheme.clone(),
                        source,
                    };
                    if !credentials.contains(&credential) {
                        credentials.push(credential);
                    }
                }
                // OAuth2 and OpenID Connect scopes, or 3.1 roles: the token must carry them.
                let mut scopes: Vec<String> = scopes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                scopes.sort();
                let this = (authorizer.clone(), scopes);
                match &chosen {
                    None => chosen = Some(this),
                    Some(c) if *c == this => {}
                    Some(c) => {
                        return Err(sloc.error(format!(
                            "the requirements map to authorizer {:?} with scopes {:?} and to {:?} \
                             with scopes {:?}; a gatehouse operation has one authorizer and one \
                             set of scopes",
                            c.0, c.1, this.0, this.1
                        )))
                    }
                }
            }
        }
        let auth = chosen.map(|(authorizer, scopes)| RouteAuthConfig {
            authorizer,
            scopes,
            scopes_mode: ScopesMode::All,
            claims: BTreeMap::new(),
        });
        Ok((auth, credentials))
    }
}

/// `application/json`, `application/problem+json`, `*/*`-free JSON media types.
pub fn is_json(range: &str) -> bool {
    range == "application/json" || range.ends_with("+json")
}
