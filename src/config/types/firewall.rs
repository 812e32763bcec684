//! `[firewall]`: rules, managed protections and automatic bans.

use serde::Deserialize;
use std::time::Duration;

/// `[firewall]`. Absent: no rules, no managed protections, no bans, and no cost per request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirewallConfig {
    /// `enforce` refuses what rules and protections catch; `count` only counts and logs it,
    /// bans included (to try a new rule set on live traffic).
    #[serde(default)]
    pub mode: FirewallMode,
    /// Managed protections, each refusing with 403 unless listed in `count_only`.
    #[serde(default)]
    pub managed: Vec<ManagedProtection>,
    /// Managed protections that only count and log, even in `enforce` mode.
    #[serde(default)]
    pub count_only: Vec<ManagedProtection>,
    /// Request headers the managed detectors scan, besides the path, the query, cookies and
    /// the body (`user-agent` is always scanned by `scanners` and `known_bad_inputs`).
    #[serde(default = "default_inspect_headers")]
    pub inspect_headers: Vec<String>,
    /// How much of a request body rules and managed protections read. Bodies declared up to
    /// this size are read whole before the request goes on (before authentication); longer or
    /// chunked bodies have their first bytes inspected as they stream. At most 65536.
    #[serde(default = "default_body_inspect_bytes")]
    pub body_inspect_bytes: usize,
    /// Bodies that cannot be read before the request goes on (chunked, or declared larger
    /// than 65536 bytes): `continue` lets them through uninspected (counted as
    /// `rule="oversize_body"`), `deny` refuses them with 413.
    #[serde(default)]
    pub oversize_body: OversizeBody,
    /// Rules, evaluated in order; the first `deny` or `limit` that refuses ends evaluation.
    #[serde(default)]
    pub rules: Vec<FirewallRuleConfig>,
    /// Automatic bans of clients that keep failing or attacking.
    #[serde(default)]
    pub bans: Option<BansConfig>,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        Self {
            mode: FirewallMode::default(),
            managed: Vec::new(),
            count_only: Vec::new(),
            inspect_headers: default_inspect_headers(),
            body_inspect_bytes: default_body_inspect_bytes(),
            oversize_body: OversizeBody::default(),
            rules: Vec::new(),
            bans: None,
        }
    }
}

fn default_inspect_headers() -> Vec<String> {
    vec!["referer".to_string()]
}

fn default_body_inspect_bytes() -> usize {
    8192
}

/// Largest `body_inspect_bytes`: what Pingora keeps of a body it has to replay upstream.
pub const MAX_BODY_INSPECT_BYTES: usize = 65536;

/// What happens to a body too large (or too unbounded) to read before the request goes on.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OversizeBody {
    #[default]
    Continue,
    Deny,
}

/// Whether the firewall refuses or only counts.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FirewallMode {
    #[default]
    Enforce,
    Count,
}

/// A managed protection.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ManagedProtection {
    /// SQL injection (libinjection's tokenizer and fingerprints).
    Sqli,
    /// Cross-site scripting (libinjection's HTML5 tokenizer).
    Xss,
    /// `../` in any spelling.
    Traversal,
    /// Log4Shell lookups, shell metacharacter probes and similar.
    KnownBadInputs,
    /// User agents of common vulnerability scanners.
    Scanners,
}

impl ManagedProtection {
    /// Every protection, in declaration order.
    pub const ALL: [ManagedProtection; 5] = [
        Self::Sqli,
        Self::Xss,
        Self::Traversal,
        Self::KnownBadInputs,
        Self::Scanners,
    ];

    /// The name used in config, metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sqli => "sqli",
            Self::Xss => "xss",
            Self::Traversal => "traversal",
            Self::KnownBadInputs => "known_bad_inputs",
            Self::Scanners => "scanners",
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Refuse with 403.
    Deny,
    /// Count and log only.
    Log,
    /// Allow `rate` matching requests per `per` from each client; 429 beyond.
    Limit,
}

/// `[[firewall.rules]]`: every condition given must hold for the rule to match.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirewallRuleConfig {
    /// Unique name, used in metrics, logs and refusals.
    pub name: String,
    pub action: RuleAction,
    /// Only on these hosts (exact, case-insensitive); every host when empty.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Only on these routes; every route (and requests matching none) when empty.
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// The path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Path glob: `*` is any run within a segment, `**` any run of segments, `?` one
    /// character.
    #[serde(default)]
    pub path_glob: Option<String>,
    /// Regular expression searched in the path.
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Query parameters (percent-decoded).
    #[serde(default)]
    pub query: Vec<FieldMatch>,
    #[serde(default)]
    pub headers: Vec<FieldMatch>,
    /// The client address is in one of these CIDRs (or addresses).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Regular expression searched in `User-Agent` (a request without one matches nothing).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Regular expression searched in the first `body_inspect_bytes` of the body.
    #[serde(default)]
    pub body: Option<String>,
    /// Fields of a JSON body, by JSON pointer (`/user/role`).
    #[serde(default)]
    pub json: Vec<FieldMatch>,
    /// `limit`: requests allowed per `per` from one client.
    #[serde(default)]
    pub rate: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub per: Option<Duration>,
    /// `limit`: requests allowed at once; `rate` when absent, so `rate = 5, per = "1m"`
    /// allows 5 requests at once and then one every 12 seconds.
    #[serde(default)]
    pub burst: Option<u64>,
}

/// A condition on a named field (header, query parameter, JSON pointer): exactly one of
/// `present = true`, `absent = true` or `regex`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldMatch {
    /// Header name, query parameter name or JSON pointer.
    pub name: String,
    #[serde(default)]
    pub present: bool,
    #[serde(default)]
    pub absent: bool,
    /// Searched in each value; any value matching is enough.
    #[serde(default)]
    pub regex: Option<String>,
}

/// `[firewall.bans]`: clients whose refusals (401, 403, 404, 429) and firewall hits exceed
/// `threshold` within `window` are banned for `duration`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BansConfig {
    pub threshold: u32,
    #[serde(default = "default_ban_window", with = "humantime_serde")]
    pub window: Duration,
    #[serde(default = "default_ban_duration", with = "humantime_serde")]
    pub duration: Duration,
    /// Statuses that count as one event each.
    #[serde(default = "default_ban_statuses")]
    pub statuses: Vec<u16>,
    /// What a banned client gets: 403, or 429 with `Retry-After`.
    #[serde(default = "default_ban_status")]
    pub status: u16,
    /// Share bans with every instance through `[redis]`.
    #[serde(default)]
    pub shared: bool,
}

fn default_ban_window() -> Duration {
    Duration::from_secs(60)
}

fn default_ban_duration() -> Duration {
    Duration::from_secs(600)
}

fn default_ban_statuses() -> Vec<u16> {
    vec![401, 403, 404, 429]
}

fn default_ban_status() -> u16 {
    403
}
