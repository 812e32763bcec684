//! Header transforms of a route (`request_headers`, `response_headers`): remove, rename, set and
//! add, compiled once into header names and values and applied through [`EditHeaders`].

use crate::config::HeaderTransformConfig;
use crate::headers::EditHeaders;
use http::header::{HeaderName, HeaderValue};

/// A compiled transform; empty for routes without one.
#[derive(Debug, Default)]
pub struct HeaderTransform {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

/// `name` as a header name (lower case), or what is wrong with it.
pub fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))
}

/// `value` as a header value, or what is wrong with it.
pub fn header_value(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value)
        .map_err(|_| "the value has characters a header cannot carry".into())
}

impl HeaderTransform {
    /// Compile a validated transform; entries validation refused are left out.
    pub fn compile(config: &HeaderTransformConfig) -> Self {
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            map.iter()
                .filter_map(|(k, v)| Some((header_name(k).ok()?, header_value(v).ok()?)))
                .collect()
        };
        Self {
            remove: (config.remove.iter())
                .filter_map(|n| header_name(n).ok())
                .collect(),
            rename: (config.rename.iter())
                .filter_map(|(a, b)| Some((header_name(a).ok()?, header_name(b).ok()?)))
                .collect(),
            set: pairs(&config.set),
            add: pairs(&config.add),
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// Apply to `headers`: remove, rename (every value of the old name, in order), set, add.
    pub fn apply(&self, headers: &mut impl EditHeaders) {
        for name in &self.remove {
            if headers.map().contains_key(name) {
                headers.remove(name);
            }
        }
        for (from, to) in &self.rename {
            let values: Vec<HeaderValue> = headers.map().get_all(from).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            headers.remove(from);
            if headers.map().contains_key(to) {
                headers.remove(to);
            }
            for value in values {
                headers.append(to, value);
            }
        }
        for (name, value) in &self.set {
            headers.set(name, value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn remove_rename_set_add_in_that_order() {
        let config: HeaderTransformConfig = toml::from_str(
            "remove = [\"X-Debug\"]\nrename = { \"x-old\" = \"x-new\" }\n\
             set = { \"x-env\" = \"prod\", \"x-new\" = \"replaced?\" }\nadd = { \"x-tag\" = \"b\" }",
        )
        .unwrap();
        let t = HeaderTransform::compile(&config);
        let mut h = HeaderMap::new();
        h.insert("x-debug", HeaderValue::from_static("1"));
        h.append("x-old", HeaderValue::from_static("a"));
        h.append("x-old", HeaderValue::from_static("b"));
        h.insert("x-new", HeaderValue::from_static("gone"));
        h.insert("x-env", HeaderValue::from_static("dev"));
        h.insert("x-tag", HeaderValue::from_static("a"));
        t.apply(&mut h);
        assert!(!h.contains_key("x-debug"));
        assert!(!h.contains_key("x-old"));
        // `set` comes after `rename`, so it wins for the same name.
        assert_eq!(h.get_all("x-new").iter().collect::<Vec<_>>(), ["replaced?"]);
        assert_eq!(h["x-env"], "prod");
        assert_eq!(h.get_all("x-tag").iter().collect::<Vec<_>>(), ["a", "b"]);

        let only_rename = HeaderTransform::compile(
            &toml::from_str("rename = { \"x-old\" = \"x-new\" }").unwrap(),
        );
        let mut h = HeaderMap::new();
        h.append("x-old", HeaderValue::from_static("a"));
        h.append("x-old", HeaderValue::from_static("b"));
        only_rename.apply(&mut h);
        assert_eq!(h.get_all("x-new").iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(HeaderTransform::default().is_empty() && !only_rename.is_empty());
    }
}
