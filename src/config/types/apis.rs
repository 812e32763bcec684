//! `[apis.NAME]`: routes made from an OpenAPI document, with request validation.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest body a validated request may have: Pingora replays at most 64 KiB of a body read
/// before the upstream is chosen, and a validated body is read whole before that.
pub const MAX_VALIDATED_BODY_BYTES: u64 = 64 * 1024;
/// Default bound of a checked response body.
pub const DEFAULT_CHECKED_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Upper bound of `max_response_bytes`: a held response is in memory until it passed.
pub const MAX_CHECKED_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// `[apis.NAME]`: every operation of the document becomes a route (`NAME.operationId`) on
/// `hosts`, under `base_path`, to `upstream`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The OpenAPI 3.0 or 3.1 document, YAML or JSON; `$ref`s to other local files are
    /// followed. Read again on every reload.
    pub openapi: String,
    /// Exact or wildcard hosts; any host when empty.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Prefix of every operation's path, as clients see it (`/v1`).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Remove `base_path` before proxying (the upstream serves the document's paths at `/`).
    #[serde(default)]
    pub strip_base_path: bool,
    pub upstream: String,
    /// Security scheme name (`components.securitySchemes`) → `[authorizers.NAME]`. Every
    /// scheme an operation requires must be mapped: nothing the document protects is served
    /// open.
    #[serde(default)]
    pub authorizers: BTreeMap<String, String>,
    /// Request validation: refuse (`enforce`), only count and log (`report`), or `off`.
    #[serde(default)]
    pub validate: ValidateMode,
    /// Response validation: `off` (default), `report` (count and log), or `enforce` (the
    /// response is held until it passed; one that does not match becomes a 502).
    #[serde(default = "off")]
    pub validate_responses: ValidateMode,
    /// Largest validated request body (413 beyond), at most 64 KiB.
    #[serde(default = "default_validated_body")]
    pub max_body_bytes: u64,
    /// Largest response body that is checked, at most 16 MiB: `report` skips larger ones,
    /// `enforce` answers 502 for them (an unchecked response is not let through).
    #[serde(default = "default_checked_response")]
    pub max_response_bytes: u64,
    /// A `[cors.NAME]` policy for every operation.
    #[serde(default)]
    pub cors: Option<String>,
    /// `[limits.NAME]` policies for every operation.
    #[serde(default)]
    pub limits: Vec<String>,
    /// Per-operation settings, by operationId.
    #[serde(default)]
    pub operations: BTreeMap<String, OperationConfig>,
}

/// `[apis.NAME.operations.ID]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperationConfig {
    /// Overrides the API's `validate` for this operation.
    #[serde(default)]
    pub validate: Option<ValidateMode>,
    /// Overrides the API's `validate_responses` for this operation.
    #[serde(default)]
    pub validate_responses: Option<ValidateMode>,
}

/// What a validation finding does.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValidateMode {
    #[default]
    Enforce,
    Report,
    Off,
}

impl ValidateMode {
    /// The name in the config, metrics and `explain`.
    pub fn label(self) -> &'static str {
        match self {
            ValidateMode::Enforce => "enforce",
            ValidateMode::Report => "report",
            ValidateMode::Off => "off",
        }
    }
}

fn off() -> ValidateMode {
    ValidateMode::Off
}

fn default_validated_body() -> u64 {
    MAX_VALIDATED_BODY_BYTES
}

fn default_checked_response() -> u64 {
    DEFAULT_CHECKED_RESPONSE_BYTES
}
