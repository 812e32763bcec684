//! `GET /-/status`: one HTML page for people, from what the admin API already knows. Routes
//! with their traffic and last call, upstream health, certificates and their expiry, recent
//! config changes from the audit log, and the most frequent refusals. It has no external
//! assets and no script, so it works offline and under a strict CSP, and every value from the
//! config or a client is escaped.

use crate::reload::Reloader;
use crate::snapshot::RouteAction;
use std::fmt::Write;

/// Audit log lines shown, newest first.
const AUDIT_LINES: usize = 10;
/// Bytes read from the end of the audit log.
const AUDIT_TAIL: u64 = 64 * 1024;
/// Refusal kinds shown, most frequent first.
const TOP_REFUSALS: usize = 10;

/// The page, rendered now.
pub fn page(reloader: &Reloader) -> String {
    let snapshot = reloader.store.load();
    let now_secs = crate::clock::unix_secs() as i64;
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>gatehouse status</title><style>\
         body{font:14px system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}\
         h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
         table{border-collapse:collapse;min-width:480px}\
         th,td{text-align:left;padding:4px 12px;border-bottom:1px solid #d0d7de}\
         th{background:#f6f8fa}.bad{color:#b42318;font-weight:600}.ok{color:#067647}\
         .muted{color:#57606a}</style></head><body>",
    );
    let (last, source) = reloader.last();
    let _ = write!(
        h,
        "<h1>gatehouse</h1><p>config <b>{}</b>, applied by {}, loaded {}. {}</p>",
        esc(&snapshot.version),
        esc(&format!("{source:?}").to_lowercase()),
        esc(&humantime::format_rfc3339_seconds(snapshot.loaded_at).to_string()),
        match &last.error {
            Some(e) => format!("<span class=\"bad\">Last reload refused: {}</span>", esc(e)),
            None => String::new(),
        }
    );

    h.push_str("<h2>Routes</h2><table><tr><th>route</th><th>upstream</th><th>requests</th><th>last call</th></tr>");
    for r in &snapshot.routes {
        let upstream = match &r.action {
            RouteAction::Proxy { pool, .. } => pool.name.as_str(),
            RouteAction::Respond(_) => "(answered here)",
        };
        let last = match r.metrics.last_request() {
            Some(t) => ago(now_secs - t as i64),
            None => "<span class=\"muted\">never</span>".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{last}</td></tr>",
            esc(&r.name),
            esc(upstream),
            r.metrics.requests()
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Upstreams</h2><table><tr><th>upstream</th><th>target</th><th>health</th></tr>");
    for p in &snapshot.pools {
        for t in &p.targets {
            let health = if t.state.is_healthy() {
                "<span class=\"ok\">healthy</span>"
            } else {
                "<span class=\"bad\">unhealthy</span>"
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{health}</td></tr>",
                esc(&p.name),
                esc(&t.label)
            );
        }
    }
    h.push_str("</table>");

    h.push_str(
        "<h2>Certificates</h2><table><tr><th>certificate</th><th>names</th><th>expires</th></tr>",
    );
    // File certificates, and the ones `[acme]` issued.
    let issued = reloader.store.acme.certificates();
    let mut certs: Vec<_> = snapshot.certificates.entries().chain(&issued).collect();
    certs.sort_by_key(|e| e.not_after);
    for c in certs {
        let days = (c.not_after - now_secs) as f64 / 86_400.0;
        let class = if days < 14.0 { "bad" } else { "ok" };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">in {days:.0} days</td></tr>",
            esc(&c.name),
            esc(&c.hosts.join(", "))
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Recent config changes</h2>");
    match reloader.audit_path() {
        None => h.push_str("<p class=\"muted\">No audit log (<code>[admin] audit_log</code>).</p>"),
        Some(path) => {
            h.push_str("<table><tr><th>time</th><th>version</th><th>source</th></tr>");
            for entry in recent_audit(path) {
                let field = |k: &str| entry[k].as_str().unwrap_or("").to_string();
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&field("time")),
                    esc(&field("version")),
                    esc(&field("source"))
                );
            }
            h.push_str("</table>");
        }
    }

    h.push_str("<h2>Top refusals</h2><table><tr><th>kind</th><th>count</th></tr>");
    let text = reloader.registries.metrics.render();
    for (kind, count) in top_refusals(&String::from_utf8_lossy(&text)) {
        let _ = write!(h, "<tr><td>{}</td><td>{count}</td></tr>", esc(&kind));
    }
    h.push_str("</table></body></html>");
    h
}

/// The last [`AUDIT_LINES`] entries of the audit log, newest first, read from its last
/// [`AUDIT_TAIL`] bytes (the file only grows).
fn recent_audit(path: &std::path::Path) -> Vec<serde_json::Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut tail = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(AUDIT_TAIL)));
        let _ = file.take(AUDIT_TAIL).read_to_end(&mut tail);
    }
    // A first line cut by the seek is not JSON and is skipped.
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .take(AUDIT_LINES)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Refusals counted in the metrics, as (kind, count), most frequent first: edge refusals by
/// reason, failed authentications, rate limit rejections and firewall refusals.
fn top_refusals(exposition: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for line in exposition.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = value.parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            let key = format!("{name}=\"");
            let start = series.find(&key)? + key.len();
            series[start..].split('"').next()
        };
        let kind = if series.starts_with("gatehouse_edge_refusals_total{") {
            label("reason").map(|r| format!("edge: {r}"))
        } else if series.starts_with("gatehouse_auth_decisions_total{") {
            label("result")
                .filter(|r| *r != "allowed")
                .map(|r| format!("auth: {r} on {}", label("route").unwrap_or("?")))
        } else if series.starts_with("gatehouse_ratelimit_decisions_total{") {
            label("result")
                .filter(|r| *r == "rejected")
                .map(|_| format!("limit: {}", label("policy").unwrap_or("?")))
        } else if series.starts_with("gatehouse_firewall_decisions_total{") {
            label("action")
                .filter(|a| *a == "deny" || *a == "limit")
                .map(|a| format!("firewall {a}: {}", label("rule").unwrap_or("?")))
        } else {
            None
        };
        if let Some(kind) = kind.filter(|_| count >= 1.0) {
            out.push((kind, count as u64));
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(TOP_REFUSALS);
    out
}

/// "5 s ago", "3 min ago", "2 h ago", "4 days ago".
fn ago(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// Text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(
            esc("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn refusals_are_read_from_the_metrics_most_frequent_first() {
        let text = "gatehouse_edge_refusals_total{reason=\"uri_too_long\"} 2\n\
                    gatehouse_edge_refusals_total{reason=\"ip_denied\"} 0\n\
                    gatehouse_auth_decisions_total{authorizer=\"k\",result=\"missing_credentials\",route=\"r\"} 7\n\
                    gatehouse_auth_decisions_total{authorizer=\"k\",result=\"allowed\",route=\"r\"} 9\n\
                    gatehouse_ratelimit_decisions_total{policy=\"p\",result=\"rejected\"} 4\n\
                    gatehouse_firewall_decisions_total{action=\"deny\",rule=\"managed:sqli\"} 3\n\
                    gatehouse_requests_total{method=\"GET\",route=\"r\",status=\"4xx\"} 99\n";
        assert_eq!(
            top_refusals(text),
            [
                ("auth: missing_credentials on r".to_string(), 7),
                ("limit: p".to_string(), 4),
                ("firewall deny: managed:sqli".to_string(), 3),
                ("edge: uri_too_long".to_string(), 2),
            ]
        );
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(5), "5 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(3 * 3600), "3 h ago");
        assert_eq!(ago(9 * 86_400), "9 days ago");
    }
}
