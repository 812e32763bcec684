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
pub use operations::{load, Credential, Media, Operation, Param, RequestBody};
pub use params::In;

/// `gatehouse_contract_violations_total`, counted only when something did not match.
#[derive(Clone)]
pub struct ViolationCounter(pub prometheus::IntCounterVec);

impl ViolationCounter {
    /// A request `op` refused (`enforce`) or forwarded anyway (`report`).
    pub fn request(&self, op: &Operation) {
        self.0
            .with_label_values(&[
                op.api.as_str(),
                op.id.as_str(),
                "request",
                op.validate.label(),
            ])
            .inc();
    }

    /// A response of `op` that did not match: refused (`enforce`, a 502) or let through
    /// (`report`).
    pub fn response(&self, op: &Operation) {
        self.0
            .with_label_values(&[
                op.api.as_str(),
                op.id.as_str(),
                "response",
                op.validate_responses.label(),
            ])
            .inc();
    }
}

#[cfg(test)]
mod tests;
