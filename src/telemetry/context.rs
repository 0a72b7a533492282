//! W3C trace context (`traceparent`, `tracestate`) between peers, independent of the transport:
//! the sending side takes a [`TraceCarrier`] of the current span and puts its fields wherever
//! its protocol carries metadata (HTTP headers here; gRPC metadata or message-broker headers
//! would do the same); the receiving side rebuilds the carrier from them and makes its span a
//! child of the remote one with [`TraceCarrier::adopt`].

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context fields one request carries. Empty when tracing is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceCarrier {
    fields: HashMap<String, String>,
}

/// The field that carries a message's ring-secret authenticator (`transport::auth`): it rides
/// along with the trace context, so every transport that ships these fields ships it too.
pub const AUTH_FIELD: &str = "chordnet-auth";

/// The names of the fields, as HTTP headers (lower case).
pub const FIELDS: [&str; 3] = ["traceparent", "tracestate", AUTH_FIELD];

impl TraceCarrier {
    /// The context of the current span, to send along with a request.
    pub fn current() -> TraceCarrier {
        let mut carrier = TraceCarrier::default();
        if super::enabled() {
            let cx = tracing::Span::current().context();
            opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
        }
        carrier
    }

    /// A carrier from received `(name, value)` pairs; names are matched case-insensitively and
    /// anything but the trace context fields is ignored.
    pub fn from_fields<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> TraceCarrier {
        let mut carrier = TraceCarrier::default();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            if FIELDS.contains(&name.as_str()) {
                carrier.fields.insert(name, value.to_owned());
            }
        }
        carrier
    }

    /// The fields to send, as `(name, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// One field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Sets one of the [`FIELDS`] (others are ignored, as on receipt).
    pub fn set_field(&mut self, name: &str, value: String) {
        if FIELDS.contains(&name) {
            self.fields.insert(name.to_owned(), value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Makes `span` (just created, not yet entered) a child of the remote span this carrier
    /// names, if it names a valid one, and records the trace id for the logs.
    pub fn adopt(&self, span: &tracing::Span) {
        if !super::enabled() || span.is_disabled() {
            return;
        }
        if !self.fields.is_empty() {
            let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(self));
            use opentelemetry::trace::TraceContextExt;
            if cx.span().span_context().is_valid() {
                let _ = span.set_parent(cx);
            }
        }
        super::mark_trace(span);
    }
}

impl Injector for TraceCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.fields.insert(key.to_ascii_lowercase(), value);
    }
}

impl Extractor for TraceCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .get(&key.to_ascii_lowercase())
            .map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.fields.keys().map(String::as_str).collect()
    }
}
