//! The decoded form of what the receiver got: [`Span`]s flattened out of
//! `ExportTraceServiceRequest`s together with their resource and scope.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// How a span reached the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OTLP/HTTP protobuf (`POST /v1/traces`).
    Http,
    /// OTLP/gRPC (`TraceService/Export` over h2c).
    Grpc,
}

/// The OTLP span kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    fn from_proto(kind: i32) -> SpanKind {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// Number of export requests decoded, by protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exports {
    pub http: usize,
    pub grpc: usize,
}

impl Exports {
    pub fn total(&self) -> usize {
        self.http + self.grpc
    }
}

/// An event recorded on a span (tracing events become span events).
#[derive(Clone, Debug)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    pub attributes: BTreeMap<String, String>,
}

/// One decoded span, flattened together with the resource and scope it was exported under.
#[derive(Clone, Debug)]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `None` when the span is a root (empty parent id).
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    /// Values rendered as strings: ints, bools and doubles via `to_string`, arrays joined
    /// with ",", key-value lists as `k=v` joined with ",", bytes as lowercase hex.
    pub attributes: BTreeMap<String, String>,
    /// The resource attributes of the export the span came in.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope name.
    pub scope: String,
    pub events: Vec<SpanEvent>,
    /// Status code == ERROR.
    pub status_error: bool,
    pub status_message: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub protocol: Protocol,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        self.resource.get(key).map(String::as_str)
    }

    /// `resource["service.name"]`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_attr("service.name")
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }
}

pub(super) fn flatten(request: ExportTraceServiceRequest, protocol: Protocol) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .map(|resource| resource.attributes)
                .unwrap_or_default(),
        );
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .map(|scope| scope.name)
                .unwrap_or_default();
            for span in scope_spans.spans {
                let (status_error, status_message) = match span.status {
                    Some(status) => (status.code == 2, status.message),
                    None => (false, String::new()),
                };
                spans.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    name: span.name,
                    kind: SpanKind::from_proto(span.kind),
                    attributes: attributes(span.attributes),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    events: span
                        .events
                        .into_iter()
                        .map(|event| SpanEvent {
                            name: event.name,
                            time_unix_nanos: event.time_unix_nano,
                            attributes: attributes(event.attributes),
                        })
                        .collect(),
                    status_error,
                    status_message,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    protocol,
                });
            }
        }
    }
    spans
}

fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|pair| (pair.key, render(pair.value)))
        .collect()
}

fn render(value: Option<AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|value| value.value) {
        None => String::new(),
        Some(Value::StringValue(s)) => s,
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::ArrayValue(array)) => array
            .values
            .into_iter()
            .map(|value| render(Some(value)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::KvlistValue(list)) => list
            .values
            .into_iter()
            .map(|pair| format!("{}={}", pair.key, render(pair.value)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::BytesValue(bytes)) => hex(&bytes),
        Some(Value::StringValueStrindex(index)) => index.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
