//! Lines Pingora writes at error level for events that are part of normal operation. Written
//! as errors they page people and hide real errors, so they are kept only when debug logging
//! is on somewhere (the most verbose level the filter lets through is debug or trace, as with
//! `RUST_LOG=debug` or `info,pingora_core=debug`).
//!
//! A line is recognised by its target and the start of its message, both from the Pingora
//! version in Cargo.lock; a reworded message in a later version is written again, which is
//! the safe direction.

/// `(target, message prefix, why it is normal)`.
pub const BENIGN: &[(&str, &str, &str)] = &[
    (
        "pingora_core::connectors",
        "failed to acquire reusable stream",
        "an idle upstream connection was still held by its idle watcher when a request \
         wanted it; Pingora opens a new connection instead",
    ),
    (
        "pingora_core::server::transfer_fd",
        "No incoming socket transfer",
        "a process started with --upgrade waits for the old one to hand its listeners over; \
         it retries every second, which is the normal course of an upgrade",
    ),
];

/// Whether the line `message` from `target` is one of [`BENIGN`].
pub fn is_benign(target: &str, message: &str) -> bool {
    BENIGN
        .iter()
        .any(|(t, prefix, _)| target == *t && message.starts_with(prefix))
}

/// A per-layer filter that drops [`BENIGN`] lines unless debug logging is on.
pub struct QuietBenign;

impl<S> tracing_subscriber::layer::Filter<S> for QuietBenign {
    /// No limit of its own. Without a hint, `limit.and(QuietBenign)` would have none either,
    /// and every disabled debug call site would ask the filters again on every request.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    /// Call sites below warning level never need the event-time look.
    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if *meta.level() > tracing::Level::WARN {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::sometimes()
        }
    }

    fn enabled(
        &self,
        _meta: &tracing::Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        // Only errors and warnings are looked at: the rest never pay for the visit.
        if *event.metadata().level() > tracing::Level::WARN {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // Lines from the `log` crate (Pingora's) carry their real target in `log.target`.
        let target = fields
            .log_target
            .as_deref()
            .unwrap_or(event.metadata().target());
        !is_benign(target, &fields.message)
            || tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG
    }
}

/// The fields [`QuietBenign`] reads.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.log_target = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            use std::fmt::Write;
            let _ = write!(self.message, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lines_are_benign_and_others_are_not() {
        assert!(is_benign(
            "pingora_core::connectors",
            "failed to acquire reusable stream"
        ));
        assert!(is_benign(
            "pingora_core::server::transfer_fd",
            "No incoming socket transfer, sleep 1s and try again"
        ));
        // Same words from elsewhere, and other errors from the same place, are kept.
        assert!(!is_benign(
            "gatehouse::proxy",
            "failed to acquire reusable stream"
        ));
        assert!(!is_benign(
            "pingora_core::server::transfer_fd",
            "Error accepting socket transfer: EBADF"
        ));
    }
}
