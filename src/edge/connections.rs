//! Open connections, counted per listener and per client address, so a flood from one
//! address, or more clients than the process has file descriptors for, is refused at the door
//! instead of starving the connections already being served.
//!
//! Counting happens once when a connection opens and once when it closes, never per request.
//! Per-address counts live in sharded maps: one short lock on one shard, and an entry exists
//! only while its address has connections open, so memory follows the open connections.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

/// File descriptors kept free for upstream connections, health checks, logs and config reads
/// when the connection budget is derived from the open-file limit.
const RESERVED_FDS: u64 = 64;

/// The connection budget derived from the open-file limit: each client connection may need
/// an upstream connection too, so half of what is left after the reserve.
pub fn budget_from_fd_limit(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(usable.max(1)).unwrap_or(usize::MAX)
}

/// Raise the soft open-file limit to the hard one (as nginx's `worker_rlimit_nofile` does)
/// and return the resulting soft limit.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The listener (or the process's file-descriptor budget) is at its limit.
    Listener,
    /// The client address has as many connections open as it may.
    ClientAddress,
}

/// Open connections of every listener and client address.
#[derive(Debug)]
pub struct Connections {
    /// Per listener address; listeners are fixed for the life of the process.
    listeners: Vec<(SocketAddr, AtomicUsize)>,
    /// Connections on sockets not in `listeners`.
    other: AtomicUsize,
    by_ip: Vec<Mutex<HashMap<IpAddr, usize, ahash::RandomState>>>,
    hasher: ahash::RandomState,
}

impl Connections {
    pub fn new(listeners: impl IntoIterator<Item = SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            listeners: listeners
                .into_iter()
                .map(|a| (a, AtomicUsize::new(0)))
                .collect(),
            other: AtomicUsize::new(0),
            by_ip: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: ahash::RandomState::new(),
        })
    }

    fn listener_count(&self, local: Option<SocketAddr>) -> &AtomicUsize {
        super::listener_for(&self.listeners, |(a, _)| Some(*a), local)
            .map_or(&self.other, |(_, n)| n)
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, usize, ahash::RandomState>> {
        let i = self.hasher.hash_one(ip) as usize % SHARDS;
        &self.by_ip[i]
    }

    /// Count a new connection on the listener bound to `local`, unless it has `max` open
    /// already (0 is no limit). Counted until the guard is dropped.
    pub fn admit_listener(
        self: &Arc<Self>,
        local: Option<SocketAddr>,
        max: usize,
    ) -> Result<ConnectionGuard, Full> {
        let count = self.listener_count(local);
        let before = count.fetch_add(1, Ordering::Relaxed);
        if max != 0 && before >= max {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(Full::Listener);
        }
        Ok(ConnectionGuard {
            table: self.clone(),
            counted: Counted::Listener(local),
        })
    }

    /// Count a new connection from `ip`, unless it has `max` open already (0 is no limit, and
    /// nothing is counted). Counted until the guard is dropped.
    pub fn admit_address(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        max: usize,
    ) -> Result<ConnectionGuard, Full> {
        let counted = match ip {
            Some(ip) if max != 0 => {
                let mut shard = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
                let n = shard.entry(ip).or_insert(0);
                if *n >= max {
                    return Err(Full::ClientAddress);
                }
                *n += 1;
                Counted::Address(ip)
            }
            _ => Counted::Nothing,
        };
        Ok(ConnectionGuard {
            table: self.clone(),
            counted,
        })
    }

    /// Connections open on the listener bound to `local`.
    pub fn open(&self, local: SocketAddr) -> usize {
        self.listener_count(Some(local)).load(Ordering::Relaxed)
    }

    /// Client addresses with counted connections (for tests and the admin API).
    pub fn tracked_addresses(&self) -> usize {
        self.by_ip
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// One admitted connection; dropping it un-counts the connection.
#[derive(Debug)]
pub struct ConnectionGuard {
    table: Arc<Connections>,
    counted: Counted,
}

#[derive(Debug)]
enum Counted {
    Listener(Option<SocketAddr>),
    Address(IpAddr),
    Nothing,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        match self.counted {
            Counted::Listener(local) => {
                self.table
                    .listener_count(local)
                    .fetch_sub(1, Ordering::Relaxed);
            }
            Counted::Address(ip) => {
                let mut shard = self
                    .table
                    .shard(ip)
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(n) = shard.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        shard.remove(&ip);
                    }
                }
            }
            Counted::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listener_limit_admits_up_to_max_and_frees_on_drop() {
        let t = Connections::new([addr("127.0.0.1:80")]);
        let local = Some(addr("127.0.0.1:80"));
        let a = t.admit_listener(local, 2).unwrap();
        let _b = t.admit_listener(local, 2).unwrap();
        assert_eq!(t.admit_listener(local, 2).unwrap_err(), Full::Listener);
        assert_eq!(t.open(addr("127.0.0.1:80")), 2);
        drop(a);
        let _c = t.admit_listener(local, 2).unwrap();
        assert_eq!(t.open(addr("127.0.0.1:80")), 2);
    }

    #[test]
    fn wildcard_listener_counts_connections_on_any_address() {
        let t = Connections::new([addr("0.0.0.0:8080")]);
        let _g = t.admit_listener(Some(addr("10.1.2.3:8080")), 0).unwrap();
        assert_eq!(t.open(addr("0.0.0.0:8080")), 1);
    }

    #[test]
    fn per_ip_limit_is_per_address_and_entries_go_away() {
        let t = Connections::new([addr("127.0.0.1:80")]);
        let ip1: IpAddr = "192.0.2.1".parse().unwrap();
        let ip2: IpAddr = "192.0.2.2".parse().unwrap();
        let g1 = t.admit_address(Some(ip1), 1).unwrap();
        assert_eq!(
            t.admit_address(Some(ip1), 1).unwrap_err(),
            Full::ClientAddress
        );
        let g2 = t.admit_address(Some(ip2), 1).unwrap();
        assert_eq!(t.tracked_addresses(), 2);
        // Without a limit nothing is tracked.
        let _g3 = t.admit_address(Some(ip1), 0).unwrap();
        drop((g1, g2));
        assert_eq!(t.tracked_addresses(), 0);
    }

    #[test]
    fn fd_budget_leaves_room_for_upstreams() {
        assert_eq!(budget_from_fd_limit(1024), 480);
        assert_eq!(budget_from_fd_limit(10), 1);
    }
}
