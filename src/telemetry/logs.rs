//! Log lines: text for a terminal, JSON (one object per line) for Kubernetes. Every line inside
//! a traced request carries its `trace_id`, so a log search leads to the trace and back.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, dynamic_filter_fn, filter_fn};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::TraceIdForLogs;
use super::export::BoxedLayer;
use crate::config::LogFormat;

/// The log layer: events as `RUST_LOG` (else `default_filter`) selects them. Spans are only
/// looked at when `spans` is set (tracing is on): they are where the trace id comes from.
pub fn layer(format: LogFormat, default_filter: &str, spans: bool) -> BoxedLayer {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let layer = LogLayer {
        format,
        ansi: format == LogFormat::Text && std::io::stderr().is_terminal(),
        capture: None,
    };
    layer
        .with_filter(
            filter
                .and(filter_fn(move |m| spans || !m.is_span()))
                .and(dynamic_filter_fn(super::outside_unsampled_traces)),
        )
        .boxed()
}

/// Threads whose name starts with this belong to one peer of a dev ring (`chordnet dev` runs each
/// peer on its own runtime named so); their lines say which peer: `[peer 3] ...` in text, a
/// `peer` field in JSON.
pub const PEER_THREAD_PREFIX: &str = "chordnet-peer-";

/// The dev peer the current thread runs, if any.
fn dev_peer() -> Option<String> {
    std::thread::current()
        .name()
        .and_then(|n| n.strip_prefix(PEER_THREAD_PREFIX))
        .map(str::to_owned)
}

struct LogLayer {
    format: LogFormat,
    ansi: bool,
    /// Where lines go instead of stderr (tests).
    capture: Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>,
}

/// An event's fields in order, the message apart.
#[derive(Default)]
struct Fields {
    message: String,
    values: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.values.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }
}

impl LogLayer {
    fn text(&self, line: &mut String, level: &tracing::Level, target: &str, f: &Fields) {
        let (start, end) = if self.ansi {
            let color = match *level {
                tracing::Level::ERROR => "\x1b[31m",
                tracing::Level::WARN => "\x1b[33m",
                tracing::Level::INFO => "\x1b[32m",
                _ => "\x1b[2m",
            };
            (color, "\x1b[0m")
        } else {
            ("", "")
        };
        let _ = write!(line, " {start}{level:>5}{end} {target}: ");
        escape_into(line, &f.message);
        for (k, v) in &f.values {
            let _ = write!(line, " {k}=");
            match v {
                Value::String(s) => escape_into(line, s),
                other => {
                    let _ = write!(line, "{other}");
                }
            }
        }
    }
}

/// Appends `s` with its control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`, ...): a
/// user-controlled string (a file name, a peer's answer) can neither start a forged line nor
/// send escape sequences to a terminal. (JSON lines are escaped by the JSON encoder.)
fn escape_into(line: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let trace_id = ctx.event_scope(event).and_then(|scope| {
            scope.into_iter().find_map(|span| {
                span.extensions()
                    .get::<TraceIdForLogs>()
                    .map(|t| t.0.to_string())
            })
        });
        let meta = event.metadata();
        let mut timestamp = String::new();
        let _ = SystemTime.format_time(&mut tracing_subscriber::fmt::format::Writer::new(
            &mut timestamp,
        ));
        let mut line = String::with_capacity(160);
        let peer = dev_peer();
        match self.format {
            LogFormat::Text => {
                if let Some(p) = &peer {
                    let _ = write!(line, "[peer {p}] ");
                }
                line.push_str(&timestamp);
                self.text(&mut line, meta.level(), meta.target(), &fields);
                if let Some(t) = &trace_id {
                    let _ = write!(line, " trace_id={t}");
                }
            }
            LogFormat::Json => {
                let mut obj = Map::new();
                obj.insert("timestamp".into(), Value::String(timestamp));
                obj.insert("level".into(), Value::String(meta.level().to_string()));
                obj.insert("target".into(), Value::String(meta.target().to_owned()));
                if let Some(p) = peer {
                    obj.insert("peer".into(), Value::String(p));
                }
                obj.insert("message".into(), Value::String(fields.message));
                for (k, v) in fields.values {
                    obj.insert(k.to_owned(), v);
                }
                if let Some(t) = trace_id {
                    obj.insert("trace_id".into(), Value::String(t));
                }
                line = Value::Object(obj).to_string();
            }
        }
        line.push('\n');
        match &self.capture {
            Some(buf) => buf
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(line.as_bytes()),
            // One write per line, so that lines from different threads never interleave.
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TraceId;
    use tracing::{info, info_span, warn};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let layer = LogLayer {
            format,
            ansi: false,
            capture: Some(Arc::clone(&buf)),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// What `mark_trace` notes on a span that starts a trace.
    fn note_trace(span: &tracing::Span, hex: &str) {
        let trace_id = TraceId::from_hex(hex).expect("hex trace id");
        span.with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>();
            let span = registry
                .and_then(|r| r.span(id))
                .expect("span in the registry");
            span.extensions_mut().replace(TraceIdForLogs(trace_id));
        });
    }

    #[test]
    fn lines_written_on_a_dev_peers_threads_say_which_peer() {
        let on_peer_thread = |format: LogFormat| {
            std::thread::Builder::new()
                .name(format!("{PEER_THREAD_PREFIX}7"))
                .spawn(move || capture(format, || info!("stored")))
                .expect("thread")
                .join()
                .expect("joined")
        };
        let text = on_peer_thread(LogFormat::Text);
        assert!(text.starts_with("[peer 7] "), "{text}");
        let json: Value = serde_json::from_str(on_peer_thread(LogFormat::Json).trim()).unwrap();
        assert_eq!(json["peer"], "7");
        // Any other thread: no prefix, no field.
        let plain = capture(LogFormat::Text, || info!("stored"));
        assert!(!plain.contains("[peer"), "{plain}");
    }

    #[test]
    fn text_lines_carry_fields_and_the_trace_id_of_their_request() {
        let out = capture(LogFormat::Text, || {
            let request = info_span!("request");
            note_trace(&request, "4bf92f3577b34da6a3ce929d0e0e4736");
            let inner = request.in_scope(|| info_span!("inner"));
            inner.in_scope(|| info!(keys = 3, to = "p1", "handed over"));
            warn!("outside");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].ends_with(
                "INFO chordnet::telemetry::logs::tests: handed over keys=3 to=p1 \
                 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(" WARN chordnet::telemetry::logs::tests: outside"));
    }

    #[test]
    fn json_lines_are_objects_with_the_trace_id() {
        let out = capture(LogFormat::Json, || {
            let span = info_span!("request");
            note_trace(&span, "0af7651916cd43dd8448eb211c80319c");
            span.in_scope(|| info!(ok = true, n = 2u64, "done"));
        });
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(v["message"], "done");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["ok"], true);
        assert_eq!(v["n"], 2);
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.contains('T')));
    }

    /// Issue 10, item 8: a user-controlled string (a file name with a newline, an escape
    /// sequence) cannot forge a log line or drive the terminal, in either format.
    #[test]
    fn user_strings_cannot_forge_lines() {
        let name = "x.txt\n2026-01-01T00:00:00Z  INFO chordnet::service: left the ring\x1b[2J";
        let out = capture(LogFormat::Text, || {
            info!(%name, "file stored");
            info!("stored {name}");
        });
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert!(out.contains("x.txt\\n2026"), "{out}");
        let out = capture(LogFormat::Json, || info!(%name, "file stored {name}"));
        assert_eq!(out.lines().count(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(v["name"], name);
    }
}
