//! `[firewall]`: rules, managed protections and bans.

use super::{display_name, duration_in, token_name, Config, KeyPath, Present, Problems};
use super::{DAY, MS, SECOND};
use crate::config::{
    parse_cidr, FieldMatch, FirewallRuleConfig, RuleAction, MAX_BODY_INSPECT_BYTES,
};
use std::collections::BTreeSet;

/// Compiled size a single rule pattern may reach (the per-field sets have their own bound).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    let top = KeyPath::top("firewall");
    if present.is_broken(&top) {
        return;
    }
    let fw = &config.firewall;
    if fw.body_inspect_bytes == 0 || fw.body_inspect_bytes > MAX_BODY_INSPECT_BYTES {
        p.at(
            top.key("body_inspect_bytes"),
            format!("must be between 1 and {MAX_BODY_INSPECT_BYTES}"),
        );
    }
    for (i, h) in fw.inspect_headers.iter().enumerate() {
        super::header_name(p, top.key("inspect_headers").index(i), h);
    }
    for (i, c) in fw.count_only.iter().enumerate() {
        if !fw.managed.contains(c) {
            p.at(
                top.key("count_only").index(i),
                format!("{:?} is not in `managed`", c.label()),
            );
        }
    }
    let routes: BTreeSet<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    // Routes left out for a problem are not "unknown".
    let any_route_broken = present.broken.iter().any(|b| b.is_under("routes"));
    let mut names = BTreeSet::new();
    for (i, rule) in fw.rules.iter().enumerate() {
        let at = top.key("rules").index(i);
        display_name(p, at.key("name"), "rule", &rule.name);
        token_name(p, at.key("name"), "rule", &rule.name);
        if !names.insert(rule.name.as_str()) {
            p.at(
                at.key("name"),
                format!("duplicate rule name {:?}", rule.name),
            );
        }
        for (j, r) in rule.routes.iter().enumerate() {
            if !routes.contains(r.as_str()) && !any_route_broken {
                p.at(at.key("routes").index(j), format!("unknown route {r:?}"));
            }
        }
        self::rule(p, &at, rule);
    }
    if let Some(bans) = &fw.bans {
        let at = top.key("bans");
        if bans.threshold == 0 {
            p.at(at.key("threshold"), "must be at least 1");
        }
        // pingora-limits' estimators assume windows of a second or more.
        duration_in(p, at.key("window"), bans.window, SECOND, DAY);
        duration_in(p, at.key("duration"), bans.duration, SECOND, 30 * DAY);
        if bans.statuses.is_empty() {
            p.at(at.key("statuses"), "must list at least one status");
        }
        for (j, s) in bans.statuses.iter().enumerate() {
            if !(400..=599).contains(s) {
                p.at(
                    at.key("statuses").index(j),
                    format!("{s} is not an error status (400-599)"),
                );
            }
        }
        if !matches!(bans.status, 403 | 429) {
            p.at(at.key("status"), "must be 403 or 429");
        }
        if bans.shared && config.redis.is_none() && !present.is_broken(&KeyPath::top("redis")) {
            p.at(at.key("shared"), "shared bans need a `[redis]` section");
        }
    }
}

fn rule(p: &mut Problems, at: &KeyPath, rule: &FirewallRuleConfig) {
    for (j, m) in rule.methods.iter().enumerate() {
        if http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err() {
            p.at(at.key("methods").index(j), format!("{m:?} is not a method"));
        }
    }
    for (j, h) in rule.hosts.iter().enumerate() {
        if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/') {
            p.at(
                at.key("hosts").index(j),
                format!("{h:?} is not a host name"),
            );
        }
    }
    for (key, value) in [
        ("path_prefix", &rule.path_prefix),
        ("path_glob", &rule.path_glob),
    ] {
        if value.as_ref().is_some_and(|v| !v.starts_with('/')) {
            p.at(at.key(key), "must start with `/`");
        }
    }
    if let Some(glob) = &rule.path_glob {
        pattern(p, at.key("path_glob"), &crate::config::glob_to_regex(glob));
    }
    for (key, value) in [
        ("path_regex", &rule.path_regex),
        ("user_agent", &rule.user_agent),
        ("body", &rule.body),
    ] {
        if let Some(re) = value {
            pattern(p, at.key(key), re);
        }
    }
    for (j, ip) in rule.ips.iter().enumerate() {
        if let Err(e) = parse_cidr(ip) {
            p.at(at.key("ips").index(j), e);
        }
    }
    fields(p, at.key("query"), &rule.query, |_| Ok(()));
    fields(p, at.key("headers"), &rule.headers, |name| {
        http::HeaderName::from_bytes(name.as_bytes())
            .map(|_| ())
            .map_err(|_| format!("{name:?} is not a header name"))
    });
    fields(p, at.key("json"), &rule.json, |name| {
        if name.is_empty() || name.starts_with('/') {
            Ok(())
        } else {
            Err(format!(
                "{name:?} is not a JSON pointer (it starts with `/`)"
            ))
        }
    });
    let conditions = !rule.hosts.is_empty()
        || !rule.routes.is_empty()
        || !rule.methods.is_empty()
        || rule.path_prefix.is_some()
        || rule.path_glob.is_some()
        || rule.path_regex.is_some()
        || !rule.query.is_empty()
        || !rule.headers.is_empty()
        || !rule.ips.is_empty()
        || rule.user_agent.is_some()
        || rule.body.is_some()
        || !rule.json.is_empty();
    if !conditions {
        p.at(
            at.clone(),
            "a rule needs at least one condition (it would match every request)",
        );
    }
    match (rule.action, rule.rate, rule.per) {
        (RuleAction::Limit, Some(rate), Some(per)) => {
            if rate == 0 {
                p.at(at.key("rate"), "must be at least 1");
            }
            duration_in(p, at.key("per"), per, MS, DAY);
        }
        (RuleAction::Limit, _, _) => p.at(at.clone(), "`limit` needs `rate` and `per`"),
        (_, rate, per) => {
            if rate.is_some() || per.is_some() || rule.burst.is_some() {
                p.at(
                    at.key("action"),
                    "`rate`, `per` and `burst` only apply to `action = \"limit\"`",
                );
            }
        }
    }
}

fn fields(
    p: &mut Problems,
    at: KeyPath,
    list: &[FieldMatch],
    name_ok: impl Fn(&str) -> Result<(), String>,
) {
    for (j, m) in list.iter().enumerate() {
        let at = at.index(j);
        if let Err(e) = name_ok(&m.name) {
            p.at(at.key("name"), e);
        }
        let given = usize::from(m.present) + usize::from(m.absent) + usize::from(m.regex.is_some());
        if given != 1 {
            p.at(
                at.clone(),
                "needs exactly one of `present = true`, `absent = true` or `regex`",
            );
        }
        if let Some(re) = &m.regex {
            pattern(p, at.key("regex"), re);
        }
    }
}

/// A regular expression as the rule sets compile it.
fn pattern(p: &mut Problems, at: KeyPath, re: &str) {
    if let Err(e) = regex::bytes::RegexBuilder::new(re)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
    {
        // The first line names the problem; the rest draws the pattern.
        let msg = e.to_string();
        let line = msg
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| msg.lines().next().unwrap_or("invalid"));
        p.at(
            at,
            format!(
                "invalid regular expression: {}",
                line.trim_start_matches("error: ")
            ),
        );
    }
}
