//! gatehouse: an edge proxy and API gateway on Pingora.
//!
//! Config file → [`config`] (parse, validate) → [`snapshot`] (compile, swap) → [`proxy`]
//! (Pingora phases) → per-concern modules ([`routing`], [`upstream`], [`observe`]).

pub mod admin;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod contract;
pub mod cors;
pub mod edge;
pub mod firewall;
pub mod hash;
pub mod headers;
pub mod host;
pub mod limit;
pub mod observe;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod services;
pub mod snapshot;
pub mod text;
pub mod tls;
pub mod transform;
pub mod upstream;
pub mod urlpath;
