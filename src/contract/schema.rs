//! JSON Schema validators for the document's schemas, through the `jsonschema` crate: every
//! file of the document is registered once, and each schema is compiled as a `$ref` to its
//! place, so `$ref`s inside it (to other components, other files, itself) resolve as written.

use super::document::{file_uri, DocError, Documents, Loc};
use jsonschema::{Draft, Registry, Validator};
use serde_json::{json, Value};

/// The document's files as a JSON Schema registry.
pub struct Schemas {
    registry: Registry<'static>,
    draft: Draft,
}

impl Schemas {
    /// OpenAPI 3.0 schemas are read as draft 4 (boolean `exclusiveMinimum`), with `nullable`
    /// turned into a `null` type; 3.1 schemas are JSON Schema 2020-12.
    pub fn new(docs: &Documents, openapi_30: bool) -> Result<Self, DocError> {
        let draft = if openapi_30 {
            Draft::Draft4
        } else {
            Draft::Draft202012
        };
        let mut builder = Registry::new();
        for (path, value) in &docs.files {
            let mut value = value.clone();
            adapt(&mut value, openapi_30);
            builder = builder
                .add(file_uri(path), draft.create_resource(value))
                .map_err(|e| whole(path, e))?;
        }
        let registry = builder.prepare().map_err(|e| whole(&docs.root, e))?;
        Ok(Self { registry, draft })
    }

    /// A validator for the schema at `loc`.
    pub fn validator(&self, loc: &Loc) -> Result<Validator, DocError> {
        let mut options = jsonschema::options()
            .with_draft(self.draft)
            .with_registry(&self.registry)
            .should_validate_formats(true);
        if self.draft == Draft::Draft4 {
            // OpenAPI 3.0 documents use `uuid`, which draft 4 does not define.
            options = options.with_format("uuid", is_uuid);
        }
        options
            .build(&json!({ "$ref": loc.uri() }))
            .map_err(|e| loc.error(format!("invalid schema: {e}")))
    }
}

fn whole(file: &std::path::Path, e: impl std::fmt::Display) -> DocError {
    DocError {
        file: file.to_path_buf(),
        pointer: String::new(),
        message: format!("cannot read as JSON Schema: {e}"),
    }
}

/// OpenAPI's additions to JSON Schema, written as JSON Schema: `nullable` (3.0) and the
/// ranges of the `int32`/`int64` formats.
fn adapt(value: &mut Value, openapi_30: bool) {
    match value {
        Value::Object(map) => {
            if openapi_30 && map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type") {
                    let t = t.clone();
                    map.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(e)) = map.get_mut("enum") {
                    if !e.contains(&Value::Null) {
                        e.push(Value::Null);
                    }
                }
            }
            let range = match map.get("format").and_then(Value::as_str) {
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                Some("int64") => Some((i64::MIN, i64::MAX)),
                _ => None,
            };
            if let Some((min, max)) = range {
                map.entry("minimum").or_insert(json!(min));
                map.entry("maximum").or_insert(json!(max));
            }
            for v in map.values_mut() {
                adapt(v, openapi_30);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| adapt(v, openapi_30)),
        _ => {}
    }
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
