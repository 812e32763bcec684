//! API contracts: an OpenAPI document read into operations (`document`, `schema`,
//! `operations`, `params`), and the checks of requests and responses against an operation
//! (`check`). Routes are made from the operations in `snapshot`; the proxy runs the checks.

pub mod check;
mod document;
mod operations;
mod params;
mod schema;

pub use check::{Problem, Refused, MAX_PROBLEMS};
pub use document::DocError;
pub use operations::{load, Media, Operation, Param, RequestBody};
pub use params::In;
