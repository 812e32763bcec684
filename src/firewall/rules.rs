//! `[[firewall.rules]]` compiled: every regular expression of a kind of field goes into one
//! [`RegexSet`] per field (the path, the user agent, the body, each named header, query
//! parameter and JSON pointer), so a request runs each set once, whatever the number of rules,
//! and only when a rule that applies to it needs that field.

use super::inputs;
use crate::config::{FieldMatch, FirewallRuleConfig, RuleAction};
use crate::edge::ip_list::IpList;
use http::{HeaderMap, HeaderName, Method};
use regex::bytes::{RegexSet, RegexSetBuilder};
use std::net::IpAddr;

/// What a rule looks at in the request; everything is borrowed.
pub struct RuleInput<'a> {
    pub method: &'a Method,
    /// The normalized path the route was chosen by.
    pub path: &'a [u8],
    /// The raw query string, without `?`.
    pub query: Option<&'a [u8]>,
    pub headers: &'a HeaderMap,
    pub client_ip: Option<IpAddr>,
    /// Lowercase host, when the request named one.
    pub host: Option<&'a str>,
    /// The first `body_inspect_bytes` of the body, when it was read.
    pub body: Option<&'a [u8]>,
    /// The body parsed as JSON, when it is JSON and a rule or protection needs it.
    pub json: Option<&'a serde_json::Value>,
}

/// A regular expression's place: which set, and its index in it.
#[derive(Debug, Clone, Copy)]
struct SetRef {
    set: usize,
    pattern: usize,
}

/// A condition on a named field (the field is the index next to it in the rule).
#[derive(Debug, Clone, Copy)]
enum FieldCond {
    Present,
    Absent,
    Regex(SetRef),
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub action: RuleAction,
    /// Routes the rule is limited to; every route when empty.
    pub routes: Vec<String>,
    hosts: Vec<String>,
    methods: Vec<Method>,
    path_prefix: Option<Vec<u8>>,
    /// Glob and regex, in the path set.
    path: Vec<SetRef>,
    query: Vec<(usize, FieldCond)>,
    headers: Vec<(usize, FieldCond)>,
    ips: Option<IpList>,
    user_agent: Option<SetRef>,
    body: Option<SetRef>,
    json: Vec<(usize, FieldCond)>,
    /// `limit`: requests per period and burst.
    pub rate: Option<(u64, u64, u64)>,
}

impl Rule {
    /// Whether the rule reads the body.
    pub fn needs_body(&self) -> bool {
        self.body.is_some() || !self.json.is_empty()
    }

    /// Whether the rule reads fields of a JSON body.
    pub fn needs_json(&self) -> bool {
        !self.json.is_empty()
    }

    /// Whether the rule applies on `route`.
    pub fn applies_to_route(&self, route: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == route)
    }
}

/// The named fields and regex sets of a rule list.
#[derive(Debug, Default)]
struct Fields {
    /// Sets, by index: `SetRef::set`.
    sets: Vec<RegexSet>,
    headers: Vec<(HeaderName, Option<usize>)>,
    query: Vec<(Vec<u8>, Option<usize>)>,
    json: Vec<(String, Option<usize>)>,
}

/// A rule list, compiled once per snapshot.
#[derive(Debug, Default)]
pub struct Rules {
    pub list: Vec<Rule>,
    fields: Fields,
}

/// Named fields (header names, query parameter names, JSON pointers), each with its set.
type NamedFields<K> = Vec<(K, Option<usize>)>;

/// Builds the per-field pattern lists while rules are read, then the sets.
#[derive(Default)]
struct Builder {
    patterns: Vec<Vec<String>>,
    path: Option<usize>,
    user_agent: Option<usize>,
    body: Option<usize>,
    headers: Vec<(HeaderName, Option<usize>)>,
    query: Vec<(Vec<u8>, Option<usize>)>,
    json: Vec<(String, Option<usize>)>,
}

fn add_pattern(patterns: &mut Vec<Vec<String>>, slot: &mut Option<usize>, re: String) -> SetRef {
    let set = *slot.get_or_insert_with(|| {
        patterns.push(Vec::new());
        patterns.len() - 1
    });
    patterns[set].push(re);
    SetRef {
        set,
        pattern: patterns[set].len() - 1,
    }
}

impl Builder {
    fn field<K: PartialEq + Clone>(
        &mut self,
        which: fn(&mut Self) -> &mut NamedFields<K>,
        key: K,
        m: &FieldMatch,
    ) -> (usize, FieldCond) {
        let list = which(self);
        let index = match list.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                list.push((key, None));
                list.len() - 1
            }
        };
        let cond = match &m.regex {
            Some(re) => {
                let mut slot = which(self)[index].1;
                let r = add_pattern(&mut self.patterns, &mut slot, re.clone());
                which(self)[index].1 = slot;
                FieldCond::Regex(r)
            }
            None if m.absent => FieldCond::Absent,
            None => FieldCond::Present,
        };
        (index, cond)
    }

    fn rule(&mut self, rc: &FirewallRuleConfig) -> Rule {
        let mut path = Vec::new();
        if let Some(glob) = &rc.path_glob {
            path.push(add_pattern(
                &mut self.patterns,
                &mut self.path,
                crate::config::glob_to_regex(glob),
            ));
        }
        if let Some(re) = &rc.path_regex {
            path.push(add_pattern(&mut self.patterns, &mut self.path, re.clone()));
        }
        let user_agent = rc
            .user_agent
            .as_ref()
            .map(|re| add_pattern(&mut self.patterns, &mut self.user_agent, re.clone()));
        let body = rc
            .body
            .as_ref()
            .map(|re| add_pattern(&mut self.patterns, &mut self.body, re.clone()));
        let headers = rc
            .headers
            .iter()
            .filter_map(|m| {
                let name = HeaderName::from_bytes(m.name.as_bytes()).ok()?;
                Some(self.field(|b| &mut b.headers, name, m))
            })
            .collect();
        let query = rc
            .query
            .iter()
            .map(|m| self.field(|b| &mut b.query, m.name.as_bytes().to_vec(), m))
            .collect();
        let json = rc
            .json
            .iter()
            .map(|m| self.field(|b| &mut b.json, m.name.clone(), m))
            .collect();
        let rate = match (rc.action, rc.rate, rc.per) {
            (RuleAction::Limit, Some(rate), Some(per)) => {
                let per = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
                // GCRA's burst counts requests beyond the first.
                let at_once = rc.burst.unwrap_or(rate).max(1);
                Some((rate, per, at_once - 1))
            }
            _ => None,
        };
        Rule {
            name: rc.name.clone(),
            action: rc.action,
            routes: rc.routes.clone(),
            hosts: rc.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            methods: rc
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .collect(),
            path_prefix: rc.path_prefix.as_ref().map(|p| p.as_bytes().to_vec()),
            path,
            query,
            headers,
            ips: (!rc.ips.is_empty()).then(|| IpList::parse_valid(&rc.ips)),
            user_agent,
            body,
            json,
            rate,
        }
    }
}

/// Compile one field's patterns; `Err` names the first pattern that does not compile, or the
/// set being too large.
pub fn compile_set(patterns: &[String]) -> Result<RegexSet, String> {
    RegexSetBuilder::new(patterns)
        .size_limit(4 << 20)
        .dfa_size_limit(8 << 20)
        .build()
        .map_err(|e| e.to_string())
}

impl Rules {
    /// Compile validated rules; patterns were checked by validation, so an error here means a
    /// set that is too large together.
    pub fn compile(configs: &[FirewallRuleConfig]) -> Result<Self, String> {
        let mut b = Builder::default();
        let list = configs.iter().map(|rc| b.rule(rc)).collect();
        let sets = b
            .patterns
            .iter()
            .map(|p| compile_set(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            list,
            fields: Fields {
                sets,
                headers: b.headers,
                query: b.query,
                json: b.json,
            },
        })
    }

    /// Call `on_match` for each rule among `candidates` (indices into `list`, in order) whose
    /// conditions all hold, until it returns `false`.
    pub fn each_match(
        &self,
        candidates: &[u16],
        input: &RuleInput<'_>,
        mut on_match: impl FnMut(usize, &Rule) -> bool,
    ) {
        let mut state = MatchState::new(&self.fields);
        for &i in candidates {
            let i = usize::from(i);
            let Some(rule) = self.list.get(i) else {
                continue;
            };
            if state.matches(rule, input) && !on_match(i, rule) {
                return;
            }
        }
    }
}

/// Per-request results of the field sets, computed on first use.
struct MatchState<'f> {
    fields: &'f Fields,
    /// Per set: which patterns matched, once computed.
    hits: Vec<Option<Vec<bool>>>,
}

impl<'f> MatchState<'f> {
    fn new(fields: &'f Fields) -> Self {
        Self {
            fields,
            hits: Vec::new(),
        }
    }

    /// Whether pattern `r` matched, if its set already ran on this request.
    fn cached(&self, r: SetRef) -> Option<bool> {
        let matched = self.hits.get(r.set)?.as_ref()?;
        Some(matched.get(r.pattern).copied().unwrap_or(false))
    }

    /// Run the set of `r` over `values` (a match in any value counts) and remember it.
    fn run(&mut self, r: SetRef, values: &[&[u8]]) -> bool {
        let Some(set) = self.fields.sets.get(r.set) else {
            return false;
        };
        let mut matched = vec![false; set.len()];
        for v in values {
            for i in set.matches(v).iter() {
                matched[i] = true;
            }
        }
        let hit = matched.get(r.pattern).copied().unwrap_or(false);
        if self.hits.len() <= r.set {
            self.hits
                .resize(self.fields.sets.len().max(r.set + 1), None);
        }
        self.hits[r.set] = Some(matched);
        hit
    }

    /// Whether pattern `r` matches one of `values()`, which is only called on a cache miss.
    fn hit<'v>(&mut self, r: SetRef, values: impl FnOnce() -> Vec<&'v [u8]>) -> bool {
        match self.cached(r) {
            Some(hit) => hit,
            None => self.run(r, &values()),
        }
    }

    /// A named-field condition on the values `values()` of that field.
    fn field<'v>(&mut self, cond: FieldCond, values: impl FnOnce() -> Vec<&'v [u8]>) -> bool {
        match cond {
            FieldCond::Present => !values().is_empty(),
            FieldCond::Absent => values().is_empty(),
            FieldCond::Regex(r) => self.hit(r, values),
        }
    }

    fn matches(&mut self, rule: &Rule, input: &RuleInput<'_>) -> bool {
        if !rule.methods.is_empty() && !rule.methods.contains(input.method) {
            return false;
        }
        if !rule.hosts.is_empty()
            && !input
                .host
                .is_some_and(|h| rule.hosts.iter().any(|r| r == h))
        {
            return false;
        }
        if let Some(prefix) = &rule.path_prefix {
            if !input.path.starts_with(prefix) {
                return false;
            }
        }
        if let Some(ips) = &rule.ips {
            if !input.client_ip.is_some_and(|ip| ips.contains(ip)) {
                return false;
            }
        }
        for &r in &rule.path {
            if !self.hit(r, || vec![input.path]) {
                return false;
            }
        }
        if let Some(r) = rule.user_agent {
            let Some(ua) = input.headers.get(http::header::USER_AGENT) else {
                return false;
            };
            if !self.hit(r, || vec![ua.as_bytes()]) {
                return false;
            }
        }
        if let Some(r) = rule.body {
            let Some(body) = input.body else {
                return false;
            };
            if !self.hit(r, || vec![body]) {
                return false;
            }
        }
        let fields = self.fields;
        for &(i, c) in &rule.headers {
            let Some((name, _)) = fields.headers.get(i) else {
                return false;
            };
            let values = || {
                input
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect()
            };
            if !self.field(c, values) {
                return false;
            }
        }
        if !rule.query.is_empty() {
            let pairs = query_pairs(input.query);
            for &(i, c) in &rule.query {
                let Some((name, _)) = fields.query.get(i) else {
                    return false;
                };
                let values = || {
                    pairs
                        .iter()
                        .filter(|(n, _)| n == name)
                        .map(|(_, v)| v.as_slice())
                        .collect()
                };
                if !self.field(c, values) {
                    return false;
                }
            }
        }
        for &(i, c) in &rule.json {
            let Some((pointer, _)) = fields.json.get(i) else {
                return false;
            };
            let text = input
                .json
                .and_then(|j| inputs::json_pointer(j, pointer))
                .map(json_text);
            if !self.field(c, || text.as_deref().into_iter().collect()) {
                return false;
            }
        }
        true
    }
}

/// The decoded query parameters, as (name, value) pairs.
fn query_pairs(query: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    if let Some(q) = query {
        inputs::for_each_query_pair(q, &mut buf, |n, v| {
            out.push((n.to_vec(), v.to_vec()));
            true
        });
    }
    out
}

/// A JSON value as the text a regex sees: strings without quotes, anything else as JSON.
fn json_text(v: &serde_json::Value) -> Vec<u8> {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules(text: &str) -> Rules {
        #[derive(serde::Deserialize)]
        struct File {
            rules: Vec<FirewallRuleConfig>,
        }
        let file: File = toml::from_str(text).unwrap();
        Rules::compile(&file.rules).unwrap()
    }

    struct Req {
        method: Method,
        path: &'static str,
        query: Option<&'static str>,
        headers: HeaderMap,
        ip: Option<IpAddr>,
        host: Option<&'static str>,
        body: Option<&'static str>,
    }

    fn get(path: &'static str) -> Req {
        Req {
            method: Method::GET,
            path,
            query: None,
            headers: HeaderMap::new(),
            ip: None,
            host: None,
            body: None,
        }
    }

    impl Req {
        fn header(mut self, name: &'static str, value: &'static str) -> Self {
            self.headers.append(name, HeaderValue::from_static(value));
            self
        }
    }

    /// Names of the rules matching `req`, in order.
    fn matching(rules: &Rules, route: &str, req: &Req) -> Vec<String> {
        let json = req.body.and_then(|b| serde_json::from_str(b).ok());
        let input = RuleInput {
            method: &req.method,
            path: req.path.as_bytes(),
            query: req.query.map(str::as_bytes),
            headers: &req.headers,
            client_ip: req.ip,
            host: req.host,
            body: req.body.map(str::as_bytes),
            json: json.as_ref(),
        };
        let candidates: Vec<u16> = (0..rules.list.len() as u16)
            .filter(|&i| rules.list[usize::from(i)].applies_to_route(route))
            .collect();
        let mut out = Vec::new();
        rules.each_match(&candidates, &input, |_, r| {
            out.push(r.name.clone());
            true
        });
        out
    }

    #[test]
    fn each_condition_kind_matches_and_near_misses_do_not() {
        let r = rules(
            r#"
            [[rules]]
            name = "method"
            action = "deny"
            methods = ["delete"]
            [[rules]]
            name = "prefix"
            action = "deny"
            path_prefix = "/admin"
            [[rules]]
            name = "glob"
            action = "deny"
            path_glob = "/v*/internal/**"
            [[rules]]
            name = "regex"
            action = "deny"
            path_regex = "\\.php$"
            [[rules]]
            name = "query"
            action = "deny"
            query = [{ name = "debug", present = true }, { name = "q", regex = "(?i)union" }]
            [[rules]]
            name = "absent"
            action = "log"
            path_prefix = "/pay"
            headers = [{ name = "x-signature", absent = true }]
            [[rules]]
            name = "ua"
            action = "deny"
            user_agent = "(?i)^curl/"
            [[rules]]
            name = "ips"
            action = "deny"
            ips = ["203.0.113.0/24"]
            [[rules]]
            name = "body"
            action = "deny"
            body = "BEGIN RSA"
            [[rules]]
            name = "json"
            action = "deny"
            json = [{ name = "/user/role", regex = "^admin$" }]
            [[rules]]
            name = "host"
            action = "deny"
            hosts = ["Internal.Example.com"]
            [[rules]]
            name = "scoped"
            action = "deny"
            routes = ["orders"]
            path_prefix = "/"
            "#,
        );
        let none: Vec<String> = Vec::new();
        let one = |n: &str| vec![n.to_string()];
        let mut del = get("/x");
        del.method = Method::DELETE;
        assert_eq!(matching(&r, "api", &del), one("method"));
        assert_eq!(matching(&r, "api", &get("/admin/users")), one("prefix"));
        assert_eq!(matching(&r, "api", &get("/administrator")), one("prefix"));
        assert_eq!(matching(&r, "api", &get("/v2/internal/a/b")), one("glob"));
        assert_eq!(matching(&r, "api", &get("/v2/x/internal/a")), none);
        assert_eq!(matching(&r, "api", &get("/index.php")), one("regex"));
        assert_eq!(matching(&r, "api", &get("/index.php5")), none);
        let mut q = get("/s");
        q.query = Some("debug=&q=1+UNION+select");
        assert_eq!(matching(&r, "api", &q), one("query"));
        q.query = Some("q=1+UNION+select");
        assert_eq!(
            matching(&r, "api", &q),
            none,
            "both query conditions must hold"
        );
        assert_eq!(matching(&r, "api", &get("/pay")), one("absent"));
        assert_eq!(
            matching(&r, "api", &get("/pay").header("x-signature", "s")),
            none
        );
        assert_eq!(
            matching(&r, "api", &get("/x").header("user-agent", "curl/8.5")),
            one("ua")
        );
        assert_eq!(
            matching(&r, "api", &get("/x").header("user-agent", "Mozilla curl/8")),
            none
        );
        let mut ip = get("/x");
        ip.ip = "203.0.113.77".parse().ok();
        assert_eq!(matching(&r, "api", &ip), one("ips"));
        ip.ip = "198.51.100.1".parse().ok();
        assert_eq!(matching(&r, "api", &ip), none);
        let mut body = get("/x");
        body.body = Some("-----BEGIN RSA PRIVATE KEY-----");
        assert_eq!(matching(&r, "api", &body), one("body"));
        body.body = Some(r#"{"user":{"role":"admin"}}"#);
        assert_eq!(matching(&r, "api", &body), one("json"));
        body.body = Some(r#"{"user":{"role":"administrator"}}"#);
        assert_eq!(matching(&r, "api", &body), none);
        let mut host = get("/x");
        host.host = Some("internal.example.com");
        assert_eq!(matching(&r, "api", &host), one("host"));
        assert_eq!(matching(&r, "orders", &get("/x")), one("scoped"));
    }

    #[test]
    fn a_set_runs_once_per_field_and_request() {
        let r = rules(
            r#"
            [[rules]]
            name = "a"
            action = "log"
            path_regex = "^/a"
            [[rules]]
            name = "b"
            action = "log"
            path_regex = "b$"
            [[rules]]
            name = "c"
            action = "log"
            headers = [{ name = "x-a", regex = "1" }]
            [[rules]]
            name = "d"
            action = "log"
            headers = [{ name = "x-a", regex = "2" }, { name = "x-b", present = true }]
            "#,
        );
        assert_eq!(r.fields.sets.len(), 2, "one set for the path, one for x-a");
        assert_eq!(matching(&r, "r", &get("/ab")), vec!["a", "b"]);
        let req = get("/")
            .header("x-a", "1")
            .header("x-a", "2")
            .header("x-b", "");
        assert_eq!(
            matching(&r, "r", &req),
            vec!["c", "d"],
            "any value of a header"
        );
    }
}
