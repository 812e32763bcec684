//! The firewall: rules (`rules`), managed protections against common attacks (`managed`, on
//! values extracted by `inputs`) and automatic bans (`bans`).
//!
//! [`Firewall`] is compiled once per snapshot; each route gets a [`RoutePlan`] (which rules
//! and protections apply to it, whether the body is needed). The proxy runs
//! [`Firewall::inspect`] after routing and before authentication. State that must outlive a
//! reload (rule limiters, the ban table, event sketches) is in [`FirewallRegistry`].

pub mod bans;
pub mod inputs;
pub mod json_scan;
pub mod managed;
pub mod rules;

pub use bans::{Ban, BanKey, BanTable};
pub use managed::ProtectionSet;
pub use rules::RuleInput;

use crate::cache::ShardedStore;
use crate::config::{
    FirewallConfig, FirewallMode, ManagedProtection, OversizeBody, RuleAction,
    MAX_BODY_INSPECT_BYTES,
};
use crate::limit::redis::RedisLimiter;
use crate::limit::{Gcra, Tat};
use crate::observe::metrics::Metrics;
use bans::Detector;
use http::HeaderName;
use prometheus::IntCounter;
use rules::Rules;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the access log says of a firewall decision (`deny:sqli`, `ban:ip`): an `Arc<String>`,
/// a thin pointer, because it is kept in every request's context.
pub type Note = Arc<String>;

/// Client keys a rule limiter holds at most.
const LIMITER_KEYS: usize = 100_000;

/// A rule limiter's identity: rule name, rate, period (ns) and burst.
type LimiterKey = (String, u64, u64, u64);

/// Firewall state that outlives a reload.
#[derive(Default)]
pub struct FirewallRegistry {
    /// The bans in force.
    pub bans: Arc<BanTable>,
    /// Rule limiters by rule name and rate, so a reload keeps what clients used.
    limiters: Mutex<HashMap<LimiterKey, Arc<ShardedStore<Tat>>>>,
    /// Event sketches, kept while the window stays the same.
    detector: Mutex<Option<Arc<Detector>>>,
}

impl FirewallRegistry {
    fn limiter(&self, rule: &str, (rate, per, burst): (u64, u64, u64)) -> Arc<ShardedStore<Tat>> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters
            .entry((rule.to_string(), rate, per, burst))
            .or_insert_with(|| Arc::new(ShardedStore::new(LIMITER_KEYS)))
            .clone()
    }

    fn detector(&self, window: Duration) -> Arc<Detector> {
        let mut slot = self.detector.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(d) if d.window == window => d.clone(),
            _ => {
                let d = Arc::new(Detector::new(window));
                *slot = Some(d.clone());
                d
            }
        }
    }

    /// Forget limiters of rules that `firewall` no longer has.
    pub fn adopt(&self, firewall: Option<&Firewall>) {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters.retain(|(name, rate, per, burst), _| {
            firewall.is_some_and(|f| {
                f.rules
                    .list
                    .iter()
                    .any(|r| r.name == *name && r.rate == Some((*rate, *per, *burst)))
            })
        });
    }
}

/// What one rule needs at run time besides its conditions.
struct RuleRuntime {
    /// `limit`: the rate and the per-client state.
    limiter: Option<(Gcra, Arc<ShardedStore<Tat>>)>,
    /// Counted when the rule acts (its own action), or would have (`count`).
    acted: IntCounter,
    counted: IntCounter,
    /// Access-log notes: `ACTION:NAME` and `count:NAME`.
    acted_note: Note,
    counted_note: Note,
}

/// Counters and notes of one managed protection.
struct ManagedRuntime {
    denied: IntCounter,
    counted: IntCounter,
    denied_note: Note,
    counted_note: Note,
}

/// `[firewall.bans]` compiled.
pub struct BanPolicy {
    pub threshold: u64,
    pub duration: Duration,
    statuses: Vec<u16>,
    /// 403, or 429 with `Retry-After`.
    pub status: u16,
    /// `false` in count mode: bans are logged, not imposed.
    pub enforce: bool,
    pub table: Arc<BanTable>,
    detector: Arc<Detector>,
    /// Set when bans are shared through Redis.
    pub shared: Option<Arc<RedisLimiter>>,
    ip_bans: IntCounter,
    consumer_bans: IntCounter,
}

/// The rules and protections that apply to one route.
#[derive(Debug, Clone, Default)]
pub struct RoutePlan {
    rules: Vec<u16>,
    /// Protections that refuse.
    managed: ProtectionSet,
    /// Protections that only count.
    counted: ProtectionSet,
    /// A rule reads the body.
    rules_need_body: bool,
    /// A rule reads fields of a JSON body.
    rules_need_json: bool,
}

impl RoutePlan {
    /// Whether anything is inspected on the route.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.managed.is_empty() && self.counted.is_empty()
    }

    /// Whether a JSON body must be parsed into a value for the rules.
    pub fn needs_json(&self) -> bool {
        self.rules_need_json
    }

    /// Whether the body must be read before the request goes on.
    pub fn needs_body(&self) -> bool {
        self.rules_need_body || !self.managed.is_empty() || !self.counted.is_empty()
    }
}

/// The firewall of one snapshot.
pub struct Firewall {
    enforce: bool,
    managed: ProtectionSet,
    counted: ProtectionSet,
    inspect_headers: Vec<HeaderName>,
    /// How much of a body is inspected.
    pub body_inspect_bytes: usize,
    /// Refuse bodies that cannot be read before the request goes on.
    pub deny_oversize: bool,
    oversize: IntCounter,
    oversize_note: Note,
    rules: Rules,
    runtime: Vec<RuleRuntime>,
    protections: Vec<ManagedRuntime>,
    pub bans: Option<BanPolicy>,
}

/// What the firewall decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// 403.
    Deny,
    /// 429 after this many seconds.
    Limit {
        retry_after_secs: u64,
    },
}

/// The decision and what the access log records of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// `ACTION:RULE` of the decisive (or last counted) match.
    pub note: Option<Note>,
    /// A rule or protection matched with `deny` or `limit` (enforced or counted): an event
    /// for intrusion detection.
    pub hit: bool,
}

impl Outcome {
    const PASS: Outcome = Outcome {
        verdict: Verdict::Pass,
        note: None,
        hit: false,
    };
}

/// What the request's body is, for the managed detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Other,
}

impl BodyKind {
    /// From the `Content-Type`.
    pub fn of(headers: &http::HeaderMap) -> Self {
        let Some(ct) = headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
        else {
            return Self::Other;
        };
        let essence = ct.split(|&b| b == b';').next().unwrap_or_default();
        let essence = essence.trim_ascii();
        if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
            Self::Form
        } else if essence.eq_ignore_ascii_case(b"application/json")
            || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"))
        {
            Self::Json
        } else {
            Self::Other
        }
    }
}

/// The request as the managed protections see it, besides what rules see.
pub struct ManagedInput<'a> {
    /// The path as received, still percent-encoded.
    pub raw_path: &'a [u8],
    pub body_kind: BodyKind,
}

impl Firewall {
    /// Compile a validated `[firewall]`; `None` when it asks for nothing. `redis` is the
    /// client `[redis]` gave, for shared bans.
    pub fn compile(
        config: &FirewallConfig,
        reg: &FirewallRegistry,
        metrics: &Metrics,
        redis: Option<&Arc<RedisLimiter>>,
    ) -> Result<Option<Self>, String> {
        if config.rules.is_empty() && config.managed.is_empty() && config.bans.is_none() {
            return Ok(None);
        }
        let enforce = config.mode == FirewallMode::Enforce;
        let rules = Rules::compile(&config.rules)?;
        let runtime = rules
            .list
            .iter()
            .map(|r| {
                let action = match r.action {
                    RuleAction::Deny => "deny",
                    RuleAction::Log => "log",
                    RuleAction::Limit => "limit",
                };
                let limiter = r.rate.map(|rate @ (count, per, burst)| {
                    (Gcra::new(count, per, burst), reg.limiter(&r.name, rate))
                });
                RuleRuntime {
                    limiter,
                    acted: metrics.firewall_decision(&r.name, action),
                    counted: metrics.firewall_decision(&r.name, "count"),
                    acted_note: format!("{action}:{}", r.name).into(),
                    counted_note: format!("count:{}", r.name).into(),
                }
            })
            .collect();
        let protections = ManagedProtection::ALL
            .iter()
            .map(|p| ManagedRuntime {
                denied: metrics.firewall_decision(p.label(), "deny"),
                counted: metrics.firewall_decision(p.label(), "count"),
                denied_note: Arc::new(format!("deny:{}", p.label())),
                counted_note: Arc::new(format!("count:{}", p.label())),
            })
            .collect();
        let all: ProtectionSet = config.managed.iter().copied().collect();
        let count_only: ProtectionSet = config.count_only.iter().copied().collect();
        let (managed, counted) = if enforce {
            (all.without(count_only), all.intersect(count_only))
        } else {
            (ProtectionSet::empty(), all)
        };
        let deny_oversize = enforce && config.oversize_body == OversizeBody::Deny;
        let oversize_action = if deny_oversize { "deny" } else { "count" };
        let bans = config.bans.as_ref().map(|b| BanPolicy {
            threshold: u64::from(b.threshold),
            duration: b.duration,
            statuses: b.statuses.clone(),
            status: b.status,
            enforce,
            table: reg.bans.clone(),
            detector: reg.detector(b.window),
            shared: if b.shared { redis.cloned() } else { None },
            ip_bans: metrics.bans.with_label_values(&["ip"]),
            consumer_bans: metrics.bans.with_label_values(&["consumer"]),
        });
        Ok(Some(Self {
            enforce,
            managed,
            counted,
            inspect_headers: config
                .inspect_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            body_inspect_bytes: config.body_inspect_bytes,
            deny_oversize,
            oversize: metrics.firewall_decision("oversize_body", oversize_action),
            oversize_note: Arc::new(format!("{oversize_action}:oversize_body")),
            rules,
            runtime,
            protections,
            bans,
        }))
    }

    /// Rule names and protection labels, for the metric series this firewall owns.
    pub fn series(&self) -> Vec<String> {
        let mut out: Vec<String> = self.rules.list.iter().map(|r| r.name.clone()).collect();
        out.extend(ManagedProtection::ALL.iter().map(|p| p.label().to_string()));
        out.push("oversize_body".to_string());
        out
    }

    /// A body that cannot be read before the request goes on: counted, and the note for the
    /// access log; the caller refuses it when [`deny_oversize`](Self::deny_oversize).
    pub fn oversize_body(&self) -> Note {
        self.oversize.inc();
        self.oversize_note.clone()
    }

    /// Whether a body declared with `content_length` (`None`: chunked or unknown) is read and
    /// inspected before the request goes on. Larger bodies would not fit the buffer Pingora
    /// replays to the upstream.
    pub fn reads_body(content_length: Option<u64>) -> bool {
        content_length.is_some_and(|n| n <= MAX_BODY_INSPECT_BYTES as u64)
    }

    /// What applies on `route`, without the protections the route skips.
    pub fn plan(&self, route: &str, skip: &[ManagedProtection]) -> RoutePlan {
        let rules: Vec<u16> = self
            .rules
            .list
            .iter()
            .enumerate()
            .filter(|(_, r)| r.applies_to_route(route))
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .collect();
        let rules_need_body = rules
            .iter()
            .any(|&i| self.rules.list[usize::from(i)].needs_body());
        let rules_need_json = rules
            .iter()
            .any(|&i| self.rules.list[usize::from(i)].needs_json());
        let skip: ProtectionSet = skip.iter().copied().collect();
        RoutePlan {
            rules_need_json,
            rules,
            managed: self.managed.without(skip),
            counted: self.counted.without(skip),
            rules_need_body,
        }
    }

    /// Run the route's rules, then its managed protections. `now` is Unix nanoseconds.
    pub fn inspect(
        &self,
        plan: &RoutePlan,
        input: &RuleInput<'_>,
        managed_input: &ManagedInput<'_>,
        now: u64,
    ) -> Outcome {
        let mut outcome = Outcome::PASS;
        self.rules.each_match(&plan.rules, input, |i, rule| {
            let Some(rt) = self.runtime.get(i) else {
                return true;
            };
            let refuses = match (rule.action, &rt.limiter) {
                (RuleAction::Log, _) => {
                    rt.acted.inc();
                    outcome.note = Some(rt.acted_note.clone());
                    return true;
                }
                (RuleAction::Deny, _) => Verdict::Deny,
                (RuleAction::Limit, Some((gcra, store))) => {
                    let key = input.client_ip.map(bans::ban_prefix);
                    let d = store.with(store.key_hash(&key), now, |s| gcra.check(s, now));
                    if d.allowed {
                        return true;
                    }
                    Verdict::Limit {
                        retry_after_secs: d.wait.div_ceil(1_000_000_000).max(1),
                    }
                }
                (RuleAction::Limit, None) => return true,
            };
            outcome.hit = true;
            if self.enforce {
                rt.acted.inc();
                outcome.note = Some(rt.acted_note.clone());
                outcome.verdict = refuses;
                false
            } else {
                rt.counted.inc();
                outcome.note = Some(rt.counted_note.clone());
                true
            }
        });
        if outcome.verdict != Verdict::Pass {
            return outcome;
        }
        for (set, refuse) in [(plan.managed, true), (plan.counted, false)] {
            if set.is_empty() {
                continue;
            }
            let Some(p) = self.detect(set, input, managed_input) else {
                continue;
            };
            let Some(rt) = self.protections.get(p as usize) else {
                continue;
            };
            outcome.hit = true;
            if refuse {
                rt.denied.inc();
                outcome.note = Some(rt.denied_note.clone());
                outcome.verdict = Verdict::Deny;
                return outcome;
            }
            rt.counted.inc();
            outcome.note = Some(rt.counted_note.clone());
        }
        outcome
    }

    /// The first protection in `set` that the request trips.
    fn detect(
        &self,
        set: ProtectionSet,
        input: &RuleInput<'_>,
        m: &ManagedInput<'_>,
    ) -> Option<ManagedProtection> {
        if let Some(p) = managed::inspect_path(set, m.raw_path) {
            return Some(p);
        }
        if let Some(ua) = input.headers.get(http::header::USER_AGENT) {
            if let Some(p) = managed::inspect_user_agent(set, ua.as_bytes()) {
                return Some(p);
            }
        }
        let found = std::cell::Cell::new(None);
        let check = |v: &[u8]| {
            found.set(managed::inspect_value(set, v));
            found.get().is_none()
        };
        let mut buf = Vec::new();
        if let Some(q) = input.query {
            inputs::for_each_query_pair(q, &mut buf, |name, value| check(name) && check(value));
        }
        for cookie in input.headers.get_all(http::header::COOKIE) {
            if found.get().is_some() {
                break;
            }
            inputs::for_each_cookie(cookie.as_bytes(), |_, value| check(value));
        }
        for name in &self.inspect_headers {
            for v in input.headers.get_all(name) {
                if found.get().is_none() {
                    check(v.as_bytes());
                }
            }
        }
        if found.get().is_none() {
            match (m.body_kind, input.body) {
                (BodyKind::Json, Some(body)) => {
                    let scan = json_scan::scan_json_strings(body, &mut buf, check);
                    // A body that should be JSON and is not is still scanned whole.
                    if scan == json_scan::JsonScan::Invalid && found.get().is_none() {
                        check(body);
                    }
                }
                (BodyKind::Form, Some(body)) => {
                    inputs::for_each_form_pair(body, &mut buf, |name, value| {
                        check(name) && check(value)
                    });
                }
                _ => {}
            }
        }
        found.get()
    }
}

impl BanPolicy {
    /// Record the outcome of a request for intrusion detection: one event per refusal with a
    /// configured status or firewall hit, for the client address and the consumer. Returns
    /// the bans this decided (already in the table when enforced); the caller logs them and
    /// shares them.
    pub fn observe(
        &self,
        client_ip: Option<IpAddr>,
        consumer: Option<&str>,
        status: u16,
        firewall_hit: bool,
        now_ms: u64,
    ) -> Vec<(BanKey, Ban)> {
        if !firewall_hit && !self.statuses.contains(&status) {
            return Vec::new();
        }
        // Enforced, a client at or over the threshold is banned (once: see below). Counted
        // only, nothing is imposed, so each client is reported when its estimate reaches the
        // threshold (each event adds exactly one, so an upward crossing passes through it)
        // rather than on every later event.
        let crossed = |n: u64| {
            if self.enforce {
                n >= self.threshold
            } else {
                n == self.threshold
            }
        };
        let mut out = Vec::new();
        if let Some(ip) = client_ip {
            if crossed(self.detector.ip_event(ip)) {
                out.push((BanKey::Ip(bans::ban_prefix(ip)), &self.ip_bans));
            }
        }
        if let Some(c) = consumer {
            if crossed(self.detector.consumer_event(c)) {
                out.push((BanKey::Consumer(c.into()), &self.consumer_bans));
            }
        }
        let until_ms = now_ms.saturating_add(self.duration.as_millis() as u64);
        out.into_iter()
            .filter_map(|(key, counter)| {
                // Already banned: nothing new to log or share.
                if self.enforce && self.table.seconds_left(&key, now_ms).is_some() {
                    return None;
                }
                // Written only for a ban: every refusal with a counted status gets here.
                let what = if firewall_hit {
                    "firewall hits".to_string()
                } else {
                    format!("too many {status} responses")
                };
                let ban = Ban {
                    since_ms: now_ms,
                    until_ms,
                    reason: format!(
                        "{what}: {} within {}",
                        self.threshold,
                        humantime::format_duration(self.detector.window)
                    ),
                    shared: false,
                };
                if self.enforce && !self.table.insert(key.clone(), ban.clone()) {
                    return None;
                }
                counter.inc();
                Some((key, ban))
            })
            .collect()
    }

    /// The `Retry-After` seconds when `ip` is banned.
    pub fn ip_banned(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        self.table.ip_banned(ip, now_ms)
    }

    /// The `Retry-After` seconds when `consumer` is banned.
    pub fn consumer_banned(&self, consumer: &str, now_ms: u64) -> Option<u64> {
        self.table.consumer_banned(consumer, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    fn firewall(text: &str) -> (Firewall, FirewallRegistry) {
        let config: FirewallConfig = toml::from_str(text).unwrap();
        let reg = FirewallRegistry::default();
        let metrics = Metrics::new().unwrap();
        let fw = Firewall::compile(&config, &reg, &metrics, None)
            .unwrap()
            .unwrap();
        (fw, reg)
    }

    fn run(fw: &Firewall, plan: &RoutePlan, query: &str, ip: &str) -> Outcome {
        let headers = HeaderMap::new();
        let input = RuleInput {
            method: &Method::GET,
            path: b"/x",
            query: Some(query.as_bytes()),
            headers: &headers,
            client_ip: ip.parse().ok(),
            host: None,
            body: None,
            json: None,
        };
        let managed = ManagedInput {
            raw_path: b"/x",
            body_kind: BodyKind::Other,
        };
        fw.inspect(plan, &input, &managed, crate::clock::unix_nanos())
    }

    const RULES: &str = r#"
        managed = ["sqli", "xss"]
        count_only = ["xss"]
        [[rules]]
        name = "debug"
        action = "deny"
        query = [{ name = "debug", present = true }]
        [[rules]]
        name = "seen"
        action = "log"
        query = [{ name = "trace", present = true }]
        [[rules]]
        name = "slow"
        action = "limit"
        query = [{ name = "slow", present = true }]
        rate = 2
        per = "1m"
    "#;

    #[test]
    fn enforce_mode_refuses_counts_and_limits() {
        let (fw, _) = firewall(RULES);
        let plan = fw.plan("r", &[]);
        let o = run(&fw, &plan, "debug=1", "192.0.2.1");
        assert_eq!(
            (o.verdict, o.note.as_deref().map(String::as_str), o.hit),
            (Verdict::Deny, Some("deny:debug"), true)
        );
        let o = run(&fw, &plan, "trace=1", "192.0.2.1");
        assert_eq!(
            (o.verdict, o.note.as_deref().map(String::as_str), o.hit),
            (Verdict::Pass, Some("log:seen"), false)
        );
        let o = run(&fw, &plan, "q=1'+OR+'1'='1", "192.0.2.1");
        assert_eq!(
            (o.verdict, o.note.as_deref().map(String::as_str)),
            (Verdict::Deny, Some("deny:sqli"))
        );
        let o = run(&fw, &plan, "q=<script>alert(1)</script>", "192.0.2.1");
        assert_eq!(
            (o.verdict, o.note.as_deref().map(String::as_str)),
            (Verdict::Pass, Some("count:xss"))
        );
        let skip = fw.plan("r", &[ManagedProtection::Sqli]);
        assert_eq!(
            run(&fw, &skip, "q=1'+OR+'1'='1", "192.0.2.1").verdict,
            Verdict::Pass
        );
        for _ in 0..2 {
            assert_eq!(
                run(&fw, &plan, "slow=1", "192.0.2.1").verdict,
                Verdict::Pass
            );
        }
        assert!(matches!(
            run(&fw, &plan, "slow=1", "192.0.2.1").verdict,
            Verdict::Limit { retry_after_secs } if (1..=30).contains(&retry_after_secs)
        ));
        assert_eq!(
            run(&fw, &plan, "slow=1", "192.0.2.2").verdict,
            Verdict::Pass,
            "per client"
        );
    }

    #[test]
    fn count_mode_refuses_nothing() {
        let (fw, _) = firewall(&format!("mode = \"count\"\n{RULES}"));
        let plan = fw.plan("r", &[]);
        for q in ["debug=1", "q=1'+OR+'1'='1", "slow=1", "slow=1", "slow=1"] {
            let o = run(&fw, &plan, q, "192.0.2.1");
            assert_eq!(o.verdict, Verdict::Pass, "{q}");
        }
        let o = run(&fw, &plan, "debug=1", "192.0.2.1");
        assert_eq!(
            (o.note.as_deref().map(String::as_str), o.hit),
            (Some("count:debug"), true)
        );
    }

    #[test]
    fn bans_follow_the_threshold_and_count_mode_only_reports_them() {
        let (fw, reg) = firewall("[bans]\nthreshold = 3\nwindow = \"1m\"\n");
        let bans = fw.bans.as_ref().unwrap();
        let ip = "198.51.100.7".parse().ok();
        assert!(
            bans.observe(ip, None, 200, false, 1000).is_empty(),
            "not an event"
        );
        assert!(bans.observe(ip, None, 401, false, 1000).is_empty());
        assert!(bans.observe(ip, Some("eve"), 404, false, 1000).is_empty());
        let banned = bans.observe(ip, None, 200, true, 1000);
        assert_eq!(banned.len(), 1);
        assert_eq!(banned[0].0.to_text(), "ip:198.51.100.7");
        assert!(reg
            .bans
            .ip_banned("198.51.100.7".parse().unwrap(), 2000)
            .is_some());
        assert!(
            bans.observe(ip, None, 401, false, 1000).is_empty(),
            "already banned"
        );

        let (fw, reg) = firewall("mode = \"count\"\n[bans]\nthreshold = 1\n");
        let bans = fw.bans.as_ref().unwrap();
        assert_eq!(
            bans.observe(ip, None, 401, false, 1000).len(),
            1,
            "reported"
        );
        assert!(bans.observe(ip, None, 401, false, 1000).is_empty(), "once");
        assert!(reg.bans.is_empty(), "not imposed");
    }

    #[test]
    fn body_kinds_come_from_the_content_type() {
        let kind = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ct),
            );
            BodyKind::of(&h)
        };
        assert_eq!(kind("application/json; charset=utf-8"), BodyKind::Json);
        assert_eq!(kind("application/problem+json"), BodyKind::Json);
        assert_eq!(kind("Application/X-WWW-Form-Urlencoded"), BodyKind::Form);
        assert_eq!(kind("text/plain"), BodyKind::Other);
        assert_eq!(BodyKind::of(&HeaderMap::new()), BodyKind::Other);
    }
}
