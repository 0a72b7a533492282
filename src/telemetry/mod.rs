//! Traces and logs.
//!
//! - [`logs`]: one log line per event, text for a terminal or JSON for Kubernetes, carrying the
//!   trace id of the request it belongs to.
//! - [`export`]: OpenTelemetry span export over OTLP, configured by the standard `OTEL_*`
//!   variables; off (no exporter, no tracing layer) when they are not set.
//! - [`context`]: W3C trace context as any transport carries it between peers.
//!
//! Spans are ordinary `tracing` spans. When export is off no layer is interested in them, so
//! creating one costs a callsite check and nothing else.

pub mod context;
pub mod export;
pub mod http;
pub mod logs;

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub use context::TraceCarrier;
pub use export::{ExportError, ExportSettings, Exporting};

use crate::config::LogFormat;

/// Whether spans are exported (set once at start-up).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans: the propagation and span helpers do nothing otherwise.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs the process's logging and, when `export` is given, the OpenTelemetry layer.
/// `default_filter` applies when `RUST_LOG` is not set. Must run inside a tokio runtime
/// context (the gRPC exporter's channel lives there). An exporter that cannot be built is
/// reported and left out: tracing never stops a peer. Returns the exporter to shut down at
/// exit.
pub fn init(
    format: LogFormat,
    default_filter: &str,
    export: Option<ExportSettings>,
) -> Option<Exporting> {
    let (exporting, failure) = match export.map(Exporting::start).transpose() {
        Ok(exporting) => (exporting, None),
        Err(e) => (None, Some(e)),
    };
    let spans_wanted = exporting.is_some();
    let mut layers = vec![logs::layer(format, default_filter, spans_wanted)];
    layers.extend(exporting.as_ref().map(Exporting::layer));
    ENABLED.store(spans_wanted, Ordering::Relaxed);
    if spans_wanted {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
    }
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(e) = failure {
        tracing::warn!(error = %e, "traces are not exported");
    }
    if let Some(e) = &exporting {
        e.report_settings();
    }
    exporting
}

/// The client span of one call to another peer, ring or data plane, named after the method.
pub fn peer_call_span(method: &'static str, to: &dyn std::fmt::Display) -> tracing::Span {
    tracing::info_span!(
        "peer.rpc",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "chordnet",
        rpc.method = method,
        peer.address = %to,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Starts the OpenTelemetry span of `span` now (so the sampler decides) and notes its trace id
/// for the log lines inside it. Call it on spans that start a trace or continue one from
/// another process. When the trace is not sampled, the spans under this one are not created.
pub fn mark_trace(span: &tracing::Span) {
    if !enabled() || span.is_disabled() {
        return;
    }
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .and_then(|registry| registry.span(id))
        {
            let mut ext = span.extensions_mut();
            ext.replace(TraceIdForLogs(sc.trace_id()));
            if !sc.is_sampled() {
                // Building a span costs about as much as exporting it: the spans under an
                // unsampled one are not created at all (see `outside_unsampled_traces`).
                ext.replace(Unsampled);
            }
        }
    });
}

/// The trace id of a span that starts or continues a trace, for the log lines inside it.
pub(crate) struct TraceIdForLogs(pub opentelemetry::trace::TraceId);

/// Marks a span whose trace the sampler dropped.
struct Unsampled;

/// Filter of every layer: no span under a span whose trace is not sampled. The unsampled span
/// itself stays, so its context (with the "not sampled" flag) still reaches the peers it calls
/// and log lines under it still carry its trace id.
fn outside_unsampled_traces<S>(meta: &tracing::Metadata<'_>, cx: &Context<'_, S>) -> bool
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    !meta.is_span()
        || cx
            .lookup_current()
            .is_none_or(|current| current.extensions().get::<Unsampled>().is_none())
}
