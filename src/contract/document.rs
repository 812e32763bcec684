//! Reading an OpenAPI document and the local files its `$ref`s name, and following those
//! references. Every problem names the file and the JSON pointer where it is.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest chain of `$ref`s to `$ref`s followed before giving up (a loop, most likely).
const MAX_REF_HOPS: usize = 32;

/// Most files one document may pull in through `$ref`s.
const MAX_FILES: usize = 256;

/// A problem in the document: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub file: PathBuf,
    /// JSON pointer (`/paths/~1pets/get`); empty for the whole file.
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}#{}: {}",
            self.file.display(),
            self.pointer,
            self.message
        )
    }
}

/// A place in the document set: a file and a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub pointer: String,
}

impl Loc {
    /// The location of `key` under this one.
    pub fn key(&self, key: &str) -> Loc {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        Loc {
            file: self.file.clone(),
            pointer: format!("{}/{escaped}", self.pointer),
        }
    }

    pub fn index(&self, i: usize) -> Loc {
        self.key(&i.to_string())
    }

    /// A problem at this location.
    pub fn error(&self, message: impl Into<String>) -> DocError {
        DocError {
            file: self.file.clone(),
            pointer: self.pointer.clone(),
            message: message.into(),
        }
    }

    /// `file:///abs/path#pointer`, how the JSON Schema registry knows this place.
    pub fn uri(&self) -> String {
        let mut uri = file_uri(&self.file);
        uri.push('#');
        // RFC 6901 section 6: a pointer in a URI fragment is percent-encoded.
        escape_into(&mut uri, &self.pointer, b"/-._~!$&'()*+,;=:@");
        uri
    }
}

/// The URI a file is registered under for JSON Schema `$ref`s.
pub fn file_uri(file: &Path) -> String {
    let mut uri = String::from("file://");
    escape_into(&mut uri, &file.to_string_lossy(), b"/-._~");
    uri
}

/// `text` with every byte outside ASCII letters, digits and `keep` percent-encoded.
fn escape_into(out: &mut String, text: &str, keep: &[u8]) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The root document and every local file reachable through its `$ref`s, parsed.
#[derive(Debug)]
pub struct Documents {
    pub root: PathBuf,
    pub files: BTreeMap<PathBuf, Value>,
}

impl Documents {
    /// Read `root` and, transitively, every file its `$ref`s name.
    pub fn load(root: &Path) -> Result<Self, DocError> {
        let root = absolute(root);
        let mut files = BTreeMap::new();
        let mut pending = vec![root.clone()];
        while let Some(file) = pending.pop() {
            if files.contains_key(&file) {
                continue;
            }
            if files.len() >= MAX_FILES {
                return Err(whole(
                    &file,
                    format!("more than {MAX_FILES} files referenced"),
                ));
            }
            let value = parse_file(&file)?;
            let mut refs = Vec::new();
            collect_refs(
                &value,
                &Loc {
                    file: file.clone(),
                    pointer: String::new(),
                },
                &mut refs,
            );
            for (at, target) in refs {
                let (path, _) = split_ref(&target);
                if path.is_empty() {
                    continue;
                }
                if path.contains("://") {
                    return Err(at.error(format!(
                        "$ref {target:?}: only local files are read, not URLs"
                    )));
                }
                pending.push(resolve_path(&file, path));
            }
            files.insert(file, value);
        }
        Ok(Self { root, files })
    }

    /// The root document's location.
    pub fn root_loc(&self) -> Loc {
        Loc {
            file: self.root.clone(),
            pointer: String::new(),
        }
    }

    /// The value at `loc`.
    pub fn get(&self, loc: &Loc) -> Option<&Value> {
        self.files.get(&loc.file)?.pointer(&loc.pointer)
    }

    /// `value` (found at `loc`) with its `$ref` chain followed: the target and its location.
    pub fn deref<'a>(&'a self, value: &'a Value, loc: &Loc) -> Result<(&'a Value, Loc), DocError> {
        let (mut value, mut loc) = (value, loc.clone());
        for _ in 0..MAX_REF_HOPS {
            let Some(target) = value.get("$ref").and_then(Value::as_str) else {
                return Ok((value, loc));
            };
            let (path, pointer) = split_ref(target);
            let file = if path.is_empty() {
                loc.file.clone()
            } else {
                resolve_path(&loc.file, path)
            };
            let pointer = percent_decode(pointer);
            let next = Loc { file, pointer };
            value = self
                .get(&next)
                .ok_or_else(|| loc.error(format!("$ref {target:?} points to nothing")))?;
            loc = next;
        }
        Err(loc.error(format!("more than {MAX_REF_HOPS} $refs in a row (a loop?)")))
    }
}

fn whole(file: &Path, message: impl Into<String>) -> DocError {
    DocError {
        file: file.to_path_buf(),
        pointer: String::new(),
        message: message.into(),
    }
}

/// A YAML or JSON file as JSON (YAML's integer keys, such as response codes, become strings).
fn parse_file(file: &Path) -> Result<Value, DocError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| whole(file, format!("cannot read: {e}")))?;
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        return serde_json::from_str(&text).map_err(|e| whole(file, format!("not JSON: {e}")));
    }
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| whole(file, format!("not YAML: {e}")))?;
    yaml_to_json(yaml).map_err(|m| whole(file, m))
}

fn yaml_to_json(v: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("number {f} has no JSON form"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("mapping key {other:?} is not a string")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// Every `$ref` string in `value`, with where it is.
fn collect_refs(value: &Value, at: &Loc, out: &mut Vec<(Loc, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(target)) => out.push((at.key(k), target.clone())),
                    _ => collect_refs(v, &at.key(k), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_refs(v, &at.index(i), out);
            }
        }
        _ => {}
    }
}

/// `other.yaml#/components/x` → (`other.yaml`, `/components/x`).
fn split_ref(target: &str) -> (&str, &str) {
    match target.split_once('#') {
        Some((path, pointer)) => (path, pointer),
        None => (target, ""),
    }
}

/// `path` relative to the directory of `from`, without `.`/`..` parts.
fn resolve_path(from: &Path, path: &str) -> PathBuf {
    let path = percent_decode(path);
    let joined = match from.parent() {
        Some(dir) if !Path::new(&path).is_absolute() => dir.join(&path),
        _ => PathBuf::from(&path),
    };
    normalize(&joined)
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    normalize(&joined)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_across_files_are_followed_and_loops_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("api.yaml"),
            "openapi: 3.0.3\npaths: {}\ncomponents:\n  schemas:\n    Pet: {$ref: 'common/pet.json#/Pet'}\n    A: {$ref: '#/components/schemas/B'}\n    B: {$ref: '#/components/schemas/A'}\nresponses:\n  200: {description: ok}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("common")).unwrap();
        std::fs::write(
            dir.path().join("common/pet.json"),
            r#"{"Pet": {"type": "object", "properties": {"tag": {"$ref": "../api.yaml#/components/schemas/Tag"}}}}"#,
        )
        .unwrap();
        let docs = Documents::load(&dir.path().join("./api.yaml")).unwrap();
        assert_eq!(docs.files.len(), 2);
        let root = docs.root_loc();
        let doc = docs.get(&root).unwrap();
        // YAML's integer key became a string.
        assert!(doc["responses"]["200"].is_object());
        let pet_loc = root.key("components").key("schemas").key("Pet");
        let (pet, at) = docs
            .deref(&doc["components"]["schemas"]["Pet"], &pet_loc)
            .unwrap();
        assert_eq!(pet["type"], "object");
        assert!(at.file.ends_with("common/pet.json"));
        assert_eq!(at.pointer, "/Pet");
        let a_loc = root.key("components").key("schemas").key("A");
        let err = docs
            .deref(&doc["components"]["schemas"]["A"], &a_loc)
            .unwrap_err();
        assert!(err.message.contains("loop"), "{err}");

        std::fs::write(
            dir.path().join("bad.yaml"),
            "a: {$ref: 'https://x.test/s.json'}\n",
        )
        .unwrap();
        let err = Documents::load(&dir.path().join("bad.yaml")).unwrap_err();
        assert_eq!(err.pointer, "/a/$ref");
        assert!(err.message.contains("only local files"), "{err}");
        let err = Documents::load(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("missing.yaml#: cannot read"),
            "{err}"
        );
    }
}
