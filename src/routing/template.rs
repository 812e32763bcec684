//! Path templates (`/pets/{petId}`, `/files/{name}.json`): a trie by segment, so a lookup
//! costs one hash probe per path segment however many templates there are.
//!
//! At each segment a literal beats a pattern with a fixed prefix or suffix, which beats a bare
//! `{param}` (OpenAPI: concrete paths before templated ones); a branch that leads nowhere is
//! left for the next kind, so `/pets/mine/toys` still finds `/pets/{id}/toys`.

use super::HashMap;
pub use crate::urlpath::template::{captures, has_params, parse, Segment};

/// A node of the trie: the templates that continue past this segment, and the value of the
/// template that ends here.
#[derive(Debug)]
pub struct Node<V> {
    literal: HashMap<Box<[u8]>, Node<V>>,
    /// Parameters with a fixed prefix or suffix, tried in insertion order.
    patterned: Vec<(Segment, Node<V>)>,
    /// A bare `{param}`: any non-empty segment.
    param: Option<Box<Node<V>>>,
    end: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            literal: HashMap::default(),
            patterned: Vec::new(),
            param: None,
            end: None,
        }
    }
}

impl<V: Default> Node<V> {
    /// The slot of the template `segments` (created empty when new).
    pub fn slot(&mut self, segments: &[Segment]) -> &mut V {
        let mut node = self;
        for seg in segments {
            node = match seg {
                Segment::Literal(l) => node.literal.entry(l.as_bytes().into()).or_default(),
                Segment::Param { prefix, suffix, .. } if prefix.is_empty() && suffix.is_empty() => {
                    node.param.get_or_insert_with(Default::default)
                }
                pattern => {
                    let at = match node.patterned.iter().position(|(p, _)| same(p, pattern)) {
                        Some(i) => i,
                        None => {
                            node.patterned.push((pattern.clone(), Node::default()));
                            node.patterned.len() - 1
                        }
                    };
                    &mut node.patterned[at].1
                }
            };
        }
        node.end.get_or_insert_with(Default::default)
    }
}

/// Two parameter segments match the same values (their names do not matter).
fn same(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (
            Segment::Param {
                prefix: p1,
                suffix: s1,
                ..
            },
            Segment::Param {
                prefix: p2,
                suffix: s2,
                ..
            },
        ) => p1 == p2 && s1 == s2,
        (a, b) => a == b,
    }
}

impl<V> Node<V> {
    /// Whether no template was inserted.
    pub fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.patterned.is_empty()
            && self.param.is_none()
            && self.end.is_none()
    }

    /// The value of the most specific template matching `path` (which starts with `/`).
    pub fn lookup(&self, path: &[u8]) -> Option<&V> {
        let rest = path.strip_prefix(b"/")?;
        self.find(rest)
    }

    fn find(&self, rest: &[u8]) -> Option<&V> {
        let (seg, tail) = match memchr::memchr(b'/', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        fn next<'n, V>(node: &'n Node<V>, tail: Option<&[u8]>) -> Option<&'n V> {
            match tail {
                Some(t) => node.find(t),
                None => node.end.as_ref(),
            }
        }
        if let Some(found) = self.literal.get(seg).and_then(|n| next(n, tail)) {
            return Some(found);
        }
        for (pattern, node) in &self.patterned {
            if pattern.capture(seg).is_some() {
                if let Some(found) = next(node, tail) {
                    return Some(found);
                }
            }
        }
        match &self.param {
            Some(node) if !seg.is_empty() => next(node, tail),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(templates: &[&str]) -> Node<Vec<&'static str>> {
        let mut root: Node<Vec<&'static str>> = Node::default();
        for t in templates {
            let t: &'static str = Box::leak(t.to_string().into_boxed_str());
            root.slot(&parse(t).unwrap()).push(t);
        }
        root
    }

    fn hit(root: &Node<Vec<&'static str>>, path: &str) -> Option<&'static str> {
        root.lookup(path.as_bytes()).map(|v| v[0])
    }

    #[test]
    fn literal_beats_pattern_beats_param_with_backtracking() {
        let r = trie(&[
            "/pets/{id}",
            "/pets/mine",
            "/pets/{id}/toys",
            "/files/{name}.json",
            "/files/{name}",
            "/a/{x}/c",
            "/a/b/d",
        ]);
        assert_eq!(hit(&r, "/pets/7"), Some("/pets/{id}"));
        assert_eq!(hit(&r, "/pets/mine"), Some("/pets/mine"));
        assert_eq!(hit(&r, "/pets/mine/toys"), Some("/pets/{id}/toys"));
        assert_eq!(hit(&r, "/files/a.json"), Some("/files/{name}.json"));
        assert_eq!(hit(&r, "/files/.json"), Some("/files/{name}"));
        assert_eq!(hit(&r, "/files/a.txt"), Some("/files/{name}"));
        // `b` is a literal at the second segment, but only `/a/{x}/c` continues with `c`.
        assert_eq!(hit(&r, "/a/b/c"), Some("/a/{x}/c"));
        assert_eq!(hit(&r, "/a/b/d"), Some("/a/b/d"));
        assert_eq!(hit(&r, "/pets/"), None);
        assert_eq!(hit(&r, "/pets"), None);
        assert_eq!(hit(&r, "/pets/7/toys/x"), None);
        assert_eq!(hit(&r, "/pets//toys"), None);
    }
}
