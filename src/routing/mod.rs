//! Route matching by host, path and method.
//!
//! Precedence, most specific first:
//! 1. Host: an exact host beats the longest matching wildcard (`*.a.example.com` before
//!    `*.example.com`), which beats routes without `hosts`. Tables are tried in that order and
//!    the first table holding a route for the path and method wins.
//! 2. Path, within a table: an exact `path` beats a template (`/pets/{petId}`, see
//!    [`template`]), which beats the longest `path_prefix`. Prefixes match whole segments: `/api`
//!    matches `/api` and `/api/x`, never `/apix`.
//! 3. Method, within one path: a route listing the method beats a route without `methods`.
//!
//! When some route matches host and path but none allows the method, the answer is 405 with the
//! union of the allowed methods. A lookup costs one hash probe per path segment and host label,
//! independent of the number of routes.

pub use crate::host::HostPattern;
use crate::host::{host_key, wildcard_lookup};
pub use crate::urlpath::{normalize_path, trim_prefix};
pub use template::Segment;

pub mod template;

use http::Method;

/// Route tables are built once per config and probed on every request; ahash is several times
/// faster than SipHash for these short keys, and its keys are randomised per process, so
/// client-chosen paths cannot be used to force collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// How a route matches paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// Stored trimmed, see [`trim_prefix`].
    Prefix(String),
    /// A template with at least one parameter, as written and as segments (a template without
    /// parameters is an `Exact` path). Always case-sensitive.
    Template(String, Vec<Segment>),
}

/// Where a route applies.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Empty means any host.
    pub hosts: Vec<HostPattern>,
    pub path: PathPattern,
    /// Empty means any method.
    pub methods: Vec<Method>,
    /// Match the path ignoring ASCII case (for upstreams that do).
    pub case_insensitive: bool,
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a, T> {
    Found {
        value: &'a T,
        /// Bytes of the request path covered by the matched path or prefix (0 for `/`).
        matched_len: usize,
    },
    /// Host and path matched, the method did not.
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: String,
        /// The most specific route whose path matched, to count the refusal under.
        path_owner: &'a T,
    },
    NotFound,
}

#[derive(Debug)]
struct MethodTable<T> {
    /// (method, route, implied): HEAD is implied by GET and yields to an explicit HEAD route.
    by_method: Vec<(Method, T, bool)>,
    any: Option<T>,
}

impl<T> Default for MethodTable<T> {
    fn default() -> Self {
        Self {
            by_method: Vec::new(),
            any: None,
        }
    }
}

impl<T> MethodTable<T> {
    fn get(&self, method: &Method) -> Option<&T> {
        self.by_method
            .iter()
            .find(|(m, _, _)| m == method)
            .map(|(_, v, _)| v)
            .or(self.any.as_ref())
    }
}

#[derive(Debug)]
struct PathTable<T> {
    exact: HashMap<Box<[u8]>, MethodTable<T>>,
    prefix: HashMap<Box<[u8]>, MethodTable<T>>,
    /// Case-insensitive routes, by lowercased path.
    exact_ci: HashMap<Box<[u8]>, MethodTable<T>>,
    prefix_ci: HashMap<Box<[u8]>, MethodTable<T>>,
    templates: template::Node<MethodTable<T>>,
    max_prefix_len: usize,
}

impl<T> Default for PathTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::default(),
            prefix: HashMap::default(),
            exact_ci: HashMap::default(),
            prefix_ci: HashMap::default(),
            templates: template::Node::default(),
            max_prefix_len: 0,
        }
    }
}

impl<T> PathTable<T> {
    /// Candidates in precedence order: the exact entries, the most specific template, then
    /// prefixes from longest to `/`;
    /// at each length a case-sensitive route comes before a case-insensitive one. `lower` is
    /// `path` in ASCII lowercase, probed in the case-insensitive maps.
    fn candidates<'s, 'p>(
        &'s self,
        path: &'p [u8],
        lower: &'p [u8],
    ) -> impl Iterator<Item = (&'s MethodTable<T>, usize)> + use<'s, 'p, T> {
        let has_ci = !(self.exact_ci.is_empty() && self.prefix_ci.is_empty());
        let exact = self.exact.get(path).map(|t| (t, path.len()));
        let exact_ci = has_ci
            .then(|| self.exact_ci.get(lower).map(|t| (t, path.len())))
            .flatten();
        // Each prefix candidate ends just before a `/` of the path, or at its end.
        let mut end = Some(path.len());
        let mut pending = None;
        let prefixes = std::iter::from_fn(move || loop {
            if let Some(next) = pending.take() {
                return Some(next);
            }
            let e = end?;
            end = if e == 0 {
                None
            } else {
                Some(path[..e].iter().rposition(|&b| b == b'/').unwrap_or(0))
            };
            // `/` is only probed at e == 0, so the root prefix always covers 0 bytes.
            let key: &[u8] = if e == 0 { b"/" } else { &path[..e] };
            if e > self.max_prefix_len || (e > 0 && key.ends_with(b"/")) {
                continue;
            }
            let ci = has_ci
                .then(|| {
                    let key: &[u8] = if e == 0 { b"/" } else { &lower[..e] };
                    self.prefix_ci.get(key).map(|t| (t, e))
                })
                .flatten();
            match (self.prefix.get(key).map(|t| (t, e)), ci) {
                (Some(cs), ci) => {
                    pending = ci;
                    return Some(cs);
                }
                (None, Some(ci)) => return Some(ci),
                (None, None) => {}
            }
        });
        let templated = (!self.templates.is_empty())
            .then(|| self.templates.lookup(path).map(|t| (t, path.len())))
            .flatten();
        exact
            .into_iter()
            .chain(exact_ci)
            .chain(templated)
            .chain(prefixes)
    }
}

/// Host → path → method index over values of type `T` (the compiled route).
#[derive(Debug)]
pub struct Router<T> {
    exact_hosts: HashMap<String, PathTable<T>>,
    wildcard_hosts: HashMap<String, PathTable<T>>,
    any_host: PathTable<T>,
    has_wildcards: bool,
    has_case_insensitive: bool,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            exact_hosts: HashMap::default(),
            wildcard_hosts: HashMap::default(),
            any_host: PathTable::default(),
            has_wildcards: false,
            has_case_insensitive: false,
        }
    }
}

impl<T: Clone> Router<T> {
    /// Add a route. A later route with the same host, path and method replaces nothing: the
    /// first one stays (config validation rejects such duplicates anyway).
    pub fn insert(&mut self, spec: &RouteSpec, value: T) {
        self.has_case_insensitive |= spec.case_insensitive;
        if spec.hosts.is_empty() {
            insert_path(&mut self.any_host, spec, value);
            return;
        }
        for host in &spec.hosts {
            let table = match host {
                HostPattern::Exact(h) => self.exact_hosts.entry(h.clone()).or_default(),
                HostPattern::Wildcard(h) => {
                    self.has_wildcards = true;
                    self.wildcard_hosts.entry(h.clone()).or_default()
                }
            };
            insert_path(table, spec, value.clone());
        }
    }
}

fn insert_path<T: Clone>(table: &mut PathTable<T>, spec: &RouteSpec, value: T) {
    let (exact, prefix) = if spec.case_insensitive {
        (&mut table.exact_ci, &mut table.prefix_ci)
    } else {
        (&mut table.exact, &mut table.prefix)
    };
    let key = |p: &str| -> Box<[u8]> {
        if spec.case_insensitive {
            p.to_ascii_lowercase().into_bytes().into()
        } else {
            p.as_bytes().into()
        }
    };
    let methods = match &spec.path {
        PathPattern::Exact(p) => exact.entry(key(p)).or_default(),
        PathPattern::Prefix(p) => {
            let trimmed = trim_prefix(p);
            if trimmed != "/" {
                table.max_prefix_len = table.max_prefix_len.max(trimmed.len());
            }
            prefix.entry(key(trimmed)).or_default()
        }
        PathPattern::Template(_, segments) => table.templates.slot(segments),
    };
    if spec.methods.is_empty() {
        methods.any.get_or_insert(value);
        return;
    }
    for m in &spec.methods {
        let mut add =
            |m: &Method, implied: bool| match methods.by_method.iter_mut().find(|(x, _, _)| x == m)
            {
                Some(slot) if slot.2 && !implied => *slot = (m.clone(), value.clone(), false),
                Some(_) => {}
                None => methods.by_method.push((m.clone(), value.clone(), implied)),
            };
        add(m, false);
        if m == Method::GET {
            add(&Method::HEAD, true);
        }
    }
}

impl<T> Router<T> {
    /// Find the route for a request. `host` is the Host header or authority (any case, port
    /// allowed); `path` must already be normalized.
    pub fn lookup(&self, host: Option<&str>, method: &Method, path: &[u8]) -> RouteMatch<'_, T> {
        let mut allowed: Vec<&Method> = Vec::new();
        let mut path_owner = None;
        let host = host.map(host_key);
        let mut tables: [Option<&PathTable<T>>; 3] = [None; 3];
        if let Some(host) = host.as_deref() {
            tables[0] = self.exact_hosts.get(host);
            if self.has_wildcards {
                tables[1] = self.wildcard_for(host);
            }
        }
        tables[2] = Some(&self.any_host);
        let lower: std::borrow::Cow<'_, [u8]> =
            if self.has_case_insensitive && path.iter().any(u8::is_ascii_uppercase) {
                path.to_ascii_lowercase().into()
            } else {
                path.into()
            };
        for table in tables.into_iter().flatten() {
            for (methods, matched_len) in table.candidates(path, &lower) {
                if let Some(value) = methods.get(method) {
                    return RouteMatch::Found { value, matched_len };
                }
                path_owner = path_owner.or(methods.by_method.first().map(|(_, r, _)| r));
                allowed.extend(methods.by_method.iter().map(|(m, _, _)| m));
            }
        }
        let Some(path_owner) = path_owner else {
            return RouteMatch::NotFound;
        };
        let mut names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        RouteMatch::MethodNotAllowed {
            allow: names.join(", "),
            path_owner,
        }
    }

    /// The most specific wildcard table covering `host`.
    fn wildcard_for(&self, host: &str) -> Option<&PathTable<T>> {
        wildcard_lookup(&self.wildcard_hosts, host)
    }
}

#[cfg(test)]
mod tests;
