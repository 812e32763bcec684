//! IPv4 and IPv6 CIDR sets: allow and deny lists, trusted proxies.
//!
//! A list is compiled once per config snapshot and probed on every request, so lookup must
//! stay cheap for lists of thousands of entries. Networks are grouped by prefix length; each
//! group is a hash set of masked network numbers, so a lookup is one masked probe per
//! distinct prefix length (at most 33 for IPv4, 129 for IPv6), whatever the list's size.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`,
//! which a dual-stack listener reports for IPv4 clients) is the IPv4 address it maps, and an
//! entry written in the mapped range (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
//! The two families are otherwise separate: `::/0` holds no IPv4 address.

use std::net::IpAddr;

use ahash::AHashSet;
use ipnet::{IpNet, Ipv4Net};

/// A set of IPv4 and IPv6 networks.
#[derive(Debug, Clone, Default)]
pub struct IpList {
    /// IPv4 networks by prefix length, longest first so that the most specific group is
    /// probed first.
    v4: Vec<(u8, AHashSet<u32>)>,
    /// IPv6 networks by prefix length, longest first.
    v6: Vec<(u8, AHashSet<u128>)>,
    /// Distinct networks held (duplicates count once).
    len: usize,
}

/// The network mask of a prefix length, for IPv4. `checked_shl` turns the `/0` case (a
/// shift by the full width) into an empty mask instead of an overflow.
fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The network mask of a prefix length, for IPv6.
fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The entry in canonical form: networks inside the IPv4-mapped range `::ffff:0:0/96` become
/// the IPv4 networks they map, matching how addresses are canonicalized on lookup.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(v4net);
                }
            }
        }
    }
    net
}

/// Adds `network` to the group for `prefix`, keeping groups sorted longest prefix first.
/// Returns whether the network was new.
fn insert<T: std::hash::Hash + Eq>(
    groups: &mut Vec<(u8, AHashSet<T>)>,
    prefix: u8,
    network: T,
) -> bool {
    match groups.binary_search_by(|(p, _)| prefix.cmp(p)) {
        Ok(i) => groups[i].1.insert(network),
        Err(i) => {
            let mut set = AHashSet::new();
            set.insert(network);
            groups.insert(i, (prefix, set));
            true
        }
    }
}

impl IpList {
    /// Entries are CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses, surrounding
    /// whitespace ignored. `Err` names the index of the first bad entry and why, e.g. "not
    /// an IP address or CIDR" or "host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?".
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, String)> {
        let mut list = IpList::default();
        for (i, entry) in entries.iter().enumerate() {
            let net = crate::config::parse_cidr(entry.as_ref()).map_err(|why| (i, why))?;
            list.add(net);
        }
        Ok(list)
    }

    /// The entries that parse, the others left out: for lists validation has checked.
    pub fn parse_valid<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut list = IpList::default();
        for entry in entries {
            if let Ok(net) = crate::config::parse_cidr(entry.as_ref()) {
                list.add(net);
            }
        }
        list
    }

    /// Adds one network (host bits already clear).
    fn add(&mut self, net: IpNet) {
        let new = match canonical_net(net) {
            IpNet::V4(n) => insert(&mut self.v4, n.prefix_len(), u32::from(n.network())),
            IpNet::V6(n) => insert(&mut self.v6, n.prefix_len(), u128::from(n.network())),
        };
        if new {
            self.len += 1;
        }
    }

    /// Whether `ip` (in canonical form: `::ffff:1.2.3.4` is `1.2.3.4`) is in one of the
    /// networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .any(|(prefix, set)| set.contains(&(a & mask4(*prefix))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .any(|(prefix, set)| set.contains(&(a & mask6(*prefix))))
            }
        }
    }

    /// Whether the list holds no network (and so contains no address).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of distinct networks held; an entry repeated, or written once as IPv4 and
    /// once IPv4-mapped, counts once.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv6Net;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(entries: &[&str]) -> IpList {
        IpList::parse(entries).unwrap()
    }

    #[test]
    fn empty_list_contains_nothing() {
        let l = IpList::parse::<&str>(&[]).unwrap();
        assert!(l.is_empty());
        assert_eq!(l.len(), 0);
        assert!(!l.contains(ip("0.0.0.0")));
        assert!(!l.contains(ip("10.1.2.3")));
        assert!(!l.contains(ip("::")));
        assert!(!l.contains(ip("2001:db8::1")));
        let d = IpList::default();
        assert!(d.is_empty() && !d.contains(ip("1.2.3.4")));
    }

    #[test]
    fn ipv4_cidrs_and_single_addresses() {
        let l = list(&[
            "10.0.0.0/8",
            "192.168.1.0/24",
            "203.0.113.7",
            "198.51.100.0/31",
        ]);
        assert_eq!(l.len(), 4);
        assert!(l.contains(ip("10.0.0.0")));
        assert!(l.contains(ip("10.255.255.255")));
        assert!(!l.contains(ip("11.0.0.0")));
        assert!(!l.contains(ip("9.255.255.255")));
        assert!(l.contains(ip("192.168.1.200")));
        assert!(!l.contains(ip("192.168.2.1")));
        assert!(l.contains(ip("203.0.113.7")));
        assert!(!l.contains(ip("203.0.113.6")));
        assert!(!l.contains(ip("203.0.113.8")));
        assert!(l.contains(ip("198.51.100.1")));
        assert!(!l.contains(ip("198.51.100.2")));
        // Families are separate.
        assert!(!l.contains(ip("::a00:1")));
    }

    #[test]
    fn ipv6_cidrs_and_single_addresses() {
        let l = list(&["2001:db8::/32", "fe80::/10", "2001:db9::1", "::1"]);
        assert!(l.contains(ip("2001:db8::1")));
        assert!(l.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!l.contains(ip("2001:db7:ffff::1")));
        assert!(l.contains(ip("fe80::1")));
        assert!(l.contains(ip("febf::1")));
        assert!(!l.contains(ip("fec0::1")));
        assert!(l.contains(ip("2001:db9::1")));
        assert!(!l.contains(ip("2001:db9::2")));
        assert!(l.contains(ip("::1")));
        assert!(!l.contains(ip("::2")));
        assert!(!l.contains(ip("127.0.0.1")));
    }

    #[test]
    fn zero_prefix_matches_its_whole_family() {
        let v4 = list(&["0.0.0.0/0"]);
        assert!(v4.contains(ip("0.0.0.0")));
        assert!(v4.contains(ip("255.255.255.255")));
        assert!(v4.contains(ip("::ffff:1.2.3.4")));
        assert!(!v4.contains(ip("2001:db8::1")));
        let v6 = list(&["::/0"]);
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(v6.contains(ip("::")));
        assert!(!v6.contains(ip("1.2.3.4")));
    }

    #[test]
    fn full_length_prefixes() {
        let l = list(&["1.2.3.4/32", "2001:db8::5/128"]);
        assert!(l.contains(ip("1.2.3.4")));
        assert!(!l.contains(ip("1.2.3.5")));
        assert!(l.contains(ip("2001:db8::5")));
        assert!(!l.contains(ip("2001:db8::4")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_entries() {
        let l = list(&["10.0.0.0/8", "192.0.2.1"]);
        assert!(l.contains(ip("::ffff:10.1.2.3")));
        assert!(l.contains(ip("::ffff:192.0.2.1")));
        assert!(!l.contains(ip("::ffff:11.0.0.1")));
        // IPv4-compatible (deprecated, `::a.b.c.d`) addresses are not IPv4 addresses.
        assert!(!l.contains(ip("::10.1.2.3")));
    }

    #[test]
    fn ipv4_mapped_entries_match_ipv4_addresses() {
        let l = list(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]);
        assert!(l.contains(ip("10.9.8.7")));
        assert!(l.contains(ip("::ffff:10.9.8.7")));
        assert!(l.contains(ip("192.0.2.1")));
        assert!(!l.contains(ip("11.0.0.1")));
        // The same network written both ways counts once.
        let both = list(&["10.0.0.0/8", "::ffff:10.0.0.0/104", "10.0.0.0/8"]);
        assert_eq!(both.len(), 1);
        // A v6 network wider than the mapped range stays IPv6.
        let wide = list(&["::fffe:0:0/95"]);
        assert!(!wide.contains(ip("1.2.3.4")));
        assert!(wide.contains(ip("::fffe:0:1")));
    }

    #[test]
    fn overlapping_entries_and_duplicates() {
        let l = list(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "10.0.0.0/8",
            " 10.1.0.0/16 ",
        ]);
        assert_eq!(l.len(), 3);
        assert!(l.contains(ip("10.1.2.3")));
        assert!(l.contains(ip("10.200.0.1")));
    }

    #[test]
    fn whitespace_around_entries_is_ignored() {
        let l = list(&["  10.0.0.0/8\t", " ::1 "]);
        assert!(l.contains(ip("10.0.0.1")));
        assert!(l.contains(ip("::1")));
    }

    #[test]
    fn host_bits_refused_with_a_suggestion() {
        let (i, why) = IpList::parse(&["192.168.0.0/16", "10.0.0.1/8"]).unwrap_err();
        assert_eq!(i, 1);
        assert_eq!(why, "host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?");
        let (i, why) = IpList::parse(&["2001:db8::1/32"]).unwrap_err();
        assert_eq!(i, 0);
        assert_eq!(
            why,
            "host bits set in 2001:db8::1/32: did you mean 2001:db8::/32?"
        );
    }

    #[test]
    fn bad_entries_name_their_index() {
        for (bad, needle) in [
            ("", "empty entry"),
            ("   ", "empty entry"),
            ("example.com", "not an IP address or CIDR"),
            ("10.0.0", "not an IP address or CIDR"),
            ("10.0.0.256", "not an IP address or CIDR"),
            ("10.0.0.0/33", "bad prefix length"),
            ("10.0.0.0/", "bad prefix length"),
            ("10.0.0.0/x", "bad prefix length"),
            ("2001:db8::/129", "bad prefix length"),
            ("10.0.0.0-10.0.0.255", "not an IP address or CIDR"),
            ("fe80::1%eth0", "not an IP address or CIDR"),
            ("[::1]", "not an IP address or CIDR"),
        ] {
            let (i, why) = IpList::parse(&["127.0.0.1", "::1", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(i, 2, "{bad:?}");
            assert!(why.contains(needle), "{bad:?}: {why}");
        }
    }

    #[test]
    fn accepts_owned_strings() {
        let entries = vec!["10.0.0.0/8".to_string(), "::1".to_string()];
        assert_eq!(IpList::parse(&entries).unwrap().len(), 2);
    }

    #[test]
    fn masks() {
        assert_eq!(mask4(0), 0);
        assert_eq!(mask4(8), 0xff00_0000);
        assert_eq!(mask4(32), u32::MAX);
        assert_eq!(mask6(0), 0);
        assert_eq!(mask6(1), 1 << 127);
        assert_eq!(mask6(128), u128::MAX);
    }

    #[test]
    fn thousands_of_entries() {
        let entries: Vec<String> = (0..5000u32)
            .map(|i| format!("{}/24", Ipv4Addr::from(0x0a00_0000 | (i << 8))))
            .chain(
                (0..1000u128)
                    .map(|i| format!("{}/48", Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 80)))),
            )
            .collect();
        let l = IpList::parse(&entries).unwrap();
        assert_eq!(l.len(), 6000);
        assert!(l.contains(ip("10.0.19.7")));
        assert!(l.contains(ip("10.0.255.255")));
        assert!(l.contains(ip("10.19.135.1"))); // 4999 << 8 = 0x13_8700
        assert!(!l.contains(ip("10.19.136.1")));
        assert!(l.contains(ip("2001:db8:3e7::1"))); // 999
        assert!(!l.contains(ip("2001:db8:3e8::1")));
    }

    /// A random network with host bits cleared; some inside the IPv4-mapped range.
    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), p).unwrap().trunc())
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), p).unwrap().trunc())
            }),
            (any::<u32>(), 96u8..=128).prop_map(|(a, p)| {
                let mapped = Ipv4Addr::from(a).to_ipv6_mapped();
                IpNet::V6(Ipv6Net::new(mapped, p).unwrap().trunc())
            }),
            // Short prefixes in a small space, so probes hit often.
            (0u32..16, 24u8..=32).prop_map(|(a, p)| {
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | a), p)
                        .unwrap()
                        .trunc(),
                )
            }),
        ]
    }

    /// A probe address: random, or near an entry.
    fn arb_probe() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
            (0u32..16).prop_map(|a| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | a))),
            (0u32..16).prop_map(|a| IpAddr::V6(Ipv4Addr::from(0x0a00_0000 | a).to_ipv6_mapped())),
        ]
    }

    fn naive_contains(nets: &[IpNet], ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        nets.iter().any(|n| canonical_net(*n).contains(&ip))
    }

    proptest! {
        #[test]
        fn contains_agrees_with_linear_scan(
            nets in proptest::collection::vec(arb_net(), 0..40),
            probes in proptest::collection::vec(arb_probe(), 1..40),
        ) {
            let entries: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
            let l = IpList::parse(&entries).unwrap();
            prop_assert_eq!(l.is_empty(), nets.is_empty());
            for p in probes {
                prop_assert_eq!(l.contains(p), naive_contains(&nets, p), "probe {}", p);
            }
            // Every entry's own network address and last address are in the list.
            for n in &nets {
                prop_assert!(l.contains(n.network()));
                prop_assert!(l.contains(n.broadcast()));
            }
        }

        #[test]
        fn parse_never_panics(entries in proptest::collection::vec(".{0,50}", 0..5)) {
            let _ = IpList::parse(&entries);
        }
    }
}
