//! OpenTelemetry span export over OTLP.
//!
//! Export runs only when an OTLP endpoint is configured through the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the exporter itself
//! reads the other standard ones (headers, time-out, compression) and the SDK reads the sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the batch settings (`OTEL_BSP_*`) and the
//! resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
//!
//! Spans go through the SDK's batch processor: a bounded queue drained by its own thread. A
//! slow or unreachable collector therefore costs the peer nothing but the dropped spans; export
//! failures are counted and logged when they start and when they stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use prometheus::IntCounter;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::dynamic_filter_fn;

/// The layer type every subscriber layer of this process is boxed to.
pub type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OpenTelemetry exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error(
        "OTLP endpoint {0} uses https, and this build has no TLS: send to an OpenTelemetry \
         Collector over http:// (it can forward over TLS)"
    )]
    NoTls(String),
}

/// The OTLP wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the default).
    HttpProtobuf,
    /// `grpc`.
    Grpc,
}

/// What [`ExportSettings::from_env`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSettings {
    /// The endpoint variable's value (the exporter reads it itself; kept to check the scheme).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// A protocol value that was not understood (reported once logging is up).
    pub unknown_protocol: Option<String>,
    /// Resource attributes this process adds unless `OTEL_RESOURCE_ATTRIBUTES` sets them.
    pub attributes: Vec<(String, String)>,
}

impl ExportSettings {
    /// Reads the standard variables through `var`. `None`: export is off — no endpoint is
    /// set, `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<ExportSettings> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
            return None;
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        let requested = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let (protocol, unknown_protocol) = match requested.as_deref() {
            None | Some("http/protobuf") => (OtlpProtocol::HttpProtobuf, None),
            Some("grpc") => (OtlpProtocol::Grpc, None),
            Some(other) => (OtlpProtocol::HttpProtobuf, Some(other.to_owned())),
        };
        let mut attributes = Vec::new();
        if let Some(pod) = set("POD_NAME") {
            attributes.push(("k8s.pod.name".to_owned(), pod));
        }
        if let Some(ns) = set("POD_NAMESPACE") {
            attributes.push(("k8s.namespace.name".to_owned(), ns));
        }
        Some(ExportSettings {
            endpoint,
            protocol,
            unknown_protocol,
            attributes,
        })
    }

    /// Adds a resource attribute (node id, …) unless the environment already sets it.
    pub fn with_attribute(mut self, key: &str, value: impl Into<String>) -> ExportSettings {
        self.attributes.push((key.to_owned(), value.into()));
        self
    }
}

/// The running exporter.
pub struct Exporting {
    provider: SdkTracerProvider,
    protocol: OtlpProtocol,
    unknown_protocol: Option<String>,
}

impl Exporting {
    /// Builds the exporter and the tracer provider. Needs a tokio runtime context for gRPC.
    pub fn start(settings: ExportSettings) -> Result<Exporting, ExportError> {
        if settings.endpoint.to_ascii_lowercase().starts_with("https:") {
            return Err(ExportError::NoTls(settings.endpoint));
        }
        let exporter = match settings.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build()?,
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(Protocol::Grpc)
                .build()?,
        };
        let base = Resource::builder().build();
        let mut builder = Resource::builder();
        let service_name = Key::from_static_str("service.name");
        if base
            .get(&service_name)
            .is_none_or(|v| v.as_str() == "unknown_service")
        {
            builder = builder.with_service_name("chordnet");
        }
        for (key, value) in settings.attributes {
            if base.get(&Key::new(key.clone())).is_none() {
                builder = builder.with_attribute(KeyValue::new(key, value));
            }
        }
        let exporter = RingAwareExporter {
            inner: tokio::sync::Mutex::new(exporter),
            resource: Mutex::new(None),
            applied_ring: Mutex::new(None),
            failing: AtomicBool::new(false),
        };
        let provider = SdkTracerProvider::builder()
            .with_resource(builder.build())
            .with_batch_exporter(exporter)
            .build();
        Ok(Exporting {
            provider,
            // Logging is not up yet; the warning waits for `report_settings`.
            unknown_protocol: settings.unknown_protocol,
            protocol: settings.protocol,
        })
    }

    /// The tracing layer that turns this process's spans into OpenTelemetry spans: every
    /// `chordnet` span at info or above, and warnings and errors as span events.
    pub fn layer(&self) -> BoxedLayer {
        let tracer = self.provider.tracer("chordnet");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(dynamic_filter_fn(|m, cx| {
                m.target().starts_with("chordnet")
                    && if m.is_span() {
                        *m.level() <= Level::INFO
                    } else {
                        *m.level() <= Level::WARN
                    }
                    && super::outside_unsampled_traces(m, cx)
            }))
            .boxed()
    }

    /// Flushes what is queued and stops the exporter, waiting at most `limit` (an unreachable
    /// collector must not hold up the exit).
    pub fn shutdown(self, limit: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        let provider = self.provider;
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = provider.shutdown_with_timeout(limit);
                let _ = tx.send(());
            });
        if spawned.is_ok() {
            let _ = rx.recv_timeout(limit + Duration::from_millis(200));
        }
    }

    /// Logs how spans are exported, and settings that could not be honoured.
    pub fn report_settings(&self) {
        if let Some(p) = &self.unknown_protocol {
            tracing::warn!(protocol = %p, "unknown OTEL_EXPORTER_OTLP_PROTOCOL; using http/protobuf");
        }
        tracing::info!(protocol = ?self.protocol, "exporting traces over OTLP");
    }
}

/// The ring this process's peer belongs to, for the resource of exported spans. The ring id is
/// learnt only when the peer joins, after export started, so the exporter adds it to its
/// resource before the next batch.
static RING_ID: Mutex<Option<String>> = Mutex::new(None);

/// Records the ring id for the `chordnet.ring.id` resource attribute.
pub fn set_ring_id(ring_id: Option<String>) {
    *RING_ID.lock().unwrap_or_else(|e| e.into_inner()) = ring_id;
}

fn ring_id() -> Option<String> {
    RING_ID.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Spans handed to the collector.
pub fn spans_exported() -> &'static IntCounter {
    static C: OnceLock<IntCounter> = OnceLock::new();
    C.get_or_init(|| {
        IntCounter::new(
            "chordnet_trace_spans_exported_total",
            "Spans the OTLP exporter delivered to the collector",
        )
        .expect("a valid metric name")
    })
}

/// Export calls that failed (their spans are dropped).
pub fn export_failures() -> &'static IntCounter {
    static C: OnceLock<IntCounter> = OnceLock::new();
    C.get_or_init(|| {
        IntCounter::new(
            "chordnet_trace_export_failures_total",
            "OTLP export calls that failed; their spans were dropped",
        )
        .expect("a valid metric name")
    })
}

/// The OTLP exporter, with the ring id added to the resource once it is known and the outcome
/// of every export counted.
#[derive(Debug)]
struct RingAwareExporter<E> {
    inner: tokio::sync::Mutex<E>,
    /// The resource the provider gave, without the ring id.
    resource: Mutex<Option<Resource>>,
    applied_ring: Mutex<Option<String>>,
    failing: AtomicBool,
}

impl<E: SpanExporter> RingAwareExporter<E> {
    /// The resource with the current ring id, when the ring id changed since the last export.
    fn resource_update(&self) -> Option<Resource> {
        let ring = ring_id();
        let mut applied = self.applied_ring.lock().unwrap_or_else(|e| e.into_inner());
        if *applied == ring {
            return None;
        }
        let base = self
            .resource
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        applied.clone_from(&ring);
        let attrs = base
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .chain(ring.map(|r| KeyValue::new("chordnet.ring.id", r)));
        Some(Resource::builder_empty().with_attributes(attrs).build())
    }
}

impl<E: SpanExporter> SpanExporter for RingAwareExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let update = self.resource_update();
        let mut inner = self.inner.lock().await;
        if let Some(resource) = update {
            inner.set_resource(&resource);
        }
        let result = inner.export(batch).await;
        drop(inner);
        match &result {
            Ok(()) => {
                spans_exported().inc_by(n);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
            Err(e) => {
                export_failures().inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "trace export failing; spans are dropped until the collector answers");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match self.inner.try_lock() {
            Ok(inner) => inner.shutdown_with_timeout(timeout),
            Err(_) => Ok(()), // an export is stuck; nothing more to flush
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match self.inner.try_lock() {
            Ok(inner) => inner.force_flush(),
            Err(_) => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(resource.clone());
        *self
            .applied_ring
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.inner.get_mut().set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        assert_eq!(ExportSettings::from_env(env(&[])), None);
        assert_eq!(
            ExportSettings::from_env(env(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
            ])),
            None
        );
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert!(ExportSettings::from_env(env(&on)).is_some());
        let disabled = [on[0], ("OTEL_SDK_DISABLED", "TRUE")];
        assert_eq!(ExportSettings::from_env(env(&disabled)), None);
        let none = [on[0], ("OTEL_TRACES_EXPORTER", "none")];
        assert_eq!(ExportSettings::from_env(env(&none)), None);
    }

    #[test]
    fn protocol_and_kubernetes_attributes_come_from_the_environment() {
        let s = ExportSettings::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("POD_NAME", "chordnet-2"),
            ("POD_NAMESPACE", "p2p"),
        ]));
        let s = s.expect("on");
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(
            s.attributes,
            vec![
                ("k8s.pod.name".to_owned(), "chordnet-2".to_owned()),
                ("k8s.namespace.name".to_owned(), "p2p".to_owned())
            ]
        );
        let s = ExportSettings::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]))
        .expect("on");
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.unknown_protocol.as_deref(), Some("http/json"));
    }
}
