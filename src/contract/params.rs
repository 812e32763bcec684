//! Parameters: where their values are in a request, and how the OpenAPI serialization styles
//! turn those strings into the JSON value the parameter's schema is checked against.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// Where a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
    Cookie,
}

impl In {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "path" => In::Path,
            "query" => In::Query,
            "header" => In::Header,
            "cookie" => In::Cookie,
            _ => return None,
        })
    }

    /// The name in problem lists (`"in": "query"`).
    pub fn label(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
            In::Cookie => "cookie",
        }
    }
}

/// OpenAPI `style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Simple,
    Label,
    Matrix,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

impl Style {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "simple" => Style::Simple,
            "label" => Style::Label,
            "matrix" => Style::Matrix,
            "form" => Style::Form,
            "spaceDelimited" => Style::SpaceDelimited,
            "pipeDelimited" => Style::PipeDelimited,
            "deepObject" => Style::DeepObject,
            _ => return None,
        })
    }

    /// The default style of a location.
    pub fn default_for(location: In) -> Self {
        match location {
            In::Path | In::Header => Style::Simple,
            In::Query | In::Cookie => Style::Form,
        }
    }
}

/// The JSON type a string value is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
}

impl Scalar {
    /// The type a schema names (the first that is not `null`); strings otherwise.
    pub fn of(schema: &Value) -> Self {
        let named = match schema.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        };
        match named {
            Some("integer") => Scalar::Integer,
            Some("number") => Scalar::Number,
            Some("boolean") => Scalar::Boolean,
            _ => Scalar::String,
        }
    }

    /// `raw` as this type; a string that is not one stays a string, for the schema to refuse
    /// with its own message.
    pub fn read(self, raw: &str) -> Value {
        let parsed = match self {
            Scalar::String => None,
            Scalar::Integer => raw.parse::<i64>().ok().map(Value::from),
            Scalar::Number => raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            Scalar::Boolean => match raw {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
        };
        parsed.unwrap_or_else(|| Value::String(raw.to_string()))
    }
}

/// The shape of a parameter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Scalar(Scalar),
    Array(Scalar),
    /// Property names and their types.
    Object(Vec<(String, Scalar)>),
}

impl Kind {
    /// The shape a (dereferenced) schema describes; `item` and `property` dereference the
    /// schemas of array items and object properties.
    pub fn of(schema: &Value, sub: impl Fn(&Value) -> Scalar) -> Self {
        let is = |t: &str| match schema.get("type") {
            Some(Value::String(s)) => s == t,
            Some(Value::Array(ts)) => ts.iter().any(|v| v == t),
            _ => false,
        };
        if is("array") {
            Kind::Array(schema.get("items").map_or(Scalar::String, &sub))
        } else if is("object") {
            let props = schema.get("properties").and_then(Value::as_object);
            let props = props.into_iter().flatten();
            Kind::Object(props.map(|(k, v)| (k.clone(), sub(v))).collect())
        } else {
            Kind::Scalar(Scalar::of(schema))
        }
    }
}

/// How one parameter is serialized.
#[derive(Debug, Clone)]
pub struct Shape {
    pub name: String,
    pub style: Style,
    pub explode: bool,
    pub kind: Kind,
}

/// A request's parameter sources, each parsed once.
pub struct Sources<'r> {
    /// Path parameters by name, still percent-encoded.
    pub path: Vec<(&'r str, &'r [u8])>,
    /// Query pairs, decoded (`+` is a space).
    pub query: Vec<(Cow<'r, str>, Cow<'r, str>)>,
    pub headers: &'r http::HeaderMap,
    /// Cookie pairs from every `Cookie` header.
    pub cookies: Vec<(&'r str, &'r str)>,
}

impl<'r> Sources<'r> {
    pub fn new(
        path: Vec<(&'r str, &'r [u8])>,
        query: Option<&'r [u8]>,
        headers: &'r http::HeaderMap,
    ) -> Self {
        let query = query
            .map(|q| url::form_urlencoded::parse(q).collect())
            .unwrap_or_default();
        let cookies = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .collect();
        Self {
            path,
            query,
            headers,
            cookies,
        }
    }

    /// The value of the parameter as JSON, or `None` when the request does not have it.
    pub fn value(&self, location: In, shape: &Shape) -> Option<Value> {
        match location {
            In::Path => {
                let raw = self.path.iter().find(|(n, _)| *n == shape.name)?.1;
                let text = percent_encoding::percent_decode(raw).decode_utf8_lossy();
                Some(delimited(&text, shape))
            }
            In::Header => {
                let mut values = self.headers.get_all(shape.name.as_str()).iter().peekable();
                values.peek()?;
                let joined: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
                Some(delimited(&joined.join(","), shape))
            }
            In::Cookie => {
                let raw = self.cookies.iter().find(|(n, _)| *n == shape.name)?.1;
                Some(delimited(raw, shape))
            }
            In::Query => self.query_value(shape),
        }
    }

    fn query_value(&self, shape: &Shape) -> Option<Value> {
        let named = || self.query.iter().filter(|(k, _)| k == &shape.name);
        match (&shape.kind, shape.style, shape.explode) {
            (Kind::Object(props), Style::DeepObject, _) => {
                let prefix = format!("{}[", shape.name);
                let mut out = Map::new();
                for (k, v) in &self.query {
                    let Some(key) = k.strip_prefix(&prefix).and_then(|r| r.strip_suffix(']'))
                    else {
                        continue;
                    };
                    out.insert(key.to_string(), Value::String(v.to_string()));
                }
                (!out.is_empty()).then(|| typed_object(out, props))
            }
            (Kind::Object(props), Style::Form, true) => {
                let mut out = Map::new();
                for (k, v) in &self.query {
                    if props.iter().any(|(p, _)| p == k) {
                        out.insert(k.to_string(), Value::String(v.to_string()));
                    }
                }
                (!out.is_empty()).then(|| typed_object(out, props))
            }
            (Kind::Array(item), Style::Form, true) => {
                let items: Vec<Value> = named().map(|(_, v)| item.read(v)).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            _ => {
                let (_, v) = named().next()?;
                Some(delimited(v, shape))
            }
        }
    }
}

/// A value in one string: the style's prefix removed, then split for arrays and objects.
fn delimited(raw: &str, shape: &Shape) -> Value {
    let body = match shape.style {
        Style::Label => raw.strip_prefix('.').unwrap_or(raw),
        Style::Matrix => {
            let prefix = format!(";{}=", shape.name);
            raw.strip_prefix(prefix.as_str()).unwrap_or(raw)
        }
        _ => raw,
    };
    let sep = match (shape.style, shape.explode) {
        (Style::SpaceDelimited, _) => ' ',
        (Style::PipeDelimited, _) => '|',
        (Style::Label, true) => '.',
        _ => ',',
    };
    match &shape.kind {
        Kind::Scalar(s) => s.read(body),
        Kind::Array(item) => {
            if body.is_empty() {
                return Value::Array(Vec::new());
            }
            let matrix = format!(";{}=", shape.name);
            let parts: Vec<&str> = if shape.style == Style::Matrix && shape.explode {
                body.split(matrix.as_str()).collect()
            } else {
                body.split(sep).collect()
            };
            Value::Array(parts.into_iter().map(|p| item.read(p)).collect())
        }
        Kind::Object(props) => {
            let mut out = Map::new();
            if shape.explode {
                for pair in body.split(sep) {
                    if let Some((k, v)) = pair.split_once('=') {
                        out.insert(k.to_string(), Value::String(v.to_string()));
                    }
                }
            } else {
                let parts: Vec<&str> = body.split(sep).collect();
                for kv in parts.chunks(2) {
                    if let [k, v] = kv {
                        out.insert(k.to_string(), Value::String(v.to_string()));
                    }
                }
            }
            typed_object(out, props)
        }
    }
}

/// String property values read as the types their schemas name.
fn typed_object(mut map: Map<String, Value>, props: &[(String, Scalar)]) -> Value {
    for (name, scalar) in props {
        if let Some(v) = map.get_mut(name) {
            if let Value::String(s) = v {
                *v = scalar.read(s);
            }
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(name: &str, style: Style, explode: bool, kind: Kind) -> Shape {
        Shape {
            name: name.into(),
            style,
            explode,
            kind,
        }
    }

    #[test]
    fn styles_read_into_typed_json() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ids", "1,2,x".parse().unwrap());
        headers.insert("cookie", "session=abc; n=5".parse().unwrap());
        let query = b"tag=a&tag=b&limit=10&flag=true&csv=1,2&filter[min]=3&filter[q]=x+y&pipe=a|b";
        let src = Sources::new(vec![("id", b"4%202")], Some(query), &headers);
        let q = |s: Shape| src.value(In::Query, &s);
        let int = Kind::Scalar(Scalar::Integer);
        assert_eq!(
            q(shape("tag", Style::Form, true, Kind::Array(Scalar::String))),
            Some(json!(["a", "b"]))
        );
        assert_eq!(
            q(shape("limit", Style::Form, true, int.clone())),
            Some(json!(10))
        );
        assert_eq!(
            q(shape(
                "flag",
                Style::Form,
                true,
                Kind::Scalar(Scalar::Boolean)
            )),
            Some(json!(true))
        );
        assert_eq!(
            q(shape(
                "csv",
                Style::Form,
                false,
                Kind::Array(Scalar::Integer)
            )),
            Some(json!([1, 2]))
        );
        let filter = Kind::Object(vec![("min".into(), Scalar::Integer)]);
        assert_eq!(
            q(shape("filter", Style::DeepObject, true, filter)),
            Some(json!({"min": 3, "q": "x y"}))
        );
        assert_eq!(
            q(shape(
                "pipe",
                Style::PipeDelimited,
                false,
                Kind::Array(Scalar::String)
            )),
            Some(json!(["a", "b"]))
        );
        assert_eq!(q(shape("absent", Style::Form, true, int.clone())), None);
        // Not an integer: kept as the string, for the schema to refuse.
        assert_eq!(
            src.value(In::Path, &shape("id", Style::Simple, false, int)),
            Some(json!("4 2"))
        );
        assert_eq!(
            src.value(
                In::Header,
                &shape("X-Ids", Style::Simple, false, Kind::Array(Scalar::Integer))
            ),
            Some(json!([1, 2, "x"]))
        );
        assert_eq!(
            src.value(
                In::Cookie,
                &shape("n", Style::Form, true, Kind::Scalar(Scalar::Number))
            ),
            Some(json!(5.0))
        );
        let label = shape("id", Style::Label, true, Kind::Array(Scalar::String));
        assert_eq!(delimited(".a.b", &label), json!(["a", "b"]));
        let matrix = shape("id", Style::Matrix, true, Kind::Array(Scalar::String));
        assert_eq!(delimited(";id=a;id=b", &matrix), json!(["a", "b"]));
    }
}
