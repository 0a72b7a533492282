//! The test OTLP receiver (tests/support/otlp/) against the real opentelemetry-otlp
//! exporters: OTLP/HTTP protobuf through the blocking reqwest client and OTLP/gRPC through
//! tonic, each from the simple and from the batch span processor.

use crate::support::otlp;

use std::time::{Duration, Instant};

use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Array, Context, KeyValue, Value};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Transport {
    Http,
    Grpc,
}

#[derive(Clone, Copy, Debug)]
enum Processor {
    Simple,
    Batch,
}

fn exporter(transport: Transport, endpoint: &str, timeout: Duration) -> SpanExporter {
    match transport {
        // A programmatic HTTP endpoint is used verbatim: it must name the signal path.
        Transport::Http => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}{}", otlp::HTTP_TRACES_PATH))
            .with_timeout(timeout)
            .build(),
        // gRPC has no path to add: the method path comes from the service definition.
        Transport::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .build(),
    }
    .expect("build the OTLP span exporter")
}

fn provider(exporter: SpanExporter, processor: Processor, service: &str) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(
        Resource::builder_empty()
            .with_service_name(service.to_string())
            .build(),
    );
    match processor {
        Processor::Simple => builder.with_simple_exporter(exporter),
        Processor::Batch => builder.with_batch_exporter(exporter),
    }
    .build()
}

struct Emitted {
    trace_id: String,
    root_id: String,
    child_id: String,
}

/// Records a root span and a child span with attributes, flushes and shuts the provider down.
fn emit_trace(provider: &SdkTracerProvider) -> Emitted {
    let tracer = provider.tracer("otlp-receiver-test");
    let root = tracer
        .span_builder("lookup")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("peer.id", "p1"),
            KeyValue::new("ring.size", 3i64),
            KeyValue::new("seed", true),
            KeyValue::new("load", 0.5),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(root);
    let mut child = tracer
        .span_builder("find_successor")
        .with_kind(SpanKind::Client)
        .start_with_context(&tracer, &cx);
    child.set_attribute(KeyValue::new("key", "abc"));
    child.set_attribute(KeyValue::new(
        "hops",
        Value::Array(Array::I64(vec![1, 2, 3])),
    ));
    child.add_event("hop", vec![KeyValue::new("to", "p2")]);
    child.set_status(Status::error("no live successor"));
    let child_id = child.span_context().span_id().to_string();
    child.end();
    let root_context = cx.span().span_context().clone();
    cx.span().end();
    provider
        .force_flush()
        .expect("force_flush the tracer provider");
    provider.shutdown().expect("shut the tracer provider down");
    Emitted {
        trace_id: root_context.trace_id().to_string(),
        root_id: root_context.span_id().to_string(),
        child_id,
    }
}

/// Builds the exporter and provider and emits one trace on a blocking-pool thread: the
/// blocking reqwest client must not be used from an async context, the tonic exporter must
/// be built inside the runtime (its channel spawns a task), and flushing blocks.
async fn emit(
    transport: Transport,
    processor: Processor,
    endpoint: String,
    service: &'static str,
) -> Emitted {
    tokio::task::spawn_blocking(move || {
        let provider = provider(
            exporter(transport, &endpoint, Duration::from_secs(5)),
            processor,
            service,
        );
        emit_trace(&provider)
    })
    .await
    .expect("the emitting thread panicked")
}

async fn roundtrip(transport: Transport, processor: Processor) {
    let receiver = otlp::Receiver::start().await;
    let service = "otlp-receiver-test";
    let emitted = emit(transport, processor, receiver.endpoint(), service).await;
    let spans = receiver.wait_for_spans(2, DEADLINE).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");

    let root = spans
        .iter()
        .find(|span| span.name == "lookup")
        .expect("root span received");
    let child = spans
        .iter()
        .find(|span| span.name == "find_successor")
        .expect("child span received");

    let protocol = match transport {
        Transport::Http => otlp::Protocol::Http,
        Transport::Grpc => otlp::Protocol::Grpc,
    };
    for span in [root, child] {
        assert_eq!(span.trace_id, emitted.trace_id);
        assert_eq!(span.trace_id.len(), 32);
        assert_eq!(span.span_id.len(), 16);
        assert_eq!(span.protocol, protocol);
        assert_eq!(span.service_name(), Some(service));
        assert_eq!(span.scope, "otlp-receiver-test");
        assert!(span.start_unix_nanos > 0);
        assert!(span.end_unix_nanos >= span.start_unix_nanos);
    }

    assert_eq!(root.span_id, emitted.root_id);
    assert!(root.is_root(), "{root:#?}");
    assert_eq!(root.kind, otlp::SpanKind::Server);
    assert_eq!(root.attr("peer.id"), Some("p1"));
    assert_eq!(root.attr("ring.size"), Some("3"));
    assert_eq!(root.attr("seed"), Some("true"));
    assert_eq!(root.attr("load"), Some("0.5"));
    assert!(!root.status_error);

    assert_eq!(child.span_id, emitted.child_id);
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(emitted.root_id.as_str())
    );
    assert_eq!(child.kind, otlp::SpanKind::Client);
    assert_eq!(child.attr("key"), Some("abc"));
    assert_eq!(child.attr("hops"), Some("1,2,3"));
    assert!(child.status_error);
    assert_eq!(child.status_message, "no live successor");
    assert_eq!(child.events.len(), 1);
    assert_eq!(child.events[0].name, "hop");
    assert_eq!(
        child.events[0].attributes.get("to").map(String::as_str),
        Some("p2")
    );

    let exports = receiver.exports();
    let count = match transport {
        Transport::Http => exports.http,
        Transport::Grpc => exports.grpc,
    };
    assert_eq!(exports.total(), count, "{exports:?}");
    match processor {
        // One export per ended span.
        Processor::Simple => assert_eq!(count, 2, "{exports:?}"),
        // Both spans end long before the 5 s schedule: the flush sends them together.
        Processor::Batch => assert!((1..=2).contains(&count), "{exports:?}"),
    }
    assert!(receiver.connections() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_from_simple_processor() {
    roundtrip(Transport::Http, Processor::Simple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_from_batch_processor() {
    roundtrip(Transport::Http, Processor::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_from_simple_processor() {
    roundtrip(Transport::Grpc, Processor::Simple).await;
}

/// The peer's setup: the batch processor's own OS thread drives the tonic client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_from_batch_processor() {
    roundtrip(Transport::Grpc, Processor::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_share_one_port() {
    let receiver = otlp::Receiver::start().await;
    let http = emit(Transport::Http, Processor::Batch, receiver.endpoint(), "a").await;
    let grpc = emit(Transport::Grpc, Processor::Batch, receiver.endpoint(), "b").await;
    let spans = receiver.wait_for_spans(4, DEADLINE).await;
    for span in &spans {
        let (expected_trace, expected_service) = match span.protocol {
            otlp::Protocol::Http => (&http.trace_id, "a"),
            otlp::Protocol::Grpc => (&grpc.trace_id, "b"),
        };
        assert_eq!(&span.trace_id, expected_trace);
        assert_eq!(span.service_name(), Some(expected_service));
    }
    let exports = receiver.exports();
    assert!(exports.http >= 1 && exports.grpc >= 1, "{exports:?}");
    assert!(receiver.connections() >= 2);

    receiver.clear();
    assert!(receiver.spans().is_empty());
    assert_eq!(receiver.exports(), otlp::Exports::default());
}

/// Sends one raw HTTP/1.1 request and returns the status code of the answer.
async fn raw_post(addr: std::net::SocketAddr, path: &str, headers: &str, body: &[u8]) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer))
        .await
        .expect("answer within the deadline")
        .expect("read answer");
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[tokio::test]
async fn rejects_what_it_cannot_decode() {
    let receiver = otlp::Receiver::start().await;
    let addr = receiver.addr();
    let protobuf = "Content-Type: application/x-protobuf\r\n";
    // An empty ExportTraceServiceRequest is valid protobuf and counts as an export.
    assert_eq!(raw_post(addr, "/v1/traces", protobuf, b"").await, 200);
    let gzip = "Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n";
    assert_eq!(raw_post(addr, "/v1/traces", gzip, b"\x1f\x8b").await, 415);
    let json = "Content-Type: application/json\r\n";
    assert_eq!(raw_post(addr, "/v1/traces", json, b"{}").await, 415);
    assert_eq!(
        raw_post(addr, "/v1/traces", protobuf, b"\xff\xff\xff").await,
        400
    );
    assert_eq!(raw_post(addr, "/v1/metrics", protobuf, b"").await, 404);
    assert_eq!(
        receiver.exports(),
        otlp::Exports { http: 1, grpc: 0 },
        "only the valid request counts"
    );
    assert!(receiver.spans().is_empty());
    assert_eq!(receiver.connections(), 5);
}

#[tokio::test]
async fn dropping_the_receiver_closes_its_port() {
    let receiver = otlp::Receiver::start().await;
    let addr = receiver.addr();
    let idle = TcpStream::connect(addr)
        .await
        .expect("connect while running");
    drop(receiver);
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "port {addr} still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open connection was aborted with it.
    let mut idle = idle;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, idle.read(&mut buf))
        .await
        .expect("the aborted connection closes");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn black_hole_accepts_and_never_answers() {
    let hole = otlp::BlackHole::start().await;
    let mut tcp = TcpStream::connect(hole.addr()).await.expect("connect");
    tcp.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf))
            .await
            .is_err(),
        "the black hole answered"
    );
    assert_eq!(hole.connections(), 1);
}

/// An exporter pointed at a hanging endpoint gives up after its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_give_up_on_a_black_hole() {
    let hole = otlp::BlackHole::start().await;
    for transport in [Transport::Http, Transport::Grpc] {
        let endpoint = hole.endpoint();
        let elapsed = tokio::task::spawn_blocking(move || {
            let provider = provider(
                exporter(transport, &endpoint, Duration::from_millis(500)),
                Processor::Batch,
                "black-hole",
            );
            let tracer = provider.tracer("otlp-receiver-test");
            tracer.start("lost").end();
            let started = Instant::now();
            let flushed = provider.force_flush();
            let elapsed = started.elapsed();
            assert!(
                flushed.is_err(),
                "{transport:?}: flush to a black hole succeeded"
            );
            let _ = provider.shutdown();
            elapsed
        })
        .await
        .expect("the emitting thread panicked");
        assert!(
            elapsed < Duration::from_secs(5),
            "{transport:?}: flush took {elapsed:?}"
        );
    }
    assert!(hole.connections() >= 2);
}
