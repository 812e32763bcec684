//! What a route requires of a verified token beyond validity: scopes (all or any of a list)
//! and claim values.

use super::jwt::{lookup, Verified};
use super::Reason;
use crate::config::ClaimValue;
use http::HeaderValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// A route's requirements, compiled.
#[derive(Debug, Default)]
pub struct Rules {
    scopes: Vec<String>,
    any_scope: bool,
    claims: Vec<(Vec<String>, Value)>,
    /// `WWW-Authenticate` for a 403 insufficient_scope, naming the scopes needed.
    pub scope_challenge: Option<HeaderValue>,
}

impl Rules {
    /// Compile a route's scopes and claims; scope syntax was checked by config validation.
    pub fn compile(
        scopes: &[String],
        any_scope: bool,
        claims: &BTreeMap<String, ClaimValue>,
    ) -> Self {
        let scope_challenge = (!scopes.is_empty())
            .then(|| {
                HeaderValue::from_str(&format!(
                    "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", \
                     error_description=\"insufficient scope\", scope=\"{}\"",
                    scopes.join(" ")
                ))
                .ok()
            })
            .flatten();
        let claims = claims
            .iter()
            .map(|(path, v)| {
                let value = match v {
                    ClaimValue::String(s) => Value::from(s.clone()),
                    ClaimValue::Integer(i) => Value::from(*i),
                    ClaimValue::Bool(b) => Value::from(*b),
                };
                (path.split('.').map(str::to_string).collect(), value)
            })
            .collect();
        Self {
            scopes: scopes.to_vec(),
            any_scope,
            claims,
            scope_challenge,
        }
    }

    /// Check a verified token against the route's requirements.
    pub fn check(&self, v: &Verified) -> Result<(), Reason> {
        if !self.scopes.is_empty() {
            let has = |s: &String| v.scopes.iter().any(|t| t == s);
            let ok = if self.any_scope {
                self.scopes.iter().any(has)
            } else {
                self.scopes.iter().all(has)
            };
            if !ok {
                return Err(Reason::InsufficientScope);
            }
        }
        for (path, expected) in &self.claims {
            let ok = match lookup(&v.claims, path) {
                Some(Value::Array(items)) => items.contains(expected),
                Some(actual) => actual == expected,
                None => false,
            };
            if !ok {
                return Err(Reason::ClaimMismatch);
            }
        }
        Ok(())
    }
}
