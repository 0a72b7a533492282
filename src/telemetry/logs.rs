//! Log lines: text for a terminal, JSON (one object per line) for Kubernetes. Every line inside
//! a traced request carries its `trace_id`, so a log search leads to the trace and back.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

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
    };
    layer
        .with_filter(filter.and(filter_fn(move |m| spans || !m.is_span())))
        .boxed()
}

struct LogLayer {
    format: LogFormat,
    ansi: bool,
}

/// The trace id a span recorded (see [`super::mark_trace`]).
struct TraceId(String);

/// Finds a `trace_id` field among a span's values.
#[derive(Default)]
struct TraceIdVisitor(Option<String>);

impl Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "trace_id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
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
    fn remember_trace_id<S>(&self, id: &Id, ctx: &Context<'_, S>, v: TraceIdVisitor)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let (Some(trace_id), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }

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
        let _ = write!(line, " {start}{level:>5}{end} {target}: {}", f.message);
        for (k, v) in &f.values {
            match v {
                Value::String(s) => {
                    let _ = write!(line, " {k}={s}");
                }
                other => {
                    let _ = write!(line, " {k}={other}");
                }
            }
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut v = TraceIdVisitor::default();
        attrs.record(&mut v);
        self.remember_trace_id(id, &ctx, v);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut v = TraceIdVisitor::default();
        values.record(&mut v);
        self.remember_trace_id(id, &ctx, v);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let trace_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<TraceId>().map(|t| t.0.clone()))
        });
        let meta = event.metadata();
        let mut timestamp = String::new();
        let _ = SystemTime.format_time(&mut tracing_subscriber::fmt::format::Writer::new(
            &mut timestamp,
        ));
        let mut line = String::with_capacity(160);
        match self.format {
            LogFormat::Text => {
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
        // One write per line, so that lines from different threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
