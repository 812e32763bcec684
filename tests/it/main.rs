//! Integration tests: the real `gatehouse` binary against real upstream servers on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acme;
mod auth;
mod cli;
mod common;
mod config_props;
mod contracts;
mod cors;
mod dashboards;
mod drain;
mod edge;
mod firewall;
mod health;
mod idp;
mod layers;
mod limits;
mod observe;
mod ocsp;
mod ops;
mod otlp;
mod pki;
mod proxy;
mod reload;
mod shared_limits;
mod shutdown;
mod tls;
mod traces;
mod transforms;
