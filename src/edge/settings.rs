//! The edge part of a snapshot: per-listener limits and IP lists, trusted proxies, and what
//! each route and host adds. Compiled once per config; the request path only reads it.

use super::client_ip::ForwardedHeader;
use super::ip_list::IpList;
use super::path::PathAllow;
use crate::config::{
    ClientIpHeader, Config, EdgeConfig, EdgeLimits, ListenerConfig, PathException, RouteConfig,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// An allow list and a deny list. A client passes when the allow list is empty or holds it,
/// and the deny list does not.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    allow: IpList,
    deny: IpList,
}

impl IpRules {
    /// Lists that validation has checked; an entry that still does not parse is left out.
    pub fn compile(allow: &[String], deny: &[String]) -> Self {
        Self {
            allow: IpList::parse_valid(allow),
            deny: IpList::parse_valid(deny),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `ip` may pass.
    pub fn permits(&self, ip: IpAddr) -> bool {
        (self.allow.is_empty() || self.allow.contains(ip)) && !self.deny.contains(ip)
    }
}

/// What one listener enforces.
#[derive(Debug, Clone)]
pub struct ListenerEdge {
    pub address: Option<SocketAddr>,
    pub proxy_protocol: bool,
    pub limits: EdgeLimits,
    pub ips: IpRules,
}

/// The snapshot's edge settings.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub trusted_proxies: IpList,
    pub client_ip_header: ForwardedHeader,
    listeners: Vec<ListenerEdge>,
    /// For sockets the config no longer lists (changed, pending a restart): `[edge]` alone.
    fallback: ListenerEdge,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self::compile(&Config::default())
    }
}

impl EdgeSettings {
    pub fn compile(config: &Config) -> Self {
        let edge = &config.edge;
        Self {
            trusted_proxies: IpList::parse_valid(&edge.trusted_proxies),
            client_ip_header: match edge.client_ip_header {
                ClientIpHeader::XForwardedFor => ForwardedHeader::XForwardedFor,
                ClientIpHeader::Forwarded => ForwardedHeader::Forwarded,
            },
            listeners: config.listeners.iter().map(|l| listener(edge, l)).collect(),
            fallback: ListenerEdge {
                address: None,
                proxy_protocol: false,
                limits: edge.limits(),
                ips: IpRules::compile(&edge.ip_allow, &edge.ip_deny),
            },
        }
    }

    /// The settings of the listener bound to `local` (the socket's own address; a listener on
    /// `0.0.0.0` or `::` covers every address of its port).
    pub fn listener(&self, local: Option<SocketAddr>) -> &ListenerEdge {
        super::listener_for(&self.listeners, |l| l.address, local).unwrap_or(&self.fallback)
    }
}

fn listener(edge: &EdgeConfig, l: &ListenerConfig) -> ListenerEdge {
    let e = &l.edge;
    ListenerEdge {
        address: Some(l.address),
        proxy_protocol: l.proxy_protocol,
        limits: e.limits(&edge.limits()),
        ips: IpRules::compile(
            e.ip_allow.as_deref().unwrap_or(&edge.ip_allow),
            e.ip_deny.as_deref().unwrap_or(&edge.ip_deny),
        ),
    }
}

/// What a route adds at the edge.
#[derive(Debug, Clone, Default)]
pub struct RouteEdge {
    pub max_body_bytes: u64,
    pub body_timeout: Duration,
    pub ips: IpRules,
    pub path_allow: PathAllow,
}

impl RouteEdge {
    pub fn compile(route: &RouteConfig, edge: &EdgeConfig) -> Self {
        Self {
            max_body_bytes: route.max_body_bytes.unwrap_or(edge.max_body_bytes),
            body_timeout: route.body_timeout.unwrap_or(edge.body_timeout),
            ips: IpRules::compile(&route.ip_allow, &route.ip_deny),
            path_allow: route
                .allow_in_path
                .iter()
                .fold(PathAllow::NONE, |a, e| a.union(path_allow(*e))),
        }
    }
}

fn path_allow(e: PathException) -> PathAllow {
    match e {
        PathException::EncodedSlash => PathAllow::ENCODED_SLASH,
        PathException::Backslash => PathAllow::BACKSLASH,
        PathException::PathParameters => PathAllow::PATH_PARAMETERS,
        PathException::ControlCharacters => PathAllow::CONTROL_CHARACTERS,
        PathException::InvalidUtf8 => PathAllow::INVALID_UTF8,
        PathException::TrailingWhitespace => PathAllow::TRAILING_WHITESPACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_overrides_and_wildcards() {
        let config = crate::config::parse(
            r#"
[edge]
header_timeout = "5s"
ip_deny = ["192.0.2.0/24"]
[[listeners]]
address = "127.0.0.1:8080"
[listeners.edge]
header_timeout = "2s"
ip_deny = []
[[listeners]]
address = "0.0.0.0:9090"
proxy_protocol = true
"#,
        )
        .unwrap();
        let s = EdgeSettings::compile(&config);
        let a = s.listener(Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(a.limits.header_timeout, Duration::from_secs(2));
        assert!(a.ips.permits("192.0.2.1".parse().unwrap()));
        let b = s.listener(Some("10.0.0.1:9090".parse().unwrap()));
        assert!(b.proxy_protocol);
        assert_eq!(b.limits.header_timeout, Duration::from_secs(5));
        assert!(!b.ips.permits("192.0.2.1".parse().unwrap()));
        let gone = s.listener(Some("127.0.0.1:1".parse().unwrap()));
        assert!(gone.address.is_none() && !gone.proxy_protocol);
    }

    #[test]
    fn ip_rules_allow_then_deny() {
        let r = IpRules::compile(&["10.0.0.0/8".into()], &["10.1.0.0/16".into()]);
        assert!(r.permits("10.2.3.4".parse().unwrap()));
        assert!(!r.permits("10.1.3.4".parse().unwrap()));
        assert!(!r.permits("192.0.2.1".parse().unwrap()));
        assert!(IpRules::default().permits("192.0.2.1".parse().unwrap()));
    }
}
