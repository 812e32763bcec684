//! [`load`]: the one way from a config file to a compiled, not yet active snapshot, used by
//! `check`, startup and every reload; [`Loaded`] and [`LoadError`] are its two outcomes.

use super::compile::{compile, resource_problems, version_of};
use super::{Registries, Snapshot};
use crate::config::{self, Config, ConfigErrors};
use std::path::Path;

/// A file read, validated and compiled by [`load`], not yet in use.
pub struct Loaded {
    pub config: Config,
    /// Its `version` is [`version_of`] the text.
    pub snapshot: Snapshot,
}

/// Why [`load`] gave no snapshot.
#[derive(Debug)]
pub struct LoadError {
    pub errors: ConfigErrors,
    /// Version of the text that was read, when the file could be read.
    pub version: Option<String>,
    /// The text itself is wrong (syntax, validation), so the same text always fails the same
    /// way. Otherwise (an unreadable file, a name that did not resolve, a certificate file) a
    /// later try may pass.
    pub invalid_text: bool,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.errors, f)
    }
}

impl std::error::Error for LoadError {}

impl From<LoadError> for ConfigErrors {
    fn from(e: LoadError) -> Self {
        e.errors
    }
}

/// Read, validate and compile the file at `path`: what `check`, startup and every reload do.
/// Nothing is activated (see [`SnapshotStore::swap`](super::SnapshotStore::swap)).
pub fn load(path: &Path, reg: &Registries) -> Result<Loaded, LoadError> {
    let file = || path.to_path_buf();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        errors: ConfigErrors::whole_file(file(), format!("cannot read file: {e}")),
        version: None,
        invalid_text: false,
    })?;
    // The version of exactly the text that was parsed, so a file caught half-written is not
    // remembered as rejected under the version of its finished content.
    let version = version_of(&text);
    let fail = |errors, invalid_text| LoadError {
        errors: ConfigErrors {
            file: file(),
            errors,
        },
        version: Some(version.clone()),
        invalid_text,
    };
    let config = match config::check(&text) {
        (Some(config), errors) if errors.is_empty() => config,
        (partial, mut errors) => {
            // Also what the files and names of the entries without problems hold, so one run
            // shows everything (a certificate that does not match its key next to a typo).
            if let Some(config) = partial {
                errors.extend(resource_problems(&config, &errors));
            }
            return Err(fail(errors, true));
        }
    };
    let snapshot = compile(&config, &text, reg).map_err(|errors| fail(errors, false))?;
    Ok(Loaded { config, snapshot })
}
