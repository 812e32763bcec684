//! Background work that reads the current snapshot: key refresh, active health checks, and the
//! signals and watches that reload the config; and the last spans' export at shutdown. Concern modules hold no snapshot store; what
//! needs one lives here.

pub mod acme;
pub mod ban_sync;
pub mod health_checks;
pub mod key_refresh;
pub mod ocsp;
pub mod signals;
pub mod trace_flush;
